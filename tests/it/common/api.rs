//! Typed answers: the wire's types, the ones the daemon answers with, read
//! back (a renamed or retyped field fails loudly).

pub use crewship_wire::answers::Listing;
pub use crewship_wire::types::{Assignment, Crew, JournalEntry, Run};
