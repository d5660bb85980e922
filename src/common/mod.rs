//! Pieces shared by the three roles.

pub mod rng;
