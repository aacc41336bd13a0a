//! Taking back runs whose node can no longer finish them:
//!
//! - at start, what this node's earlier epochs left (on SQLite, where this
//!   node is the whole fleet, whatever any earlier daemon left), once the
//!   processes they left on this host are killed;
//! - after this node had to stop its runs (it was fenced), its earlier
//!   epochs' runs;
//! - the runs of a node whose lease expired, by one live node, once: the
//!   node's row is locked meanwhile, then marked recovered.
//!
//! In one transaction: the runs end `cancelled` with the reason, their
//! assignments go back to their queue at their original position
//! (at-least-once), or fail after the attempt limit, and the pipeline runs
//! the node drove are driven here from where they stand (each step starts
//! once: see `pipelines`).

use std::sync::Arc;

use super::pipelines::Executor;
use crate::containers::{Engine, exec};
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, RunStatus};
use crate::domain::{DomainError, Result};
use crate::store::assignments;
use crate::store::nodes::{self, NodeRef};
use crate::store::runs::RunRow;
use crate::store::{Store, Tx, crews, pipelines, runs};

/// Why an earlier epoch's runs ended.
pub const REASON: &str = "server_restart";
/// Why an expired node's runs ended.
pub const NODE_LOST: &str = "node_lost";

/// How long start-up waits for the engine to kill one run's processes.
const ENGINE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
fn taken_back(whose: Whose, me: &NodeRef, owner: Option<&NodeRef>, expired: Option<&str>, single: bool) -> bool {
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

/// Kills what runs being taken back left on this host, so that a requeued
/// assignment never runs twice at once.
async fn kill_leftovers(store: &Store, engine: &Engine, whose: Whose, me: &NodeRef) -> Result<()> {
    let single = store.single_node();
    let mut engine_answers = true;
    for run in store.read(runs::running_managed).await? {
        if !taken_back(whose, me, run.node.as_ref(), None, single) {
            continue;
        }
        if run.pid.is_some() || run.cgroup.is_some() {
            if super::contain::kill_left_over(&run.id, run.pid, run.cgroup.as_deref()).await {
                tracing::warn!(run = run.id, pid = run.pid, "killed the processes of a run an earlier daemon left");
            }
        } else if engine_answers {
            engine_answers = kill_in_container(store, engine, &run).await?;
        }
    }
    Ok(())
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

pub async fn recover(
    store: &Store,
    engine: &Engine,
    executor: &Arc<Executor>,
    whose: Whose,
    me: &NodeRef,
    max_attempts: i64,
    forget_after: std::time::Duration,
) -> Result<Recovered> {
    if whose != Whose::Expired {
        kill_leftovers(store, engine, whose, me).await?;
    }
    let me2 = me.clone();
    let (done, adopted, queued, forgotten) = store
        .write(move |tx| {
            let mut done = Recovered::default();
            let mut adopted = Vec::new();
            let mut forgotten = 0;
            if whose == Whose::Expired {
                for node in nodes::to_recover(tx)?.into_iter().filter(|n| n.id != me2.id) {
                    adopted.extend(settle(tx, whose, &me2, Some(&node.id), max_attempts, &mut done)?);
                    nodes::mark_recovered(tx, &node.id)?;
                    done.nodes += 1;
                }
                let after_ms = i64::try_from(forget_after.as_millis()).unwrap_or(i64::MAX);
                forgotten = nodes::forget_recovered(tx, after_ms)?;
            } else {
                adopted = settle(tx, whose, &me2, None, max_attempts, &mut done)?;
            }
            if whose == Whose::AtStart && !tx.concurrent() {
                nodes::forget_others(tx, &me2.id)?;
            }
            // Queued pipeline runs wait for a slot that a run's end frees;
            // look again at start, in case the end came with the crash.
            let mut queued: Vec<i64> = if whose == Whose::AtStart {
                pipelines::runs_in(tx, &[PipelineRunStatus::Queued])?.into_iter().map(|r| r.pipeline_id).collect()
            } else {
                Vec::new()
            };
            queued.dedup();
            Ok((done, adopted, queued, forgotten))
        })
        .await?;
    if forgotten > 0 {
        tracing::info!(forgotten, after = ?forget_after, "forgot expired nodes whose runs were taken back");
    }
    for run_id in adopted {
        executor.drive(run_id);
    }
    for pipeline_id in queued {
        executor.start_queued(pipeline_id).await;
    }
    Ok(done)
}

/// A run in a crew container has no pid on this host: its processes are
/// found in the container. Returns false if the engine did not answer, so
/// start-up asks it no more (it waits for no engine); what such runs left
/// is up to their containers, said in the log.
async fn kill_in_container(store: &Store, engine: &Engine, run: &RunRow) -> Result<bool> {
    let Some(crew_id) = run.crew.as_ref().map(|c| c.id) else {
        return Ok(true);
    };
    let Some(crew) = store.read(move |c| crews::by_id(c, crew_id)).await?.filter(|c| c.runs_in_container()) else {
        return Ok(true);
    };
    let container = engine.container_name(&crew);
    let killed = tokio::time::timeout(ENGINE_WAIT, exec::kill_left_over(engine, &container, &run.id))
        .await
        .unwrap_or_else(|_| Err(DomainError::Unavailable(format!("no answer within {ENGINE_WAIT:?}"))));
    match killed {
        Ok(true) => tracing::warn!(run = run.id, container, "killed the process of a run an earlier daemon left"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(
                run = run.id, container, error = %e,
                "cannot reach the container of a run an earlier daemon left; its processes, and those of \
                 any other run left in a container, may still be running"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
