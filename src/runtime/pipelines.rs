//! The pipeline executor: drives each running pipeline run through its
//! steps, one assignment per step, and starts queued runs as slots free.
//! Every decision re-reads the run from the store, so a driver can stop or
//! restart at any point without losing its place.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::runner::Runner;
use super::spans::Telemetry;
use crate::domain::event::{Event, EventKind};
use crate::domain::ids::{self, Kind};
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, StepStatus};
use crate::domain::{DomainError, Result, template};
use crate::store::assignments::{self, AssignmentRow};
use crate::store::pipelines::{self, PipelineRunRow, StepRow};
use crate::store::{Db, Store, Tx, agents, crews};
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

fn fresh_run(db: &Db<'_>, id: i64) -> Result<PipelineRunRow> {
    pipelines::run_by_id(db, id)?
        .ok_or_else(|| DomainError::not_found("pipeline run", ids::format(Kind::PipelineRun, id)))
}

/// Fails a step, and with it the run.
fn fail_step(tx: &mut Tx<'_>, run: PipelineRunRow, step: &StepRow, reason: String) -> Result<()> {
    pipelines::update_step(tx, run.id, step.idx, StepStatus::Failed, None, None, None)?;
    pipelines::move_run(tx, run, PipelineRunStatus::Failed, Some(reason))?;
    Ok(())
}

/// The run, locked, if `step` still stands as the caller saw it: another
/// driver (a node that lost its lease and has not noticed yet) may have
/// moved it on.
fn still(tx: &Tx<'_>, run_id: i64, step: &StepRow) -> Result<Option<PipelineRunRow>> {
    pipelines::lock_run(tx, run_id)?;
    let run = fresh_run(tx, run_id)?;
    let unchanged = run.steps.iter().any(|s| s.idx == step.idx && s.status == step.status);
    Ok((run.status == PipelineRunStatus::Running && unchanged).then_some(run))
}

/// Creates the step's assignment from its task (rendered by the caller,
/// outside the writer), or fails the run if the step cannot run. A step
/// starts once, however many drivers try.
fn start_step(tx: &mut Tx<'_>, run_id: i64, step: &StepRow, task: Result<String>, link: Option<String>) -> Result<()> {
    let Some(run) = still(tx, run_id, step)? else {
        return Ok(());
    };
    let task = match task {
        Ok(task) => task,
        Err(DomainError::Invalid(reason)) => return fail_step(tx, run, step, reason),
        Err(e) => return Err(e),
    };
    let crew = crews::by_id(tx, step.crew_id)?.filter(|c| c.is_live());
    let agent = agents::by_id(tx, step.agent_id)?.filter(|a| a.is_live());
    let (Some(crew), Some(agent)) = (crew, agent) else {
        let reason = format!("step {:?}: its crew or agent was deleted", step.step_id);
        return fail_step(tx, run, step, reason);
    };
    let a = assignments::create(tx, &crew, &agent, None, &task, Some(run_id), link)?;
    pipelines::update_step(tx, run_id, step.idx, StepStatus::Running, Some(&task), Some(a.id), None)
}

/// Records a finished step's assignment; ends the run if the step failed.
fn settle_step(tx: &mut Tx<'_>, run_id: i64, step: &StepRow, a: &AssignmentRow) -> Result<()> {
    let Some(run) = still(tx, run_id, step)? else {
        return Ok(());
    };
    let (status, end) = match a.status {
        AssignmentStatus::Completed => (StepStatus::Completed, None),
        AssignmentStatus::Cancelled => (StepStatus::Cancelled, Some(PipelineRunStatus::Cancelled)),
        _ => (StepStatus::Failed, Some(PipelineRunStatus::Failed)),
    };
    let output = a.result_summary.clone().unwrap_or_default();
    pipelines::update_step(tx, run_id, step.idx, status, None, None, Some(&output))?;
    if let Some(end) = end {
        let why = a.error_message.as_deref().unwrap_or("no reason given");
        let reason = format!("step {:?} {}: {why}", step.step_id, a.status);
        pipelines::move_run(tx, run, end, Some(reason))?;
    }
    Ok(())
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
                let run = fresh_run(c, run_id)?;
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
                    let failed = exec
                        .store
                        .write(move |tx| {
                            let run = fresh_run(tx, run_id)?;
                            let pipeline_id = run.pipeline_id;
                            if !run.status.is_terminal() {
                                pipelines::move_run(tx, run, PipelineRunStatus::Failed, Some(reason))?;
                            }
                            Ok(pipeline_id)
                        })
                        .await;
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
            let run = self.store.read(move |c| fresh_run(c, run_id)).await?;
            match next_step(&run) {
                Next::Done => {
                    if run.status == PipelineRunStatus::Running {
                        self.store
                            .write(move |tx| {
                                pipelines::lock_run(tx, run_id)?;
                                let run = fresh_run(tx, run_id)?;
                                if run.status == PipelineRunStatus::Running {
                                    pipelines::move_run(tx, run, PipelineRunStatus::Completed, None)?;
                                }
                                Ok(())
                            })
                            .await?;
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
                    self.store.write(move |tx| start_step(tx, run_id, &step, task, link)).await?
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
                        self.store.write(move |tx| settle_step(tx, run_id, &step, &a)).await?;
                    } else if !await_terminal(&mut events, a.id).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Starts queued runs of a pipeline while it has free slots.
    pub async fn start_queued(self: &Arc<Self>, pipeline_id: i64) {
        let started = self
            .store
            .write(move |tx| {
                let Some(pipeline) = pipelines::pipeline_by_id(tx, pipeline_id)? else {
                    return Ok(Vec::new());
                };
                pipelines::lock_pipeline(tx, pipeline_id)?;
                let mut started = Vec::new();
                while pipelines::running_count(tx, pipeline_id)? < pipeline.max_concurrent_runs {
                    let Some(run) = pipelines::next_queued(tx, pipeline_id)? else {
                        break;
                    };
                    started.push(pipelines::move_run(tx, run, PipelineRunStatus::Running, None)?.id);
                }
                Ok(started)
            })
            .await;
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
        let (run, in_flight) = self
            .store
            .write(move |tx| {
                pipelines::lock_run(tx, run_id)?;
                let run = fresh_run(tx, run_id)?;
                if run.status == PipelineRunStatus::Cancelled {
                    return Ok((run, Vec::new()));
                }
                if run.status.is_terminal() {
                    return Err(DomainError::conflict(format!(
                        "pipeline run {} is already {}",
                        run.public_id(),
                        run.status
                    )));
                }
                let mut in_flight = Vec::new();
                for s in run.steps.iter().filter(|s| s.status == StepStatus::Running) {
                    pipelines::update_step(tx, run_id, s.idx, StepStatus::Cancelled, None, None, None)?;
                    in_flight.extend(s.assignment_id);
                }
                let run = pipelines::move_run(tx, run, PipelineRunStatus::Cancelled, Some(reason))?;
                Ok((run, in_flight))
            })
            .await?;
        for aid in in_flight {
            let row = self.store.read(move |c| assignments::by_id(c, aid)).await?;
            if let Some(row) = row.filter(|r| !r.status.is_terminal()) {
                super::cancel::cancel_assignment(&self.store, &self.runner, row.id, "pipeline run cancelled").await?;
            }
        }
        self.start_queued(run.pipeline_id).await;
        Ok(run)
    }
}
