//! Maintained counters: the only writers of `counters`, `crew_counts` and
//! `llm_series`. Each function runs inside the transaction of the write it
//! counts, so a count can never disagree with the rows it counts.
//!
//! Changes to `counters` are gathered while operations run and written once
//! per transaction, just before its commit (`write`): the operations of a
//! group share the rows, and moves that cancel out write nothing. A failed
//! operation's changes go with its savepoint.

use super::sql::{Db, RowLock, args};
use super::tx::{Counted, Tx};
use crate::domain::pricing::{self, Tokens};
use crate::domain::provider::{self, SeriesLabel};
use crate::domain::status::{AssignmentStatus, PipelineRunStatus};
use crate::domain::{DomainError, Result};

pub const ASSIGNMENTS: &str = "assignments";
pub const PIPELINE_RUNS: &str = "pipeline_runs";
pub const RUN_EVENTS: &str = "run_events";
pub const QUEUE: &str = "queue";
pub const QUEUE_CREWS: &str = "crews";

/// Providers remembered as folded into `other`: bounded, since provider
/// names come from clients.
const FOLDED_CACHE: usize = 10_000;

fn add(tx: &mut Tx<'_>, family: &'static str, label: &str, delta: i64) {
    tx.counted.add(family, label, delta);
}

/// Writes counter changes, one row at a time, to stripe `stripe` of each
/// (a plain UPDATE by primary key is the cheapest statement SQLite has; a
/// single statement over several rows needs ephemeral tables, which cost
/// more than the rows), with an upsert for a row's first use. Readers sum
/// the stripes.
pub(super) fn write(db: &Db<'_>, counted: Counted, stripe: i64) -> Result<()> {
    for ((family, label), delta) in counted.into_changes() {
        let updated = db.execute(
            "UPDATE counters SET value = value + ?3 WHERE family = ?1 AND label = ?2 AND stripe = ?4",
            args![family, label, delta, stripe],
        )?;
        if updated == 0 {
            db.execute(
                "INSERT INTO counters (family, label, stripe, value) VALUES (?1, ?2, ?4, ?3)
                 ON CONFLICT (family, label, stripe) DO UPDATE SET value = counters.value + excluded.value",
                args![family, label, delta, stripe],
            )?;
        }
    }
    Ok(())
}

/// Writes what an operation has gathered so far at once, as the writer
/// would at commit (for the benchmark that times statements alone).
pub fn flush(tx: &mut Tx<'_>) -> Result<()> {
    let counted = std::mem::take(&mut tx.counted);
    write(tx, counted, tx.stripe)
}

/// Adds to a crew's queued count (its row is created with the crew) and
/// returns the new count (plain statements, for the reason `write` gives).
/// Written at once, not at commit: the dispatcher reads it.
fn crew_queued(db: &Db<'_>, crew_id: i64, delta: i64) -> Result<i64> {
    db.execute("UPDATE crew_counts SET queued = queued + ?2 WHERE crew_id = ?1", args![crew_id, delta])?;
    db.query_one("SELECT queued FROM crew_counts WHERE crew_id = ?1", args![crew_id], |r| r.get(0))
}

/// An assignment of `crew_id` moved from `from` (None: created) to `to`.
pub fn assignment_moved(
    tx: &mut Tx<'_>,
    crew_id: i64,
    from: Option<AssignmentStatus>,
    to: AssignmentStatus,
) -> Result<()> {
    if !tx.counting() {
        return Ok(());
    }
    if let Some(from) = from {
        add(tx, ASSIGNMENTS, from.as_str(), -1);
    }
    add(tx, ASSIGNMENTS, to.as_str(), 1);
    let dq = i64::from(to == AssignmentStatus::Queued) - i64::from(from == Some(AssignmentStatus::Queued));
    if dq == 0 {
        return Ok(());
    }
    let queued = crew_queued(tx, crew_id, dq)?;
    // The crew's queue just became non-empty, or just drained. (The depth
    // itself is the `queued` assignment count: no counter of its own.)
    if (dq == 1 && queued == 1) || (dq == -1 && queued == 0) {
        add(tx, QUEUE, QUEUE_CREWS, dq);
    }
    Ok(())
}

pub fn pipeline_run_moved(tx: &mut Tx<'_>, from: Option<PipelineRunStatus>, to: PipelineRunStatus) -> Result<()> {
    if !tx.counting() {
        return Ok(());
    }
    if let Some(from) = from {
        add(tx, PIPELINE_RUNS, from.as_str(), -1);
    }
    add(tx, PIPELINE_RUNS, to.as_str(), 1);
    Ok(())
}

/// One run lifecycle event (`started`, `completed`, …). Never decremented.
pub fn run_event(tx: &mut Tx<'_>, event: &str) -> Result<()> {
    if !tx.counting() {
        return Ok(());
    }
    add(tx, RUN_EVENTS, event, 1);
    Ok(())
}

/// What one LLM call adds to its series.
#[derive(Debug, Clone, Copy)]
pub struct LlmDelta {
    pub cost_nanos: i64,
    pub tokens: Tokens,
}

/// Adds a call to an existing series unless a total would pass its bound:
/// `Ok(false)` when the series has no row yet.
fn bump_series(tx: &Tx<'_>, label: &str, d: LlmDelta) -> Result<bool> {
    if add_to_series(tx, label, d)? {
        return Ok(true);
    }
    let exists: bool =
        tx.query_one("SELECT EXISTS (SELECT 1 FROM llm_series WHERE label = ?1)", args![label], |r| r.get(0))?;
    // Where writers commit concurrently the row may have been committed
    // between the two statements: only a second miss means the bound.
    if exists && !add_to_series(tx, label, d)? {
        return Err(DomainError::invalid(format!(
            "this call would take a running total of provider series {label:?} over its bound of {} \
             (nano-USD, or tokens of one type); nothing was recorded",
            pricing::SERIES_TOTAL_MAX
        )));
    }
    Ok(exists)
}

/// The UPDATE of `bump_series`: whether a row took the call.
fn add_to_series(tx: &Tx<'_>, label: &str, d: LlmDelta) -> Result<bool> {
    let t = d.tokens;
    let n = tx.execute(
        "UPDATE llm_series SET calls = calls + 1, cost_nanos = cost_nanos + ?2,
             input_tokens = input_tokens + ?3, output_tokens = output_tokens + ?4,
             cached_input_tokens = cached_input_tokens + ?5, cache_creation_tokens = cache_creation_tokens + ?6
         WHERE label = ?1 AND cost_nanos <= CAST(?7 AS BIGINT) - ?2
             AND input_tokens <= CAST(?7 AS BIGINT) - ?3 AND output_tokens <= CAST(?7 AS BIGINT) - ?4
             AND cached_input_tokens <= CAST(?7 AS BIGINT) - ?5
             AND cache_creation_tokens <= CAST(?7 AS BIGINT) - ?6",
        args![label, d.cost_nanos, t.input, t.output, t.cached_input, t.cache_creation, pricing::SERIES_TOTAL_MAX],
    )?;
    Ok(n == 1)
}

/// Counts one LLM call of a (normalized) provider and returns the series
/// label it counts under: its own among the first `MAX_OWN_SERIES`
/// providers, `other` after that. A call that would take a total over its
/// bound is refused (the caller's savepoint drops what it wrote).
pub fn llm_call(tx: &mut Tx<'_>, provider: &str, d: LlmDelta) -> Result<String> {
    if !tx.counting() {
        return Ok(provider.to_string());
    }
    // The common cases, one statement: the provider has its series, or is
    // known to fold into `other` (which it then does for good).
    let known_other = tx.folded.contains(provider);
    if !known_other && bump_series(tx, provider, d)? {
        return Ok(provider.to_string());
    }
    if known_other && bump_series(tx, provider::OTHER, d)? {
        return Ok(provider::OTHER.to_string());
    }
    // Who gets a series of their own is decided one writer at a time, so
    // the cap holds under concurrent writers.
    tx.lock_for_transaction(super::locks::NEW_SERIES)?;
    if !known_other && bump_series(tx, provider, d)? {
        return Ok(provider.to_string());
    }
    let own_count: i64 =
        tx.query_one("SELECT COUNT(*) FROM llm_series WHERE label <> ?1", args![provider::OTHER], |r| r.get(0))?;
    let label = match provider::series_label(provider, false, own_count) {
        SeriesLabel::Own | SeriesLabel::NewOwn => provider,
        SeriesLabel::Other => {
            if tx.folded.len() < FOLDED_CACHE {
                tx.folded.insert(provider.to_string());
            }
            if bump_series(tx, provider::OTHER, d)? {
                return Ok(provider::OTHER.to_string());
            }
            provider::OTHER
        }
    };
    // Position orders the series by first appearance (`other` is listed last
    // whatever its position).
    let t = d.tokens;
    tx.execute(
        "INSERT INTO llm_series (label, position, calls, cost_nanos, input_tokens, output_tokens,
             cached_input_tokens, cache_creation_tokens)
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)",
        args![label, own_count + 1, d.cost_nanos, t.input, t.output, t.cached_input, t.cache_creation],
    )?;
    Ok(label.to_string())
}

/// Gives each of `providers` (the rate card's, in its order) a series of
/// its own at zero while the cap allows, unless it has one: a series that
/// first appears with a value hides its first increase from `rate()`.
pub fn seed_series(tx: &mut Tx<'_>, providers: &[String]) -> Result<()> {
    if !tx.counting() {
        return Ok(());
    }
    tx.lock_for_transaction(super::locks::NEW_SERIES)?;
    for p in providers {
        let exists: bool =
            tx.query_one("SELECT EXISTS (SELECT 1 FROM llm_series WHERE label = ?1)", args![p], |r| r.get(0))?;
        let own_count: i64 =
            tx.query_one("SELECT COUNT(*) FROM llm_series WHERE label <> ?1", args![provider::OTHER], |r| r.get(0))?;
        if !exists && provider::series_label(p, false, own_count) == SeriesLabel::NewOwn {
            tx.execute("INSERT INTO llm_series (label, position) VALUES (?1, ?2)", args![p, own_count + 1])?;
        }
    }
    Ok(())
}

/// Takes the crew's counts row for this transaction's claims, unless
/// another node's transaction holds it: so claims of one crew take turns
/// across a fleet, and never wait on each other (claims lock crews in one
/// order, queueing in another: waiting could deadlock).
pub fn hold_crew(db: &Db<'_>, crew_id: i64) -> Result<bool> {
    let lock = db.locking(RowLock::SkipLocked, "n");
    let held = db.query_opt(
        &format!("SELECT n.crew_id FROM crew_counts n WHERE n.crew_id = ?1{lock}"),
        args![crew_id],
        |r| r.get::<i64>(0),
    )?;
    Ok(held.is_some())
}

/// Running agents of a crew now (the dispatcher's budget check), from the
/// index of running assignments: at most the crew's budget of entries.
pub fn crew_running(db: &Db<'_>, crew_id: i64) -> Result<i64> {
    db.query_one("SELECT COUNT(*) FROM assignments WHERE crew_id = ?1 AND status = 'running'", args![crew_id], |r| {
        r.get(0)
    })
}
