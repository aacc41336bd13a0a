//! Taking back the runs of a node that can no longer finish them: see
//! `runtime::recovery`, which kills their processes first. In one
//! transaction: the runs end `cancelled` with the reason, their
//! assignments go back to their queue at their original position
//! (at-least-once), or fail after the attempt limit, and the pipeline runs
//! the node drove are handed to the caller to drive from where they stand.

use super::assignments;
use super::nodes::{self, NodeRef};
use super::tx::Tx;
use super::{pipelines, runs};
use crate::domain::Result;
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, RunStatus};

/// Why an earlier epoch's runs ended.
pub const REASON: &str = "server_restart";
/// Why an expired node's runs ended.
pub const NODE_LOST: &str = "node_lost";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub runs_cancelled: usize,
    pub requeued: usize,
    pub failed: usize,
    pub pipeline_runs_adopted: usize,
    pub nodes: usize,
}

/// Whose runs to take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whose {
    AtStart,
    OwnEarlierEpochs,
    Expired,
}

/// Whether a run (or a pipeline run's driver) executed by `owner` is
/// taken back: `expired` names the expired node when there is one.
pub fn taken_back(whose: Whose, me: &NodeRef, owner: Option<&NodeRef>, expired: Option<&str>, single: bool) -> bool {
    let earlier = |o: &NodeRef| o.id == me.id && o.epoch < me.epoch;
    match (whose, owner) {
        (Whose::Expired, Some(o)) => Some(o.id.as_str()) == expired,
        (Whose::Expired, None) => false,
        // Written before nodes existed, or by any daemon of a store that
        // only ever has one node.
        (Whose::AtStart, None) => true,
        (Whose::AtStart, Some(o)) => earlier(o) || (single && o != me),
        (Whose::OwnEarlierEpochs, Some(o)) => earlier(o),
        (Whose::OwnEarlierEpochs, None) => false,
    }
}

/// Whether this node drives a pipeline run driven by `driver` from now on
/// (when it drove it before, it may still be: driving again is a no-op).
fn adopts(whose: Whose, me: &NodeRef, driver: Option<&str>, expired: Option<&str>, single: bool) -> bool {
    match whose {
        Whose::Expired => driver.is_some() && driver == expired,
        Whose::AtStart => single || driver.is_none_or(|d| d == me.id),
        Whose::OwnEarlierEpochs => driver == Some(me.id.as_str()),
    }
}

/// Settles the runs `taken_back` selects; returns the pipeline runs to
/// drive here.
fn settle(
    tx: &mut Tx<'_>,
    whose: Whose,
    me: &NodeRef,
    expired: Option<&str>,
    max_attempts: i64,
    done: &mut Recovered,
) -> Result<Vec<i64>> {
    let single = !tx.concurrent();
    let reason = if whose == Whose::Expired { NODE_LOST } else { REASON };
    for run in runs::running_managed(tx)? {
        if taken_back(whose, me, run.node.as_ref(), expired, single) {
            runs::finish(tx, run, RunStatus::Cancelled, Some(reason.into()), None)?;
            done.runs_cancelled += 1;
        }
    }
    for row in assignments::running(tx)? {
        let run = row.run_id.as_deref().map(|r| runs::by_id(tx, r)).transpose()?.flatten();
        let owner = run.as_ref().and_then(|r| r.node.clone());
        let still_running = run.is_some_and(|r| r.status == RunStatus::Running);
        // A run this node executes now (or another live node does) stays.
        if still_running || !taken_back(whose, me, owner.as_ref(), expired, single) {
            continue;
        }
        let row = assignments::requeue_or_fail(tx, row, reason, max_attempts)?;
        match row.status {
            AssignmentStatus::Queued => done.requeued += 1,
            _ => done.failed += 1,
        }
    }
    let mut adopted = Vec::new();
    for run in pipelines::runs_in(tx, &[PipelineRunStatus::Running])? {
        if adopts(whose, me, run.node.as_deref(), expired, single) {
            pipelines::set_driver(tx, run.id, &me.id)?;
            adopted.push(run.id);
        }
    }
    done.pipeline_runs_adopted += adopted.len();
    Ok(adopted)
}

/// What a recovery took back, and what the caller is to drive.
#[derive(Debug, Default)]
pub struct TakenBack {
    pub recovered: Recovered,
    /// Pipeline runs to drive here.
    pub adopted: Vec<i64>,
    /// Pipelines with queued runs that may start.
    pub queued: Vec<i64>,
    /// Expired nodes forgotten.
    pub forgotten: usize,
}

/// Takes back what `whose` selects for `me`; expired nodes recovered more
/// than `forget_after_ms` ago are forgotten.
pub fn take_back(
    tx: &mut Tx<'_>,
    whose: Whose,
    me: &NodeRef,
    max_attempts: i64,
    forget_after_ms: i64,
) -> Result<TakenBack> {
    let mut done = TakenBack::default();
    if whose == Whose::Expired {
        for node in nodes::to_recover(tx)?.into_iter().filter(|n| n.id != me.id) {
            done.adopted.extend(settle(tx, whose, me, Some(&node.id), max_attempts, &mut done.recovered)?);
            nodes::mark_recovered(tx, &node.id)?;
            done.recovered.nodes += 1;
        }
        done.forgotten = nodes::forget_recovered(tx, forget_after_ms)?;
    } else {
        done.adopted = settle(tx, whose, me, None, max_attempts, &mut done.recovered)?;
    }
    if whose == Whose::AtStart && !tx.concurrent() {
        nodes::forget_others(tx, &me.id)?;
    }
    // Queued pipeline runs wait for a slot that a run's end frees; look
    // again at start, in case the end came with the crash.
    if whose == Whose::AtStart {
        done.queued =
            pipelines::runs_in(tx, &[PipelineRunStatus::Queued])?.into_iter().map(|r| r.pipeline_id).collect();
        done.queued.dedup();
    }
    Ok(done)
}
