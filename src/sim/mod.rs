//! The swarm simulator: the real peer and tracker cores on a virtual clock,
//! with a network model in place of sockets (README, "Simulator").

pub mod content;
pub mod harness;
pub mod hops;
pub mod link;
pub mod options;
mod queue;
pub mod report;
pub mod run;
pub mod scenario;
pub mod shell;
pub mod world;
