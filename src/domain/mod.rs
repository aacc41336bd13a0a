//! The rules: entity types, state machines, validation, pricing and the
//! events every state change publishes. No I/O here.

pub mod error;
pub mod event;
pub mod ids;
pub mod kinds;
pub mod named;
pub mod pricing;
pub mod provider;
pub mod run_token;
pub mod status;
pub mod template;
pub mod time;
pub mod types;
pub mod validate;

pub use error::{DomainError, Result};
