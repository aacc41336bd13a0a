//! Typed answers: the wire's entity types, the ones the daemon answers
//! with, read back (a renamed or retyped field fails loudly), and a list
//! page.

pub use crewship_wire::types::{Assignment, Crew, JournalEntry, Run};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
