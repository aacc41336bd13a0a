//! Crew containers: the Docker Engine client, their lifecycle, agents'
//! execs inside them, and the stats collector with its registry.

pub mod collector;
pub mod docker;
pub mod exec;
pub mod lifecycle;
pub mod registry;
pub mod stats;

pub use docker::Engine;
pub use lifecycle::CrewContainers;
pub use registry::Registry;
