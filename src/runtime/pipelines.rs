//! The pipeline executor: drives each running pipeline run through its
//! steps, one assignment per step, and starts queued runs as slots free.
//! Every decision is the store's (`store::pipeline_runs`), from the run as
//! stored, so a driver can stop or restart at any point without losing its
//! place.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::runner::Runner;
use super::spans::Telemetry;
use crate::domain::event::{Event, EventKind};
use crate::domain::status::{PipelineRunStatus, StepStatus};
use crate::domain::{DomainError, Result, template};
use crate::store::assignments;
use crate::store::pipelines::{self, PipelineRow, PipelineRunRow, StepRow};
use crate::store::{Store, pipeline_runs};
use crate::sync::lock;

pub struct Executor {
    store: Store,
    runner: Arc<Runner>,
    /// This node: it drives the runs it starts or takes back.
    node: String,
    driving: Mutex<HashSet<i64>>,
    /// `CREWSHIP_MAX_TASK_BYTES`: a step whose task renders larger fails.
    max_task_bytes: usize,
    telemetry: Telemetry,
}

/// What to do next for a run, decided from its stored state.
enum Next {
    Done,
    Start(StepRow),
    Wait(StepRow),
}

fn next_step(run: &PipelineRunRow) -> Next {
    if run.status != PipelineRunStatus::Running {
        return Next::Done;
    }
    match run.steps.iter().find(|s| s.status != StepStatus::Completed) {
        None => Next::Done,
        Some(s) if s.status == StepStatus::Pending => Next::Start(s.clone()),
        Some(s) => Next::Wait(s.clone()),
    }
}

/// Waits until assignment `id` publishes a terminal event, or until events
/// were missed (the caller re-reads the store either way).
async fn await_terminal(events: &mut broadcast::Receiver<Arc<Event>>, id: i64) -> bool {
    loop {
        match events.recv().await {
            Ok(e) => {
                if let EventKind::Assignment { id: of, status } = e.kind
                    && of == id
                    && status.is_terminal()
                {
                    return true;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return true,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

impl Executor {
    pub fn new(
        store: Store,
        runner: Arc<Runner>,
        max_task_bytes: usize,
        node: String,
        telemetry: Telemetry,
    ) -> Executor {
        Executor { store, runner, node, driving: Mutex::new(HashSet::new()), max_task_bytes, telemetry }
    }

    /// Sends an ended run's spans: its own and its steps'.
    async fn traced(&self, run_id: i64) {
        if !self.telemetry.tracer.is_on() {
            return;
        }
        let read = self
            .store
            .read(move |c| {
                let run = pipeline_runs::get(c, run_id)?;
                let mut steps = Vec::new();
                for s in &run.steps {
                    if let Some(a) = s.assignment_id.map(|a| assignments::by_id(c, a)).transpose()?.flatten() {
                        steps.push((s.idx, s.step_id.clone(), a));
                    }
                }
                Ok((run, steps))
            })
            .await;
        match read {
            Ok((run, steps)) if run.status.is_terminal() => self.telemetry.pipeline_ended(&run, &steps),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, run = run_id, "cannot read a pipeline run for its spans"),
        }
    }

    /// Drives a running pipeline run in the background (once per run).
    pub fn drive(self: &Arc<Self>, run_id: i64) {
        if !lock(&self.driving).insert(run_id) {
            return;
        }
        let exec = self.clone();
        tokio::spawn(async move {
            let node = exec.node.clone();
            let ended = match exec.store.write(move |tx| pipelines::set_driver(tx, run_id, &node)).await {
                Ok(()) => exec.drive_steps(run_id).await,
                Err(e) => Err(e),
            };
            lock(&exec.driving).remove(&run_id);
            match ended {
                Ok(Some(pipeline_id)) => {
                    exec.traced(run_id).await;
                    exec.start_queued(pipeline_id).await
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, run = run_id, "pipeline run driver failed");
                    let reason = format!("internal error: {e}");
                    let failed = exec.store.write(move |tx| pipeline_runs::fail(tx, run_id, reason)).await;
                    if let Ok(pipeline_id) = failed {
                        exec.traced(run_id).await;
                        exec.start_queued(pipeline_id).await;
                    }
                }
            }
        });
    }

    /// Returns the pipeline id once the run has ended (None: the event
    /// stream closed, the daemon is stopping).
    async fn drive_steps(&self, run_id: i64) -> Result<Option<i64>> {
        loop {
            // Subscribe before reading, so no event between the two is lost.
            let mut events = self.store.subscribe();
            let run = self.store.read(move |c| pipeline_runs::get(c, run_id)).await?;
            match next_step(&run) {
                Next::Done => {
                    if run.status == PipelineRunStatus::Running {
                        self.store.write(move |tx| pipeline_runs::complete(tx, run_id)).await?;
                    }
                    return Ok(Some(run.pipeline_id));
                }
                Next::Start(step) => {
                    let (pipeline_id, idx) = (run.pipeline_id, step.idx as usize);
                    let template = self
                        .store
                        .read(move |c| {
                            let pipeline = pipelines::pipeline_by_id(c, pipeline_id)?;
                            Ok(pipeline.and_then(|p| p.steps.get(idx).map(|s| s.task.clone())).unwrap_or_default())
                        })
                        .await?;
                    let task = template::render_step(
                        &step.step_id,
                        &template,
                        &run.inputs,
                        &run.outputs(),
                        self.max_task_bytes,
                    );
                    let link = self.telemetry.step_link(&run, step.idx);
                    self.store.write(move |tx| pipeline_runs::start_step(tx, run_id, &step, task, link)).await?
                }
                Next::Wait(step) => {
                    let Some(aid) = step.assignment_id else {
                        return Err(DomainError::internal(format!("step {} runs without an assignment", step.step_id)));
                    };
                    let a = self
                        .store
                        .read(move |c| {
                            assignments::by_id(c, aid)?.ok_or_else(|| DomainError::not_found("assignment", ""))
                        })
                        .await?;
                    if a.status.is_terminal() {
                        self.store.write(move |tx| pipeline_runs::settle_step(tx, run_id, &step, &a)).await?;
                    } else if !await_terminal(&mut events, a.id).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Starts queued runs of a pipeline while it has free slots.
    pub async fn start_queued(self: &Arc<Self>, pipeline_id: i64) {
        let started = self.store.write(move |tx| pipeline_runs::start_queued(tx, pipeline_id)).await;
        match started {
            Ok(ids) => ids.into_iter().for_each(|id| self.drive(id)),
            Err(e) => {
                tracing::error!(error = %e, pipeline = pipeline_id, "could not start queued pipeline runs")
            }
        }
    }

    /// Cancels a queued or running pipeline run and its step in flight.
    pub async fn cancel(self: &Arc<Self>, run: PipelineRunRow, reason: &str) -> Result<PipelineRunRow> {
        let reason = reason.to_string();
        let run_id = run.id;
        let (run, in_flight) = self.store.write(move |tx| pipeline_runs::cancel(tx, run_id, reason)).await?;
        for aid in in_flight {
            let row = self.store.read(move |c| assignments::by_id(c, aid)).await?;
            if let Some(row) = row.filter(|r| !r.status.is_terminal()) {
                super::cancel::cancel_assignment(&self.store, &self.runner, row.id, "pipeline run cancelled").await?;
            }
        }
        self.start_queued(run.pipeline_id).await;
        Ok(run)
    }

    /// Soft-deletes a live pipeline, then cancels its unfinished runs.
    pub async fn delete_pipeline(self: &Arc<Self>, key: String) -> Result<PipelineRow> {
        let (pipeline, unfinished) = self.store.write(move |tx| pipelines::delete(tx, &key)).await?;
        for run in unfinished {
            match self.cancel(run, "pipeline deleted").await {
                Ok(_) | Err(DomainError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pipeline)
    }
}
