//! Pipeline runs as their drivers and callers move them: a step started or
//! settled, a run completed, failed or cancelled, queued runs started. Each
//! move decides from the run as it stands in the transaction, so a driver
//! can stop or restart at any point, and a second driver (a node that lost
//! its lease and has not noticed yet) changes nothing.

use super::assignments::{self, AssignmentRow};
use super::pipelines::{self, PipelineRunRow, StepRow};
use super::sql::Db;
use super::tx::Tx;
use super::{agents, crews};
use crate::domain::ids::{self, Kind};
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, StepStatus};
use crate::domain::{DomainError, Result};

pub fn get(db: &Db<'_>, id: i64) -> Result<PipelineRunRow> {
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
/// driver may have moved it on.
fn still(tx: &Tx<'_>, run_id: i64, step: &StepRow) -> Result<Option<PipelineRunRow>> {
    pipelines::lock_run(tx, run_id)?;
    let run = get(tx, run_id)?;
    let unchanged = run.steps.iter().any(|s| s.idx == step.idx && s.status == step.status);
    Ok((run.status == PipelineRunStatus::Running && unchanged).then_some(run))
}

/// Creates the step's assignment from its task (rendered by the caller,
/// outside the writer), or fails the run if the step cannot run. A step
/// starts once, however many drivers try.
pub fn start_step(
    tx: &mut Tx<'_>,
    run_id: i64,
    step: &StepRow,
    task: Result<String>,
    link: Option<String>,
) -> Result<()> {
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
pub fn settle_step(tx: &mut Tx<'_>, run_id: i64, step: &StepRow, a: &AssignmentRow) -> Result<()> {
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

/// Completes a run whose steps all completed, unless it ended meanwhile.
pub fn complete(tx: &mut Tx<'_>, run_id: i64) -> Result<()> {
    pipelines::lock_run(tx, run_id)?;
    let run = get(tx, run_id)?;
    if run.status == PipelineRunStatus::Running {
        pipelines::move_run(tx, run, PipelineRunStatus::Completed, None)?;
    }
    Ok(())
}

/// Fails a run its driver could not drive, unless it ended meanwhile;
/// returns its pipeline's id.
pub fn fail(tx: &mut Tx<'_>, run_id: i64, reason: String) -> Result<i64> {
    let run = get(tx, run_id)?;
    let pipeline_id = run.pipeline_id;
    if !run.status.is_terminal() {
        pipelines::move_run(tx, run, PipelineRunStatus::Failed, Some(reason))?;
    }
    Ok(pipeline_id)
}

/// Starts queued runs of a pipeline while it has free slots; returns
/// their ids, for the caller to drive.
pub fn start_queued(tx: &mut Tx<'_>, pipeline_id: i64) -> Result<Vec<i64>> {
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
}

/// Cancels a queued or running run and its running step (a cancelled run
/// stays as it is). Returns the run and the assignments of the steps that
/// were in flight, for the caller to cancel (their processes may run).
pub fn cancel(tx: &mut Tx<'_>, run_id: i64, reason: String) -> Result<(PipelineRunRow, Vec<i64>)> {
    pipelines::lock_run(tx, run_id)?;
    let run = get(tx, run_id)?;
    if run.status == PipelineRunStatus::Cancelled {
        return Ok((run, Vec::new()));
    }
    if run.status.is_terminal() {
        return Err(DomainError::conflict(format!("pipeline run {} is already {}", run.public_id(), run.status)));
    }
    let mut in_flight = Vec::new();
    for s in run.steps.iter().filter(|s| s.status == StepStatus::Running) {
        pipelines::update_step(tx, run_id, s.idx, StepStatus::Cancelled, None, None, None)?;
        in_flight.extend(s.assignment_id);
    }
    let run = pipelines::move_run(tx, run, PipelineRunStatus::Cancelled, Some(reason))?;
    Ok((run, in_flight))
}
