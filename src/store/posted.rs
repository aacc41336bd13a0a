//! What callers post themselves, journal entries and LLM calls: a run's
//! own post is recorded against that run, whatever its body says; an
//! operator's against the crew and agent it names.

use super::journal::{self, Named, NewEntry};
use super::ledger::{self, NewCall};
use super::refs;
use super::tx::Tx;
use crate::domain::types::{JournalEntry, LlmCallRecorded};
use crate::domain::{DomainError, Result};

/// Who posts.
#[derive(Debug, Clone)]
pub enum Poster {
    /// A run's process, with its run token.
    Run { run_id: String, crew: Option<Named>, agent: Option<Named> },
    /// An operator, naming (by id or slug) what the post is about.
    Operator { crew: Option<String>, agent: Option<String> },
}

/// The crew and agent a post is recorded against, and the run that posted
/// it (None: an operator's).
fn scope(tx: &Tx<'_>, by: Poster) -> Result<(Option<Named>, Option<Named>, Option<String>)> {
    match by {
        Poster::Run { run_id, crew, agent } => Ok((crew, agent, Some(run_id))),
        Poster::Operator { crew, agent } => {
            let (crew, agent) = refs::scope(tx, crew.as_deref(), agent.as_deref())?;
            Ok((crew, agent, None))
        }
    }
}

/// Journals a posted entry; an operator's may name its trace.
pub fn entry(tx: &mut Tx<'_>, by: Poster, entry: NewEntry) -> Result<JournalEntry> {
    let (crew, agent, run_id) = scope(tx, by)?;
    let trace_id = run_id.or(entry.trace_id);
    journal::append(tx, NewEntry { crew, agent, trace_id, ..entry })
}

/// Records a posted LLM call: its crew, agent and run are the poster's
/// (an operator's call may name a known run in `call.run_id`). Returns it
/// with the run it was recorded against.
pub fn llm_call(tx: &mut Tx<'_>, by: Poster, call: NewCall) -> Result<(LlmCallRecorded, Option<String>)> {
    let (crew, agent, own_run) = scope(tx, by)?;
    let run_id = match own_run {
        Some(run) => Some(run),
        None => {
            if let Some(run) = &call.run_id
                && !ledger::run_exists(tx, run)?
            {
                return Err(DomainError::invalid(format!("unknown run {run:?}")));
            }
            call.run_id
        }
    };
    let call = NewCall { crew_id: crew.map(|c| c.id), agent_id: agent.map(|a| a.id), run_id: run_id.clone(), ..call };
    ledger::record(tx, call).map(|r| (r, run_id))
}
