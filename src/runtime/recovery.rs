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
//! The store settles the records in one transaction (`store::recovery`):
//! the runs end `cancelled` with the reason, their assignments go back to
//! their queue at their original position (at-least-once), or fail after
//! the attempt limit; the pipeline runs the node drove are driven here from
//! where they stand (each step starts once: see `pipelines`).

use std::sync::Arc;

use super::pipelines::Executor;
use crate::containers::{Engine, exec};
use crate::domain::{DomainError, Result};
use crate::store::nodes::NodeRef;
use crate::store::recovery::{self, TakenBack, taken_back};
pub use crate::store::recovery::{Recovered, Whose};
use crate::store::runs::RunRow;
use crate::store::{Store, crews, runs};

/// How long start-up waits for the engine to kill one run's processes.
const ENGINE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
    let after_ms = i64::try_from(forget_after.as_millis()).unwrap_or(i64::MAX);
    let me2 = me.clone();
    let TakenBack { recovered: done, adopted, queued, forgotten } =
        store.write(move |tx| recovery::take_back(tx, whose, &me2, max_attempts, after_ms)).await?;
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
