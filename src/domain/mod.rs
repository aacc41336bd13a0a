//! The rules: validation, pricing, templates, ids and the events every
//! state change publishes, over the wire crate's entity types, named enums
//! and state machines (re-exported here). No I/O here.

pub mod error;
pub mod event;
pub mod ids;
pub mod pricing;
pub mod provider;
pub mod run_token;
pub mod template;
pub mod time;
pub mod validate;

// The entities as the API shows them, their vocabularies and state
// machines: the wire's, shared with the CLI and the tests.
pub use crewship_wire::{kinds, named, status, types};
pub use error::{DomainError, Result};
