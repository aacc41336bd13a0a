//! Crew containers and their stats.

pub mod registry;

pub use registry::Registry;
