//! Pieces shared by the three roles.

pub mod bar;
pub mod cli;
mod conn;
pub mod fmt;
pub mod net;
pub mod rng;
pub mod signal;
