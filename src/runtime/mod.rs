//! Long-running workers, owned by one supervisor: this node's membership
//! of the fleet, the dispatcher, the process runner, the pipeline executor
//! and the journal archiver. Start-up recovery runs before any of them.

pub mod archiver;
mod cancel;
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
use crate::domain::{DomainError, Result};
use crate::store::Store;
use crate::store::assignments::AssignmentRow;
use crate::store::pipelines::{PipelineRow, PipelineRunRow};
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

    pub async fn cancel_assignment(&self, id: i64, reason: &str) -> Result<AssignmentRow> {
        cancel::cancel_assignment(&self.store, &self.runner, id, reason).await
    }

    pub async fn cancel_pipeline_run(&self, run: PipelineRunRow, reason: &str) -> Result<PipelineRunRow> {
        self.executor.cancel(run, reason).await
    }

    pub async fn delete_pipeline(&self, key: String) -> Result<PipelineRow> {
        self.executor.delete_pipeline(key).await
    }

    pub fn live_output(&self, run_id: &str) -> Option<String> {
        self.runner.live_output(run_id)
    }

    pub fn pipeline_run_started(&self, run_id: i64) {
        self.executor.drive(run_id);
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
