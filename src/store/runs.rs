//! Runs: one row per execution, named by its trace id. Each run journals
//! exactly one `run.started` and at most one terminal event.

use super::counters;
use super::journal::{self, Named, NewEntry};
use super::nodes::NodeRef;
use super::page::{self, Page, PageRequest};
use super::query::Query;
use super::sql::{Db, Row, args};
use super::tx::Tx;
use crate::domain::event::{Event, EventKind};
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::Severity;
use crate::domain::run_token;
use crate::domain::status::RunStatus;
use crate::domain::types::Run;
use crate::domain::{DomainError, Result, time};

#[derive(Debug, Clone)]
pub struct RunRow {
    pub pk: i64,
    pub id: String,
    pub crew: Option<Named>,
    pub agent: Option<Named>,
    pub assignment_id: Option<i64>,
    pub trigger: Option<String>,
    pub managed: bool,
    pub status: RunStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    pub pid: Option<i64>,
    /// The cgroup its processes were put in (see `runtime::contain`).
    pub cgroup: Option<String>,
    /// The node executing it, and under which of its epochs.
    pub node: Option<NodeRef>,
}

const SELECT: &str = "SELECT r.pk, r.id, r.crew_id, c.slug, r.agent_id, a.slug, r.assignment_id, r.trigger,
        r.managed, r.status, r.started_at, r.finished_at, r.error, r.exit_code, r.pid, r.cgroup, r.node,
        r.node_epoch
     FROM runs r LEFT JOIN crews c ON c.id = r.crew_id LEFT JOIN agents a ON a.id = r.agent_id";

fn named(id: Option<i64>, slug: Option<String>) -> Option<Named> {
    Some(Named { id: id?, slug: slug? })
}

fn from_row(r: &Row<'_>) -> Result<RunRow> {
    let status: String = r.get(9)?;
    Ok(RunRow {
        pk: r.get(0)?,
        id: r.get(1)?,
        crew: named(r.get(2)?, r.get(3)?),
        agent: named(r.get(4)?, r.get(5)?),
        assignment_id: r.get(6)?,
        trigger: r.get(7)?,
        managed: r.get(8)?,
        // Unknown stored text reads as failed rather than breaking reads.
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        error: r.get(12)?,
        exit_code: r.get(13)?,
        pid: r.get(14)?,
        cgroup: r.get(15)?,
        node: match (r.get::<Option<String>>(16)?, r.get::<Option<i64>>(17)?) {
            (Some(id), Some(epoch)) => Some(NodeRef { id, epoch }),
            _ => None,
        },
    })
}

impl RunRow {
    pub fn to_api(&self) -> Run {
        Run {
            id: self.id.clone(),
            status: self.status,
            crew: self.crew.as_ref().map(|c| c.slug.clone()),
            agent: self.agent.as_ref().map(|a| a.slug.clone()),
            assignment_id: self.assignment_id.map(|id| ids::format(Kind::Assignment, id)),
            trigger: self.trigger.clone(),
            started_at: time::rfc3339(self.started_at),
            finished_at: time::rfc3339_opt(self.finished_at),
            error: self.error.clone(),
            exit_code: self.exit_code,
            node: self.node.as_ref().map(|n| n.id.clone()),
        }
    }

    fn journal(&self, tx: &mut Tx<'_>, severity: Severity, summary: String) -> Result<()> {
        let mut payload = serde_json::Map::new();
        payload.insert("status".into(), self.status.as_str().into());
        if let Some(a) = self.assignment_id {
            payload.insert("assignment_id".into(), ids::format(Kind::Assignment, a).into());
        }
        if let Some(e) = &self.error {
            payload.insert("error".into(), e.clone().into());
        }
        if let Some(c) = self.exit_code {
            payload.insert("exit_code".into(), c.into());
        }
        let kind = EventKind::Run(self.status);
        journal::append(
            tx,
            NewEntry {
                severity,
                crew: self.crew.clone(),
                agent: self.agent.clone(),
                trace_id: Some(self.id.clone()),
                payload: payload.into(),
                ..NewEntry::of(kind, summary)
            },
        )?;
        tx.emit(Event::new(kind, self.crew.as_ref().map(|c| c.slug.clone()), &self.to_api()));
        Ok(())
    }
}

pub fn by_id(db: &Db<'_>, id: &str) -> Result<Option<RunRow>> {
    db.query_opt(&format!("{SELECT} WHERE r.id = ?1"), args![id], from_row)
}

/// Which runs a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub crew_id: Option<i64>,
    pub status: Option<RunStatus>,
}

/// Newest first.
pub fn list(db: &Db<'_>, f: &Filter, page: PageRequest) -> Result<Page<Run>> {
    let mut q = Query::new(SELECT);
    if let Some(after) = page.after {
        q.and("r.pk < ", after);
    }
    if let Some(c) = f.crew_id {
        q.and("r.crew_id = ", c);
    }
    if let Some(s) = f.status {
        q.and("r.status = ", s.as_str().to_string());
    }
    let rows = q.fetch(db, "r.pk DESC", page.limit + 1, |r| from_row(r).map(|run| (run.pk, run.to_api())))?;
    Ok(page::build(rows, page.limit))
}

pub fn get(db: &Db<'_>, id: &str) -> Result<RunRow> {
    by_id(db, id)?.ok_or_else(|| DomainError::not_found("run", id))
}

#[derive(Debug, Clone, Default)]
pub struct NewRun {
    pub crew: Option<Named>,
    pub agent: Option<Named>,
    pub assignment_id: Option<i64>,
    pub trigger: Option<String>,
    /// Started by crewshipd (its status is crewshipd's to report).
    pub managed: bool,
    /// The node that executes it.
    pub node: Option<NodeRef>,
}

/// Starts a run reported by its owner: one row, one `run.started`.
pub fn start(tx: &mut Tx<'_>, new: NewRun) -> Result<RunRow> {
    insert(tx, new, ids::new_trace_id(), None)
}

/// Starts a run its owner reports, in the crew and of the agent it names
/// (an agent alone implies its crew).
pub fn start_reported(
    tx: &mut Tx<'_>,
    crew: Option<&str>,
    agent: Option<&str>,
    trigger: Option<String>,
) -> Result<RunRow> {
    let (crew, agent) = super::refs::scope(tx, crew, agent)?;
    start(tx, NewRun { crew, agent, trigger, ..NewRun::default() })
}

/// Starts a run crewshipd executes, with the token its process calls back
/// with (only its digest is stored).
pub fn start_managed(tx: &mut Tx<'_>, new: NewRun) -> Result<(RunRow, run_token::Secret)> {
    let id = ids::new_trace_id();
    let issued = run_token::issue(&id);
    let run = insert(tx, NewRun { managed: true, ..new }, id, Some(issued.hash))?;
    Ok((run, issued.token))
}

fn insert(tx: &mut Tx<'_>, new: NewRun, id: String, token_hash: Option<String>) -> Result<RunRow> {
    let pk = tx.insert(
        "INSERT INTO runs (id, crew_id, agent_id, assignment_id, trigger, managed, status, started_at, token_hash,
             node, node_epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9, ?10)",
        "pk",
        args![
            id,
            new.crew.as_ref().map(|c| c.id),
            new.agent.as_ref().map(|a| a.id),
            new.assignment_id,
            new.trigger,
            new.managed,
            tx.now,
            token_hash,
            new.node.as_ref().map(|n| n.id.clone()),
            new.node.as_ref().map(|n| n.epoch)
        ],
    )?;
    let run = RunRow {
        pk,
        id,
        crew: new.crew,
        agent: new.agent,
        assignment_id: new.assignment_id,
        trigger: new.trigger,
        managed: new.managed,
        status: RunStatus::Running,
        started_at: tx.now,
        finished_at: None,
        error: None,
        exit_code: None,
        pid: None,
        cgroup: None,
        node: new.node,
    };
    counters::run_event(tx, RunStatus::Running.event())?;
    let summary = match &run.agent {
        Some(a) => format!("run started for agent {}", a.slug),
        None => "run started".to_string(),
    };
    run.journal(tx, Severity::Info, summary)?;
    Ok(run)
}

/// Moves a running run to its terminal status: one terminal event.
pub fn finish(
    tx: &mut Tx<'_>,
    run: RunRow,
    status: RunStatus,
    error: Option<String>,
    exit_code: Option<i64>,
) -> Result<RunRow> {
    run.status.check_transition(status)?;
    let changed = tx.execute(
        "UPDATE runs SET status = ?2, finished_at = ?3, error = ?4, exit_code = ?5
         WHERE pk = ?1 AND status = 'running'",
        args![run.pk, status.as_str(), tx.now, error, exit_code],
    )?;
    if changed != 1 {
        return Err(DomainError::conflict(format!("run {} is no longer running", run.id)));
    }
    let run = RunRow { status, finished_at: Some(tx.now), error, exit_code, ..run };
    counters::run_event(tx, status.event())?;
    let severity = if status == RunStatus::Completed { Severity::Info } else { Severity::Warning };
    let summary = match &run.error {
        Some(e) => format!("run {}: {e}", status.as_str()),
        None => format!("run {}", status.as_str()),
    };
    run.journal(tx, severity, summary)?;
    Ok(run)
}

/// A terminal report from a run's owner. Idempotent: once terminal, any
/// report returns the first outcome and writes nothing.
pub fn report(tx: &mut Tx<'_>, id: &str, status: RunStatus, error: Option<String>) -> Result<RunRow> {
    let run = get(tx, id)?;
    if run.status.is_terminal() {
        return Ok(run);
    }
    if run.managed {
        return Err(DomainError::conflict(format!("run {id} is executed by crewshipd; cancel its assignment instead")));
    }
    finish(tx, run, status, error, None)
}

/// Records where the processes of a run crewshipd executes are: their
/// process group and, if any, their cgroup.
pub fn set_process(tx: &Tx<'_>, pk: i64, pid: u32, cgroup: Option<&str>) -> Result<()> {
    tx.execute("UPDATE runs SET pid = ?2, cgroup = ?3 WHERE pk = ?1", args![pk, i64::from(pid), cgroup])?;
    Ok(())
}

/// The run a run token names, with the digest of its secret.
pub fn with_token_hash(db: &Db<'_>, id: &str) -> Result<Option<(RunRow, Option<String>)>> {
    let Some(run) = by_id(db, id)? else { return Ok(None) };
    let hash = db.query_one("SELECT token_hash FROM runs WHERE pk = ?1", args![run.pk], |r| r.get(0))?;
    Ok(Some((run, hash)))
}

pub fn save_output(tx: &Tx<'_>, pk: i64, output: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO run_outputs (run_pk, output) VALUES (?1, ?2)
         ON CONFLICT (run_pk) DO UPDATE SET output = excluded.output",
        args![pk, output],
    )?;
    Ok(())
}

pub fn output(db: &Db<'_>, pk: i64) -> Result<Option<String>> {
    db.query_opt("SELECT output FROM run_outputs WHERE run_pk = ?1", args![pk], |r| r.get(0))
}

/// Runs crewshipd started that are still marked running, on any node.
pub fn running_managed(db: &Db<'_>) -> Result<Vec<RunRow>> {
    db.query(&format!("{SELECT} WHERE r.status = 'running' AND r.managed = ?1"), args![true], from_row)
}
