//! Pieces shared by the three roles.

pub mod net;
pub mod rng;
