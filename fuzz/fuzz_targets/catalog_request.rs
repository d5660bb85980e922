//! Catalog requests as the tracker parses them from any connection.
#![no_main]

#[path = "../common/frame_target.rs"]
mod frame_target;

use lmk::wire::catalog::{Request, MAX_CATALOG_FRAME};

frame_target!(Request, MAX_CATALOG_FRAME);
