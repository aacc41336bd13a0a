//! Pipelines, their runs, and each run's steps.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::journal::{self, NewEntry};
use super::page::{self, Page, PageRequest};
use super::query::Query;
use super::sql::{Db, Row, RowLock, args};
use super::tx::Tx;
use super::{agents, counters, refs};
use crate::domain::event::{Event, EventKind};
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::Severity;
use crate::domain::status::{PipelineRunStatus, StepStatus};
use crate::domain::types::{Pipeline, PipelineRun, PipelineRunStep, StepSpec};
use crate::domain::{DomainError, Result, time};

/// A step as stored: the spec plus the resolved crew and agent rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredStep {
    pub id: String,
    pub crew_id: i64,
    pub crew: String,
    pub agent_id: i64,
    pub agent: String,
    pub task: String,
}

#[derive(Debug, Clone)]
pub struct PipelineRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub max_concurrent_runs: i64,
    pub steps: Vec<StoredStep>,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
}

const PIPELINE_COLUMNS: &str = "id, slug, name, max_concurrent_runs, steps, created_at, deleted_at";

fn pipeline_from_row(r: &Row<'_>) -> Result<PipelineRow> {
    Ok(PipelineRow {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        max_concurrent_runs: r.get(3)?,
        steps: r.json(4)?,
        created_at: r.get(5)?,
        deleted_at: r.get(6)?,
    })
}

impl PipelineRow {
    pub fn to_api(&self) -> Pipeline {
        Pipeline {
            id: ids::format(Kind::Pipeline, self.id),
            slug: self.slug.clone(),
            name: self.name.clone(),
            max_concurrent_runs: self.max_concurrent_runs,
            steps: self
                .steps
                .iter()
                .map(|s| StepSpec {
                    id: s.id.clone(),
                    crew: s.crew.clone(),
                    agent: s.agent.clone(),
                    task: s.task.clone(),
                })
                .collect(),
            created_at: time::rfc3339(self.created_at),
            deleted_at: time::rfc3339_opt(self.deleted_at),
        }
    }
}

pub fn pipeline_by_id(db: &Db<'_>, id: i64) -> Result<Option<PipelineRow>> {
    db.query_opt(&format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE id = ?1"), args![id], pipeline_from_row)
}

/// A live pipeline by slug or id.
pub fn resolve(db: &Db<'_>, key: &str) -> Result<PipelineRow> {
    let found = match ids::parse(Kind::Pipeline, key) {
        Some(id) => pipeline_by_id(db, id)?.filter(|p| p.deleted_at.is_none()),
        None => db.query_opt(
            &format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE slug = ?1 AND deleted_at IS NULL"),
            args![key],
            pipeline_from_row,
        )?,
    };
    found.ok_or_else(|| DomainError::not_found("pipeline", key))
}

/// Creates a pipeline from steps as a caller wrote them: each names a live
/// crew and one of its live agents (unknown ones are the body's fault).
pub fn create(
    tx: &mut Tx<'_>,
    slug: String,
    name: String,
    max_concurrent_runs: i64,
    steps: Vec<StepSpec>,
) -> Result<PipelineRow> {
    let steps = steps
        .into_iter()
        .map(|s| {
            let crew = refs::crew(tx, &s.crew)?;
            let agent = agents::resolve_for_work(tx, &crew, &s.agent)?;
            Ok(StoredStep {
                id: s.id,
                crew_id: crew.id,
                crew: crew.slug,
                agent_id: agent.id,
                agent: agent.slug,
                task: s.task,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let taken: bool = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM pipelines WHERE slug = ?1 AND deleted_at IS NULL)",
        args![slug],
        |r| r.get(0),
    )?;
    if taken {
        return Err(DomainError::conflict(format!("a pipeline with slug {slug:?} already exists")));
    }
    let id = tx.insert(
        "INSERT INTO pipelines (slug, name, max_concurrent_runs, steps, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        "id",
        args![slug, name, max_concurrent_runs, serde_json::to_string(&steps)?, tx.now],
    )?;
    pipeline_by_id(tx, id)?.ok_or_else(|| DomainError::vanished("pipeline"))
}

/// Deletes a live pipeline (softly). Returns it, and its queued and
/// running runs for the caller to cancel (a step's process may be running).
pub fn delete(tx: &mut Tx<'_>, key: &str) -> Result<(PipelineRow, Vec<PipelineRunRow>)> {
    let id = resolve(tx, key)?.id;
    tx.execute("UPDATE pipelines SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL", args![id, tx.now])?;
    let unfinished = runs_in(tx, &[PipelineRunStatus::Queued, PipelineRunStatus::Running])?;
    let pipeline = pipeline_by_id(tx, id)?.ok_or_else(|| DomainError::vanished("pipeline"))?;
    Ok((pipeline, unfinished.into_iter().filter(|r| r.pipeline_id == id).collect()))
}

pub fn list(db: &Db<'_>, page: PageRequest) -> Result<Page<Pipeline>> {
    let mut q = Query::new(&format!("SELECT {PIPELINE_COLUMNS} FROM pipelines"));
    q.and_sql("deleted_at IS NULL");
    if let Some(after) = page.after {
        q.and("id > ", after);
    }
    let rows = q.fetch(db, "id", page.limit + 1, |r| pipeline_from_row(r).map(|p| (p.id, p.to_api())))?;
    Ok(page::build(rows, page.limit))
}

#[derive(Debug, Clone)]
pub struct StepRow {
    pub idx: i64,
    pub step_id: String,
    pub crew_id: i64,
    pub crew: String,
    pub agent_id: i64,
    pub agent: String,
    pub task: Option<String>,
    pub status: StepStatus,
    pub assignment_id: Option<i64>,
    pub output: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PipelineRunRow {
    pub id: i64,
    pub pipeline_id: i64,
    pub pipeline: String,
    pub status: PipelineRunStatus,
    pub inputs: serde_json::Map<String, serde_json::Value>,
    pub dry_run: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub reason: Option<String>,
    pub steps: Vec<StepRow>,
    /// The node that drives it.
    pub node: Option<String>,
    /// Its own trace's id (32 hex), and the `traceparent` of the request
    /// that started it.
    pub trace_id: Option<String>,
    pub trace_link: Option<String>,
}

const RUN_SELECT: &str = "SELECT r.id, r.pipeline_id, p.slug, r.status, r.inputs, r.dry_run, r.created_at,
        r.started_at, r.finished_at, r.reason, r.node, r.trace_id, r.trace_link
     FROM pipeline_runs r JOIN pipelines p ON p.id = r.pipeline_id";

fn run_from_row(r: &Row<'_>) -> Result<PipelineRunRow> {
    let status: String = r.get(3)?;
    let inputs: String = r.get(4)?;
    Ok(PipelineRunRow {
        id: r.get(0)?,
        pipeline_id: r.get(1)?,
        pipeline: r.get(2)?,
        status: PipelineRunStatus::parse(&status).unwrap_or(PipelineRunStatus::Interrupted),
        inputs: serde_json::from_str(&inputs).unwrap_or_default(),
        dry_run: r.get(5)?,
        created_at: r.get(6)?,
        started_at: r.get(7)?,
        finished_at: r.get(8)?,
        reason: r.get(9)?,
        steps: Vec::new(),
        node: r.get(10)?,
        trace_id: r.get(11)?,
        trace_link: r.get(12)?,
    })
}

fn load_steps(db: &Db<'_>, run: &mut PipelineRunRow) -> Result<()> {
    run.steps = db.query(
        "SELECT s.idx, s.step_id, s.crew_id, c.slug, s.agent_id, a.slug, s.task, s.status, s.assignment_id, s.output
         FROM pipeline_run_steps s JOIN crews c ON c.id = s.crew_id JOIN agents a ON a.id = s.agent_id
         WHERE s.pipeline_run_id = ?1 ORDER BY s.idx",
        args![run.id],
        |r| {
            let status: String = r.get(7)?;
            Ok(StepRow {
                idx: r.get(0)?,
                step_id: r.get(1)?,
                crew_id: r.get(2)?,
                crew: r.get(3)?,
                agent_id: r.get(4)?,
                agent: r.get(5)?,
                task: r.get(6)?,
                status: StepStatus::parse(&status).unwrap_or(StepStatus::Failed),
                assignment_id: r.get(8)?,
                output: r.get(9)?,
            })
        },
    )?;
    Ok(())
}

impl PipelineRunRow {
    pub fn public_id(&self) -> String {
        ids::format(Kind::PipelineRun, self.id)
    }

    pub fn to_api(&self) -> PipelineRun {
        PipelineRun {
            id: self.public_id(),
            pipeline: self.pipeline.clone(),
            status: self.status,
            inputs: serde_json::Value::Object(self.inputs.clone()),
            dry_run: self.dry_run,
            created_at: time::rfc3339(self.created_at),
            started_at: time::rfc3339_opt(self.started_at),
            finished_at: time::rfc3339_opt(self.finished_at),
            reason: self.reason.clone(),
            steps: self
                .steps
                .iter()
                .map(|s| PipelineRunStep {
                    id: s.step_id.clone(),
                    crew: s.crew.clone(),
                    agent: s.agent.clone(),
                    task: s.task.clone(),
                    status: s.status,
                    assignment_id: s.assignment_id.map(|a| ids::format(Kind::Assignment, a)),
                    output: s.output.clone(),
                })
                .collect(),
        }
    }

    /// Outputs of the steps that completed, by step id.
    pub fn outputs(&self) -> HashMap<String, String> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Completed)
            .map(|s| (s.step_id.clone(), s.output.clone().unwrap_or_default()))
            .collect()
    }

    fn publish(&self, tx: &mut Tx<'_>, severity: Severity) -> Result<()> {
        let status = self.status.as_str();
        let summary = match &self.reason {
            Some(r) => format!("pipeline {} run {status}: {r}", self.pipeline),
            None => format!("pipeline {} run {status}", self.pipeline),
        };
        let kind = EventKind::PipelineRun(self.status);
        journal::append(
            tx,
            NewEntry {
                severity,
                payload: serde_json::json!({ "pipeline_run_id": self.public_id(), "status": status }),
                ..NewEntry::of(kind, summary)
            },
        )?;
        tx.emit(Event::new(kind, None, &self.to_api()));
        Ok(())
    }
}

pub fn run_by_id(db: &Db<'_>, id: i64) -> Result<Option<PipelineRunRow>> {
    let run = db.query_opt(&format!("{RUN_SELECT} WHERE r.id = ?1"), args![id], run_from_row)?;
    match run {
        Some(mut run) => {
            load_steps(db, &mut run)?;
            Ok(Some(run))
        }
        None => Ok(None),
    }
}

/// Holds the run's row until the transaction ends: its driver's writes
/// (and a second driver's, were there one) take turns, each deciding
/// from the state the one before committed.
pub fn lock_run(db: &Db<'_>, id: i64) -> Result<()> {
    let lock = db.locking(RowLock::Update, "r");
    db.query_opt(&format!("SELECT r.id FROM pipeline_runs r WHERE r.id = ?1{lock}"), args![id], |r| r.get::<i64>(0))
        .map(drop)
}

/// Holds the pipeline's row until the transaction ends, so runs started
/// at once on several nodes count each other against its limit.
pub fn lock_pipeline(db: &Db<'_>, id: i64) -> Result<()> {
    let lock = db.locking(RowLock::Update, "p");
    db.query_opt(&format!("SELECT p.id FROM pipelines p WHERE p.id = ?1{lock}"), args![id], |r| r.get::<i64>(0))
        .map(drop)
}

/// Records the node that drives the run from now on.
pub fn set_driver(db: &Db<'_>, id: i64, node: &str) -> Result<()> {
    db.execute("UPDATE pipeline_runs SET node = ?2 WHERE id = ?1", args![id, node]).map(drop)
}

pub fn get_run(db: &Db<'_>, key: &str) -> Result<PipelineRunRow> {
    ids::parse(Kind::PipelineRun, key)
        .map(|id| run_by_id(db, id))
        .transpose()?
        .flatten()
        .ok_or_else(|| DomainError::not_found("pipeline run", key))
}

pub fn running_count(db: &Db<'_>, pipeline_id: i64) -> Result<i64> {
    db.query_one(
        "SELECT COUNT(*) FROM pipeline_runs WHERE pipeline_id = ?1 AND status = 'running'",
        args![pipeline_id],
        |r| r.get(0),
    )
}

/// Creates a run from its steps' tasks as rendered with its inputs (by the
/// caller, outside the writer, from `pipeline` as it read it: pipelines
/// never change once created, but it may have been deleted since). A dry
/// run keeps them and ends at once; a real run starts `running`, or
/// `queued` while the pipeline is at its limit, and renders each step again
/// when it starts.
pub fn create_run(
    tx: &mut Tx<'_>,
    pipeline: &PipelineRow,
    inputs: serde_json::Map<String, serde_json::Value>,
    dry_run: bool,
    rendered: Vec<String>,
    trace_link: Option<String>,
) -> Result<PipelineRunRow> {
    let live = pipeline_by_id(tx, pipeline.id)?.filter(|p| p.deleted_at.is_none());
    let pipeline = &live.ok_or_else(|| DomainError::not_found("pipeline", &pipeline.slug))?;
    if rendered.len() != pipeline.steps.len() {
        return Err(DomainError::internal("a pipeline run needs one rendered task per step"));
    }
    lock_pipeline(tx, pipeline.id)?;
    let status = if dry_run {
        PipelineRunStatus::DryRun
    } else if running_count(tx, pipeline.id)? < pipeline.max_concurrent_runs {
        PipelineRunStatus::Running
    } else {
        PipelineRunStatus::Queued
    };
    let started = (status == PipelineRunStatus::Running).then_some(tx.now);
    let finished = dry_run.then_some(tx.now);
    let id = tx.insert(
        "INSERT INTO pipeline_runs (pipeline_id, status, inputs, dry_run, created_at, started_at, finished_at,
             trace_id, trace_link)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        "id",
        args![
            pipeline.id,
            status.as_str(),
            serde_json::to_string(&inputs)?,
            dry_run,
            tx.now,
            started,
            finished,
            ids::new_trace_id(),
            trace_link.as_deref()
        ],
    )?;
    let step_status = if dry_run { StepStatus::Skipped } else { StepStatus::Pending };
    for (idx, (step, task)) in pipeline.steps.iter().zip(rendered).enumerate() {
        tx.execute(
            "INSERT INTO pipeline_run_steps (pipeline_run_id, idx, step_id, crew_id, agent_id, task, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![id, idx as i64, step.id, step.crew_id, step.agent_id, dry_run.then_some(task), step_status.as_str()],
        )?;
    }
    counters::pipeline_run_moved(tx, None, status)?;
    let run = run_by_id(tx, id)?.ok_or_else(|| DomainError::vanished("pipeline run"))?;
    run.publish(tx, Severity::Info)?;
    Ok(run)
}

/// Moves a pipeline run to `to` (with a reason for failures, cancels and
/// interruptions).
pub fn move_run(
    tx: &mut Tx<'_>,
    run: PipelineRunRow,
    to: PipelineRunStatus,
    reason: Option<String>,
) -> Result<PipelineRunRow> {
    run.status.check_transition(to)?;
    let started = if to == PipelineRunStatus::Running { Some(tx.now) } else { run.started_at };
    let finished = to.is_terminal().then_some(tx.now);
    let changed = tx.execute(
        "UPDATE pipeline_runs SET status = ?3, started_at = ?4, finished_at = ?5, reason = COALESCE(?6, reason)
         WHERE id = ?1 AND status = ?2",
        args![run.id, run.status.as_str(), to.as_str(), started, finished, reason],
    )?;
    if changed != 1 {
        return Err(DomainError::conflict(format!("pipeline run {} changed concurrently", run.public_id())));
    }
    counters::pipeline_run_moved(tx, Some(run.status), to)?;
    if to.is_terminal() {
        // Steps that never ran will not run now.
        tx.execute(
            "UPDATE pipeline_run_steps SET status = 'skipped' WHERE pipeline_run_id = ?1 AND status = 'pending'",
            args![run.id],
        )?;
    }
    let next = run_by_id(tx, run.id)?.ok_or_else(|| DomainError::vanished("pipeline run"))?;
    let severity = match to {
        PipelineRunStatus::Failed | PipelineRunStatus::Interrupted => Severity::Warning,
        _ => Severity::Info,
    };
    next.publish(tx, severity)?;
    Ok(next)
}

/// Records a step's progress.
pub fn update_step(
    tx: &Tx<'_>,
    run_id: i64,
    idx: i64,
    status: StepStatus,
    task: Option<&str>,
    assignment_id: Option<i64>,
    output: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE pipeline_run_steps
         SET status = ?3, task = COALESCE(?4, task), assignment_id = COALESCE(?5, assignment_id),
             output = COALESCE(?6, output)
         WHERE pipeline_run_id = ?1 AND idx = ?2",
        args![run_id, idx, status.as_str(), task, assignment_id, output],
    )?;
    Ok(())
}

/// The oldest queued run of a pipeline.
pub fn next_queued(db: &Db<'_>, pipeline_id: i64) -> Result<Option<PipelineRunRow>> {
    let id: Option<i64> = db.query_opt(
        "SELECT id FROM pipeline_runs WHERE pipeline_id = ?1 AND status = 'queued' ORDER BY id LIMIT 1",
        args![pipeline_id],
        |r| r.get(0),
    )?;
    id.map(|id| run_by_id(db, id)).transpose().map(Option::flatten)
}

/// Runs in one of `statuses`, oldest first.
pub fn runs_in(db: &Db<'_>, statuses: &[PipelineRunStatus]) -> Result<Vec<PipelineRunRow>> {
    let mut out = Vec::new();
    for status in statuses {
        let ids: Vec<i64> =
            db.query("SELECT id FROM pipeline_runs WHERE status = ?1 ORDER BY id", args![status.as_str()], |r| {
                r.get(0)
            })?;
        for id in ids {
            out.extend(run_by_id(db, id)?);
        }
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<PipelineRunStatus>,
    pub pipeline_id: Option<i64>,
}

pub fn list_runs(db: &Db<'_>, f: &RunFilter, page: PageRequest) -> Result<Page<PipelineRun>> {
    let mut q = Query::new(RUN_SELECT);
    if let Some(after) = page.after {
        q.and("r.id < ", after);
    }
    if let Some(s) = f.status {
        q.and("r.status = ", s.as_str().to_string());
    }
    if let Some(p) = f.pipeline_id {
        q.and("r.pipeline_id = ", p);
    }
    let mut rows = q.fetch(db, "r.id DESC", page.limit + 1, run_from_row)?;
    for run in &mut rows {
        load_steps(db, run)?;
    }
    Ok(page::build(rows.into_iter().map(|r| (r.id, r.to_api())).collect(), page.limit))
}
