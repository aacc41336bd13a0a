//! Assignments: the per-crew work queue. Every status change goes through
//! `move_to`, which checks the state machine, updates the counters and
//! journals the change in the caller's transaction.

use super::agents::AgentRow;
use super::counters;
use super::crews::CrewRow;
use super::journal::{self, Named, NewEntry};
use super::nodes::{self, NodeRef};
use super::page::{self, Page, PageRequest};
use super::query::Query;
use super::refs;
use super::runs::{self, NewRun, RunRow};
use super::sql::{Db, Row, RowLock, args};
use super::tx::Tx;
use crate::domain::event::{Event, EventKind};
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::Severity;
use crate::domain::status::{AssignmentStatus, RunStatus};
use crate::domain::types::Assignment;
use crate::domain::{DomainError, Result, time};

#[derive(Debug, Clone)]
pub struct AssignmentRow {
    pub id: i64,
    pub crew: Named,
    pub agent: Named,
    pub assigned_by: Option<String>,
    pub task: String,
    pub status: AssignmentStatus,
    pub created_at: i64,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result_summary: Option<String>,
    pub error_message: Option<String>,
    pub run_id: Option<String>,
    pub attempts: i64,
    pub pipeline_run_id: Option<i64>,
    /// The node executing it (while running) or that last did.
    pub node: Option<String>,
    /// The `traceparent` of whatever created it (a caller's, or its
    /// pipeline step's): its runs' traces link to it.
    pub trace_link: Option<String>,
}

const SELECT: &str = "SELECT s.id, s.crew_id, c.slug, s.agent_id, a.slug, b.slug, s.task, s.status,
        s.created_at, s.queued_at, s.started_at, s.finished_at, s.result_summary, s.error_message,
        s.run_id, s.attempts, s.pipeline_run_id, s.node, s.trace_link
     FROM assignments s
     JOIN crews c ON c.id = s.crew_id
     JOIN agents a ON a.id = s.agent_id
     LEFT JOIN agents b ON b.id = s.assigned_by";

fn from_row(r: &Row<'_>) -> Result<AssignmentRow> {
    let status: String = r.get(7)?;
    let status = AssignmentStatus::parse(&status)
        .ok_or_else(|| DomainError::internal(format!("an assignment with status {status:?}")))?;
    Ok(AssignmentRow {
        id: r.get(0)?,
        crew: Named { id: r.get(1)?, slug: r.get(2)? },
        agent: Named { id: r.get(3)?, slug: r.get(4)? },
        assigned_by: r.get(5)?,
        task: r.get(6)?,
        status,
        created_at: r.get(8)?,
        queued_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        result_summary: r.get(12)?,
        error_message: r.get(13)?,
        run_id: r.get(14)?,
        attempts: r.get(15)?,
        pipeline_run_id: r.get(16)?,
        node: r.get(17)?,
        trace_link: r.get(18)?,
    })
}

impl AssignmentRow {
    pub fn public_id(&self) -> String {
        ids::format(Kind::Assignment, self.id)
    }

    pub fn to_api(&self) -> Assignment {
        Assignment {
            id: self.public_id(),
            crew: self.crew.slug.clone(),
            crew_id: ids::format(Kind::Crew, self.crew.id),
            agent: self.agent.slug.clone(),
            agent_id: ids::format(Kind::Agent, self.agent.id),
            assigned_by: self.assigned_by.clone(),
            task: self.task.clone(),
            status: self.status,
            created_at: time::rfc3339(self.created_at),
            queued_at: time::rfc3339_opt(self.queued_at),
            started_at: time::rfc3339_opt(self.started_at),
            finished_at: time::rfc3339_opt(self.finished_at),
            result_summary: self.result_summary.clone(),
            error_message: self.error_message.clone(),
            run_id: self.run_id.clone(),
            attempts: self.attempts,
            pipeline_run_id: self.pipeline_run_id.map(|id| ids::format(Kind::PipelineRun, id)),
            node: self.node.clone(),
        }
    }
}

pub fn by_id(db: &Db<'_>, id: i64) -> Result<Option<AssignmentRow>> {
    db.query_opt(&format!("{SELECT} WHERE s.id = ?1"), args![id], from_row)
}

pub fn get(db: &Db<'_>, key: &str) -> Result<AssignmentRow> {
    ids::parse(Kind::Assignment, key)
        .map(|id| by_id(db, id))
        .transpose()?
        .flatten()
        .ok_or_else(|| DomainError::not_found("assignment", key))
}

fn publish(tx: &mut Tx<'_>, row: &AssignmentRow, summary: String, severity: Severity) -> Result<()> {
    let kind = EventKind::Assignment { id: row.id, status: row.status };
    journal::append(
        tx,
        NewEntry {
            severity,
            crew: Some(row.crew.clone()),
            agent: Some(row.agent.clone()),
            trace_id: row.run_id.clone(),
            payload: serde_json::json!({ "assignment_id": row.public_id(), "status": row.status.as_str() }),
            ..NewEntry::of(kind, summary)
        },
    )?;
    tx.emit(Event::new(kind, Some(row.crew.slug.clone()), &row.to_api()));
    Ok(())
}

pub fn create(
    tx: &mut Tx<'_>,
    crew: &CrewRow,
    agent: &AgentRow,
    assigned_by: Option<&AgentRow>,
    task: &str,
    pipeline_run_id: Option<i64>,
    trace_link: Option<String>,
) -> Result<AssignmentRow> {
    let id = tx.insert(
        "INSERT INTO assignments (crew_id, agent_id, assigned_by, task, status, created_at, pipeline_run_id, trace_link)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)",
        "id",
        args![crew.id, agent.id, assigned_by.map(|a| a.id), task, tx.now, pipeline_run_id, trace_link.as_deref()],
    )?;
    counters::assignment_moved(tx, crew.id, None, AssignmentStatus::Pending)?;
    let row = AssignmentRow {
        id,
        crew: Named { id: crew.id, slug: crew.slug.clone() },
        agent: Named { id: agent.id, slug: agent.slug.clone() },
        assigned_by: assigned_by.map(|a| a.slug.clone()),
        task: task.to_string(),
        status: AssignmentStatus::Pending,
        created_at: tx.now,
        queued_at: None,
        started_at: None,
        finished_at: None,
        result_summary: None,
        error_message: None,
        run_id: None,
        attempts: 0,
        pipeline_run_id,
        node: None,
        trace_link,
    };
    publish(tx, &row, format!("assignment created for agent {}", agent.slug), Severity::Info)?;
    Ok(row)
}

/// Work a caller asks for, naming the crew and agents by id or slug.
#[derive(Debug, Clone)]
pub struct Submission {
    pub crew: String,
    pub agent: String,
    /// The agent (of the same crew) that hands it out.
    pub assigned_by: Option<String>,
    pub task: String,
    /// The caller's `traceparent`: the runs' traces link to it.
    pub trace_link: Option<String>,
}

/// Creates the assignment a caller asks for; unknown names are the body's
/// fault (422).
pub fn submit(tx: &mut Tx<'_>, s: Submission) -> Result<AssignmentRow> {
    let crew = refs::crew(tx, &s.crew)?;
    let agent = super::agents::resolve_for_work(tx, &crew, &s.agent)?;
    let by = s.assigned_by.map(|k| super::agents::resolve_for_work(tx, &crew, &k)).transpose()?;
    create(tx, &crew, &agent, by.as_ref(), &s.task, None, s.trace_link)
}

/// The fields a transition may set alongside the status.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub result_summary: Option<String>,
    pub error_message: Option<String>,
    pub run_id: Option<String>,
    /// The node that claims it (with `Running`).
    pub node: Option<String>,
}

/// Moves an assignment to `to`, guarded on its current status so a stale
/// row can never overwrite a newer state.
pub fn move_to(tx: &mut Tx<'_>, row: AssignmentRow, to: AssignmentStatus, changes: Changes) -> Result<AssignmentRow> {
    let from = row.status;
    from.check_transition(to)?;
    let now = tx.now;
    let mut next = row;
    next.status = to;
    match to {
        AssignmentStatus::Queued => {
            // A requeue after a restart keeps the original queue position.
            next.queued_at = next.queued_at.or(Some(now));
            next.started_at = None;
            next.node = None;
        }
        AssignmentStatus::Running => {
            next.started_at = Some(now);
            next.attempts += 1;
            next.node = changes.node;
        }
        _ => next.finished_at = Some(now),
    }
    if changes.result_summary.is_some() {
        next.result_summary = changes.result_summary;
    }
    if changes.error_message.is_some() {
        next.error_message = changes.error_message;
    }
    if changes.run_id.is_some() {
        next.run_id = changes.run_id;
    }
    let updated = tx.execute(
        "UPDATE assignments SET status = ?3, queued_at = ?4, started_at = ?5, finished_at = ?6,
             result_summary = ?7, error_message = ?8, run_id = ?9, attempts = ?10, node = ?11
         WHERE id = ?1 AND status = ?2",
        args![
            next.id,
            from.as_str(),
            to.as_str(),
            next.queued_at,
            next.started_at,
            next.finished_at,
            next.result_summary,
            next.error_message,
            next.run_id,
            next.attempts,
            next.node
        ],
    )?;
    if updated != 1 {
        return Err(DomainError::conflict(format!("assignment {} changed concurrently", next.public_id())));
    }
    counters::assignment_moved(tx, next.crew.id, Some(from), to)?;
    let (summary, severity) = match (&next.error_message, to) {
        (Some(e), AssignmentStatus::Failed | AssignmentStatus::Cancelled) => {
            (format!("assignment {to}: {e}"), Severity::Warning)
        }
        _ => (format!("assignment {to}"), Severity::Info),
    };
    publish(tx, &next, summary, severity)?;
    Ok(next)
}

/// Accepts pending assignments of live crews into their queues, oldest
/// first; returns how many moved.
fn queue_pending(tx: &mut Tx<'_>, limit: i64) -> Result<usize> {
    // Another node queueing the same rows keeps them; these are left out.
    let lock = tx.locking(RowLock::SkipLocked, "s");
    let pending = tx.query(
        &format!("{SELECT} WHERE s.status = 'pending' AND c.deleted_at IS NULL ORDER BY s.id LIMIT ?1{lock}"),
        args![limit],
        from_row,
    )?;
    let n = pending.len();
    for row in pending {
        move_to(tx, row, AssignmentStatus::Queued, Changes::default())?;
    }
    Ok(n)
}

/// Crews that have queued work and a free slot.
fn crews_ready(db: &Db<'_>) -> Result<Vec<i64>> {
    db.query(
        "SELECT c.id FROM crew_counts n JOIN crews c ON c.id = n.crew_id
         WHERE n.queued > 0 AND c.deleted_at IS NULL
             AND (SELECT COUNT(*) FROM assignments r WHERE r.crew_id = c.id AND r.status = 'running')
                 < c.max_concurrent_agents
         ORDER BY c.id",
        args![],
        |r| r.get(0),
    )
}

/// What the runner needs to execute a claimed assignment.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The crew as it was claimed from (how its agents run).
    pub crew: CrewRow,
    pub assignment: AssignmentRow,
    pub agent: AgentRow,
    pub run: RunRow,
    /// What the run's process calls back with (`CREWSHIP_RUN_TOKEN`).
    pub run_token: crate::domain::run_token::Secret,
}

/// Takes a crew's queue for this transaction's claims; false while another
/// node's transaction holds it (it is claiming or queueing for the crew):
/// that crew is then worth another look once it has committed.
fn hold_queue(tx: &Tx<'_>, crew: &CrewRow) -> Result<bool> {
    counters::hold_crew(tx, crew.id)
}

/// Atomically takes the head of a crew's queue (held: `hold_queue`) for
/// `node` if the crew is under its budget fleet-wide: the assignment turns
/// running and its run starts.
fn claim_next(tx: &mut Tx<'_>, crew: &CrewRow, node: &NodeRef) -> Result<Option<Claimed>> {
    if !crew.is_live() || counters::crew_running(tx, crew.id)? >= crew.max_concurrent_agents {
        return Ok(None);
    }
    let head = tx.query_opt(
        &format!("{SELECT} WHERE s.crew_id = ?1 AND s.status = 'queued' ORDER BY s.queued_at, s.id LIMIT 1"),
        args![crew.id],
        from_row,
    )?;
    let Some(head) = head else { return Ok(None) };
    let agent = super::agents::by_id(tx, head.agent.id)?.ok_or_else(|| DomainError::vanished("agent"))?;
    let (run, run_token) = runs::start_managed(
        tx,
        NewRun {
            crew: Some(head.crew.clone()),
            agent: Some(head.agent.clone()),
            assignment_id: Some(head.id),
            trigger: Some("assignment".into()),
            managed: true,
            node: Some(node.clone()),
        },
    )?;
    let changes = Changes { run_id: Some(run.id.clone()), node: Some(node.id.clone()), ..Changes::default() };
    let assignment = move_to(tx, head, AssignmentStatus::Running, changes)?;
    Ok(Some(Claimed { crew: crew.clone(), assignment, agent, run, run_token }))
}

/// What one dispatch did.
#[derive(Debug)]
pub struct Dispatched {
    pub claimed: Vec<Claimed>,
    /// More pending or claimable work may remain.
    pub more: bool,
    /// Another node held a ready crew's queue.
    pub held: bool,
}

/// Queues up to `queue_batch` pending assignments and claims up to
/// `claim_batch` for `me` as the crews' budgets allow, while `me` holds
/// its lease.
pub fn dispatch(tx: &mut Tx<'_>, me: &NodeRef, queue_batch: i64, claim_batch: usize) -> Result<Dispatched> {
    let mut done = Dispatched { claimed: Vec::new(), more: false, held: false };
    if !nodes::owns(tx, me)? {
        return Ok(done);
    }
    let queued = queue_pending(tx, queue_batch)?;
    'crews: for crew_id in crews_ready(tx)? {
        let Some(crew) = super::crews::by_id(tx, crew_id)? else {
            continue;
        };
        if !hold_queue(tx, &crew)? {
            done.held = true;
            continue;
        }
        while let Some(c) = claim_next(tx, &crew, me)? {
            done.claimed.push(c);
            if done.claimed.len() >= claim_batch {
                break 'crews;
            }
        }
    }
    done.more = queued as i64 == queue_batch || done.claimed.len() >= claim_batch;
    Ok(done)
}

/// Puts a running assignment whose run was interrupted (daemon stop or
/// crash) back in its queue at its original position: at-least-once. After
/// `max_attempts` runs it fails instead, with the reason.
pub fn requeue_or_fail(tx: &mut Tx<'_>, row: AssignmentRow, reason: &str, max_attempts: i64) -> Result<AssignmentRow> {
    if row.attempts >= max_attempts {
        let error = format!("gave up after {} attempts; the last run was interrupted ({reason})", row.attempts);
        let changes = Changes { error_message: Some(error), ..Changes::default() };
        return move_to(tx, row, AssignmentStatus::Failed, changes);
    }
    move_to(tx, row, AssignmentStatus::Queued, Changes::default())
}

/// Where a cancel left an assignment.
#[derive(Debug, Clone)]
pub enum Cancelling {
    /// Cancelled, now or before.
    Done(Box<AssignmentRow>),
    /// Running: its process is to be stopped first (`settle_cancelled`
    /// when none is).
    Running,
    /// Claimed or ended by another transaction meanwhile: look again.
    Changed,
}

/// Cancels an assignment: waiting → cancelled; cancelled → no-op;
/// completed or failed → conflict; a running one is left to the caller.
pub fn cancel(tx: &mut Tx<'_>, id: i64, reason: &str) -> Result<Cancelling> {
    let row = by_id(tx, id)?.ok_or_else(|| DomainError::not_found("assignment", ids::format(Kind::Assignment, id)))?;
    match row.status {
        AssignmentStatus::Cancelled => Ok(Cancelling::Done(Box::new(row))),
        AssignmentStatus::Completed | AssignmentStatus::Failed => {
            Err(DomainError::conflict(format!("assignment {} is already {}", row.public_id(), row.status)))
        }
        AssignmentStatus::Running => Ok(Cancelling::Running),
        AssignmentStatus::Pending | AssignmentStatus::Queued => {
            let changes = Changes { error_message: Some(reason.to_string()), ..Changes::default() };
            match move_to(tx, row, AssignmentStatus::Cancelled, changes) {
                Ok(row) => Ok(Cancelling::Done(Box::new(row))),
                Err(DomainError::Conflict(_)) => Ok(Cancelling::Changed),
                Err(e) => Err(e),
            }
        }
    }
}

/// Cancels a running assignment whose process is not executing here (it
/// ended meanwhile, or is gone): its run ends cancelled too. Nothing
/// happens if it is no longer running.
pub fn settle_cancelled(tx: &mut Tx<'_>, id: i64, reason: &str) -> Result<()> {
    let Some(row) = by_id(tx, id)?.filter(|r| r.status == AssignmentStatus::Running) else {
        return Ok(());
    };
    if let Some(run) = row.run_id.as_deref().map(|r| runs::get(tx, r)).transpose()?
        && run.status == RunStatus::Running
    {
        runs::finish(tx, run, RunStatus::Cancelled, Some(reason.to_string()), None)?;
    }
    let changes = Changes { error_message: Some(reason.to_string()), ..Changes::default() };
    move_to(tx, row, AssignmentStatus::Cancelled, changes).map(drop)
}

/// How a claimed assignment's run ended, as its runner saw it.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// What it wrote.
    pub output: String,
    /// What its assignment reports as its result.
    pub summary: Option<String>,
    /// The daemon stopped it (`server_shutdown`): the assignment goes back
    /// to its queue, or fails after `max_attempts`.
    pub requeue: bool,
}

/// Records the end of a run and its assignment, while the node executing
/// it still owns it (its lease, its epoch); returns the ended run.
pub fn run_ended(tx: &mut Tx<'_>, run: RunRow, assignment_id: i64, end: &RunEnd, max_attempts: i64) -> Result<RunRow> {
    if let Some(node) = &run.node
        && !nodes::owns(tx, node)?
    {
        return Err(DomainError::conflict(format!(
            "node {} no longer owns run {} (its lease expired, or it registered again)",
            node.id, run.id
        )));
    }
    let run = runs::finish(tx, run, end.status, end.error.clone(), end.exit_code)?;
    runs::save_output(tx, run.pk, &end.output)?;
    let row = by_id(tx, assignment_id)?.ok_or_else(|| DomainError::internal("assignment vanished"))?;
    if end.requeue {
        return requeue_or_fail(tx, row, "server_shutdown", max_attempts).map(|_| run);
    }
    let to = match end.status {
        RunStatus::Completed => AssignmentStatus::Completed,
        RunStatus::Cancelled => AssignmentStatus::Cancelled,
        _ => AssignmentStatus::Failed,
    };
    let changes =
        Changes { result_summary: end.summary.clone(), error_message: end.error.clone(), ..Changes::default() };
    move_to(tx, row, to, changes).map(|_| run)
}

/// Whose waiting work to cancel.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Crew(i64),
    Agent(i64),
    PipelineRun(i64),
}

/// Cancels the pending and queued work of a deleted crew or agent, or of
/// an ended pipeline run.
pub fn cancel_waiting(tx: &mut Tx<'_>, owner: Owner, reason: &str) -> Result<usize> {
    let (column, id) = match owner {
        Owner::Crew(id) => ("s.crew_id", id),
        Owner::Agent(id) => ("s.agent_id", id),
        Owner::PipelineRun(id) => ("s.pipeline_run_id", id),
    };
    let waiting = tx.query(
        &format!("{SELECT} WHERE {column} = ?1 AND s.status IN ('pending', 'queued') ORDER BY s.id"),
        args![id],
        from_row,
    )?;
    let n = waiting.len();
    for row in waiting {
        let changes = Changes { error_message: Some(reason.to_string()), ..Changes::default() };
        move_to(tx, row, AssignmentStatus::Cancelled, changes)?;
    }
    Ok(n)
}

/// Assignments running, on any node.
pub fn running(db: &Db<'_>) -> Result<Vec<AssignmentRow>> {
    db.query(&format!("{SELECT} WHERE s.status = 'running' ORDER BY s.id"), args![], from_row)
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub crew_id: Option<i64>,
    pub status: Option<AssignmentStatus>,
}

/// Newest first.
pub fn list(db: &Db<'_>, f: &Filter, page: PageRequest) -> Result<Page<Assignment>> {
    let mut q = Query::new(SELECT);
    if let Some(after) = page.after {
        q.and("s.id < ", after);
    }
    if let Some(c) = f.crew_id {
        q.and("s.crew_id = ", c);
    }
    if let Some(s) = f.status {
        q.and("s.status = ", s.as_str().to_string());
    }
    let rows = q.fetch(db, "s.id DESC", page.limit + 1, |r| from_row(r).map(|a| (a.id, a.to_api())))?;
    Ok(page::build(rows, page.limit))
}
