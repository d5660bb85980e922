//! Catalog responses as seeders and leechers parse them from a tracker they may not trust.
#![no_main]

#[path = "../common/frame_target.rs"]
mod frame_target;

use lmk::wire::catalog::{Response, MAX_CATALOG_FRAME};

frame_target!(Response, MAX_CATALOG_FRAME);
