//! Start-up recovery, before any traffic: settle what a dead daemon left
//! in flight.
//!
//! - pipeline runs left queued or running become `interrupted` (resuming
//!   them could run a step twice with outputs the run never saw), and the
//!   work of their unfinished steps is cancelled;
//! - runs crewshipd started that are still `running` get `run.cancelled`
//!   with reason `server_restart`, once whatever is left of their process
//!   (here, or in the crew's container) is killed;
//! - their assignments go back to their queue at their original position
//!   (at-least-once), or fail after the attempt limit.

use std::collections::HashSet;

use crate::containers::{Engine, docker, exec};
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, RunStatus, StepStatus};
use crate::domain::{DomainError, Result};
use crate::store::assignments::{self, Changes};
use crate::store::runs::RunRow;
use crate::store::{Store, crews, pipelines, runs};

pub const REASON: &str = "server_restart";

/// How long start-up waits for the engine to kill one run's processes.
const ENGINE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    pub runs_cancelled: usize,
    pub requeued: usize,
    pub failed: usize,
    pub pipeline_runs_interrupted: usize,
}

pub async fn recover(store: &Store, engine: &Engine, max_attempts: u32) -> Result<Recovered> {
    let max_attempts = i64::from(max_attempts);
    // Processes outlive a daemon killed with SIGKILL: stop them first, so a
    // requeued assignment never runs twice at once.
    let mut engine_answers = true;
    for run in store.read(runs::running_managed).await? {
        if run.pid.is_some() || run.cgroup.is_some() {
            if super::contain::kill_left_over(&run.id, run.pid, run.cgroup.as_deref()).await {
                tracing::warn!(
                    run = run.id,
                    pid = run.pid,
                    "killed the processes of a run left by the previous daemon"
                );
            }
        } else if engine_answers {
            engine_answers = kill_in_container(store, engine, &run).await?;
        }
    }
    store
        .write(move |tx| {
            let mut done = Recovered::default();
            let mut orphaned = HashSet::new();
            for run in pipelines::runs_in(tx, &[PipelineRunStatus::Queued, PipelineRunStatus::Running])? {
                let reason = format!("{REASON}: crewshipd stopped while the run was {}", run.status);
                for step in run.steps.iter().filter(|s| s.status == StepStatus::Running) {
                    pipelines::update_step(tx, run.id, step.idx, StepStatus::Cancelled, None, None, None)?;
                }
                orphaned.insert(run.id);
                pipelines::move_run(tx, run, PipelineRunStatus::Interrupted, Some(reason))?;
                done.pipeline_runs_interrupted += 1;
            }
            for run in runs::running_managed(tx)? {
                runs::finish(tx, run, RunStatus::Cancelled, Some(REASON.into()), None)?;
                done.runs_cancelled += 1;
            }
            for row in assignments::running(tx)? {
                if row.pipeline_run_id.is_some_and(|p| orphaned.contains(&p)) {
                    let changes = Changes {
                        error_message: Some(format!("pipeline run interrupted ({REASON})")),
                        ..Changes::default()
                    };
                    assignments::move_to(tx, row, AssignmentStatus::Cancelled, changes)?;
                    continue;
                }
                let row = assignments::requeue_or_fail(tx, row, REASON, max_attempts)?;
                match row.status {
                    AssignmentStatus::Queued => done.requeued += 1,
                    _ => done.failed += 1,
                }
            }
            for pipeline_run in orphaned {
                assignments::cancel_waiting(
                    tx,
                    assignments::Owner::PipelineRun(pipeline_run),
                    "pipeline run interrupted",
                )?;
            }
            Ok(done)
        })
        .await
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
    let container = docker::container_name(&crew);
    let killed = tokio::time::timeout(ENGINE_WAIT, exec::kill_left_over(engine, &container, &run.id))
        .await
        .unwrap_or_else(|_| Err(DomainError::Unavailable(format!("no answer within {ENGINE_WAIT:?}"))));
    match killed {
        Ok(true) => tracing::warn!(run = run.id, container, "killed the process of a run left by the previous daemon"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(
                run = run.id, container, error = %e,
                "cannot reach the container of a run left by the previous daemon; its processes, and those of \
                 any other run left in a container, may still be running"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
