//! Long-running workers, owned by one supervisor: this node's membership
//! of the fleet, the dispatcher, the process runner, the pipeline executor
//! and the journal archiver. Start-up recovery runs before any of them.

pub mod archiver;
pub mod contain;
pub mod dispatcher;
pub mod fleet;
pub mod pipelines;
pub mod recovery;
pub mod runner;
mod spans;
mod spawn;

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::containers::CrewContainers;
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, RunStatus};
use crate::domain::{DomainError, Result};
use crate::store::assignments::{self, AssignmentRow, Changes};
use crate::store::pipelines::{PipelineRow, PipelineRunRow};
use crate::store::{Store, runs};
use crate::sync::lock;
use runner::{Runner, StopReason};
pub use spans::Telemetry;

pub struct Runtime {
    store: Store,
    runner: Arc<Runner>,
    executor: Arc<pipelines::Executor>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Cancels an assignment: waiting → cancelled; running → its process is
/// stopped first; cancelled → no-op; completed or failed → conflict.
pub async fn cancel_assignment(
    store: &Store,
    runner: &Runner,
    row: AssignmentRow,
    reason: &str,
) -> Result<AssignmentRow> {
    let mut row = row;
    // The dispatcher may claim a queued row between our read and write; the
    // guarded transition then fails and we look again.
    for _ in 0..5 {
        match row.status {
            AssignmentStatus::Cancelled => return Ok(row),
            AssignmentStatus::Completed | AssignmentStatus::Failed => {
                return Err(DomainError::conflict(format!("assignment {} is already {}", row.public_id(), row.status)));
            }
            AssignmentStatus::Running => {
                if !runner.stop(row.id, StopReason::Cancel).await {
                    // Not executing here (it ended meanwhile, or its process
                    // is gone): settle the records directly.
                    let reason = reason.to_string();
                    let id = row.id;
                    let settled = store
                        .write(move |tx| {
                            let Some(row) =
                                assignments::by_id(tx, id)?.filter(|r| r.status == AssignmentStatus::Running)
                            else {
                                return Ok(());
                            };
                            if let Some(run) = row.run_id.as_deref().map(|r| runs::get(tx, r)).transpose()?
                                && run.status == RunStatus::Running
                            {
                                runs::finish(tx, run, RunStatus::Cancelled, Some(reason.clone()), None)?;
                            }
                            let changes = Changes { error_message: Some(reason), ..Changes::default() };
                            assignments::move_to(tx, row, AssignmentStatus::Cancelled, changes).map(|_| ())
                        })
                        .await;
                    settled?;
                }
            }
            AssignmentStatus::Pending | AssignmentStatus::Queued => {
                let reason = reason.to_string();
                let r = row.clone();
                let moved = store
                    .write(move |tx| {
                        let changes = Changes { error_message: Some(reason), ..Changes::default() };
                        assignments::move_to(tx, r, AssignmentStatus::Cancelled, changes)
                    })
                    .await;
                match moved {
                    Ok(r) => return Ok(r),
                    Err(DomainError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let id = row.id;
        row = store
            .read(move |c| assignments::by_id(c, id)?.ok_or_else(|| DomainError::not_found("assignment", "")))
            .await?;
    }
    Err(DomainError::conflict(format!("assignment {} keeps changing; try again", row.public_id())))
}

/// What the workers are set up with.
pub struct Settings {
    pub runner: runner::Settings,
    /// How runs are to be contained (detected at start).
    pub containment: contain::Mode,
    /// A pipeline step whose task renders larger fails.
    pub max_task_bytes: usize,
    pub journal: archiver::Policy,
    /// How often the journal archiver sweeps.
    pub archive_every: std::time::Duration,
    pub fleet: fleet::Settings,
}

impl Runtime {
    /// Joins the fleet, takes back what earlier daemons left in flight,
    /// then starts the workers. Queued work starts at once.
    pub async fn start(
        store: Store,
        settings: Settings,
        containers: CrewContainers,
        telemetry: Telemetry,
    ) -> Result<Runtime> {
        let containment = contain::Containment::detect(settings.containment).map_err(DomainError::invalid)?;
        tracing::info!(containment = containment.describe(), "how runs are contained");
        let (max_attempts, forget_after) = (settings.fleet.max_attempts, settings.fleet.forget_after);
        let membership = Arc::new(fleet::Membership::join(&store, settings.fleet).await?);
        let me = membership.me();
        let engine = containers.engine().clone();
        let runner = Arc::new(Runner::new(store.clone(), settings.runner, containment, containers, telemetry.clone()));
        let executor = Arc::new(pipelines::Executor::new(
            store.clone(),
            runner.clone(),
            settings.max_task_bytes,
            me.id.clone(),
            telemetry,
        ));
        let recovered =
            recovery::recover(&store, &engine, &executor, recovery::Whose::AtStart, &me, max_attempts, forget_after)
                .await?;
        if recovered != recovery::Recovered::default() {
            tracing::warn!(?recovered, "took back the work earlier daemons left in flight");
        }
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(dispatcher::run(
                store.clone(),
                runner.clone(),
                membership.clone(),
                store.subscribe(),
                stop_rx.clone(),
            )),
            tokio::spawn(runner.clone().follow_cancels(store.subscribe(), stop_rx.clone())),
            tokio::spawn(membership.clone().run(runner.clone(), executor.clone(), engine, stop_rx.clone())),
            tokio::spawn(archiver::run(store.clone(), settings.journal, settings.archive_every, stop_rx)),
        ];
        Ok(Runtime { store, runner, executor, stop, tasks: Mutex::new(tasks) })
    }

    pub async fn cancel_assignment(&self, row: AssignmentRow, reason: &str) -> Result<AssignmentRow> {
        cancel_assignment(&self.store, &self.runner, row, reason).await
    }

    pub fn live_output(&self, run_id: &str) -> Option<String> {
        self.runner.live_output(run_id)
    }

    pub fn pipeline_run_started(&self, run_id: i64) {
        self.executor.drive(run_id);
    }

    pub async fn cancel_pipeline_run(&self, run: PipelineRunRow, reason: &str) -> Result<PipelineRunRow> {
        self.executor.cancel(run, reason).await
    }

    /// Soft-deletes a pipeline after cancelling its unfinished runs.
    pub async fn delete_pipeline(&self, pipeline: &PipelineRow) -> Result<()> {
        let id = pipeline.id;
        self.store.write(move |tx| crate::store::pipelines::mark_deleted(tx, id)).await?;
        let unfinished = self
            .store
            .read(move |c| {
                let runs =
                    crate::store::pipelines::runs_in(c, &[PipelineRunStatus::Queued, PipelineRunStatus::Running])?;
                Ok(runs.into_iter().filter(|r| r.pipeline_id == id).collect::<Vec<_>>())
            })
            .await?;
        for run in unfinished {
            match self.executor.cancel(run, "pipeline deleted").await {
                Ok(_) | Err(DomainError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Stops the workers, then the children: their runs end cancelled
    /// (`server_shutdown`) and their assignments return to the queue.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        self.runner.stop_all(StopReason::Shutdown).await;
    }
}
