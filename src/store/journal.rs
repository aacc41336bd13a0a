//! The journal: live entries and their archive, read as one history.

use super::locks;
use super::page::{self, Page, PageRequest};
use super::query::Query;
use super::sql::{Db, Row, args};
use super::tx::Tx;
use crate::domain::event::{Event, EventKind};
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::Severity;
use crate::domain::types::JournalEntry;
use crate::domain::{Result, time};

/// An entity an entry is about: its row id and its slug.
#[derive(Debug, Clone)]
pub struct Named {
    pub id: i64,
    pub slug: String,
}

#[derive(Debug, Clone)]
pub struct NewEntry {
    pub entry_type: String,
    pub severity: Severity,
    pub crew: Option<Named>,
    pub agent: Option<Named>,
    pub trace_id: Option<String>,
    pub summary: String,
    pub payload: serde_json::Value,
}

impl NewEntry {
    pub fn info(entry_type: impl Into<String>, summary: impl Into<String>) -> NewEntry {
        NewEntry {
            entry_type: entry_type.into(),
            severity: Severity::Info,
            crew: None,
            agent: None,
            trace_id: None,
            summary: summary.into(),
            payload: serde_json::Value::Object(Default::default()),
        }
    }

    /// An info entry about a change subscribers hear of as `kind`: the two
    /// share one name.
    pub fn of(kind: EventKind, summary: impl Into<String>) -> NewEntry {
        NewEntry::info(kind.to_string(), summary)
    }
}

pub fn append(tx: &mut Tx<'_>, e: NewEntry) -> Result<JournalEntry> {
    let payload = serde_json::to_string(&e.payload)?;
    let id = tx.insert(
        "INSERT INTO journal (ts, entry_type, severity, crew_id, agent_id, trace_id, summary, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        "id",
        args![
            tx.now,
            e.entry_type,
            e.severity.as_str(),
            e.crew.as_ref().map(|c| c.id),
            e.agent.as_ref().map(|a| a.id),
            e.trace_id,
            e.summary,
            payload
        ],
    )?;
    let crew = e.crew.map(|c| c.slug);
    let entry = JournalEntry {
        id: ids::format(Kind::Journal, id),
        ts: time::rfc3339(tx.now),
        entry_type: e.entry_type,
        severity: e.severity,
        crew: crew.clone(),
        agent: e.agent.map(|a| a.slug),
        trace_id: e.trace_id,
        summary: e.summary,
        payload: e.payload,
        archived: false,
    };
    tx.emit(Event::new(EventKind::JournalEntry, crew, &entry));
    Ok(entry)
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// An exact type, or a prefix ending in `*` (`run.*`).
    pub entry_type: Option<String>,
    pub trace_id: Option<String>,
    pub crew_id: Option<i64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn from_row(r: &Row<'_>) -> Result<(i64, JournalEntry)> {
    let id: i64 = r.get(0)?;
    let payload: String = r.get(8)?;
    Ok((
        id,
        JournalEntry {
            id: ids::format(Kind::Journal, id),
            ts: time::rfc3339(r.get(1)?),
            entry_type: r.get(2)?,
            severity: r.named(3)?,
            crew: r.get(4)?,
            agent: r.get(5)?,
            trace_id: r.get(6)?,
            summary: r.get(7)?,
            payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
            archived: r.get(9)?,
        },
    ))
}

/// One table's newest matching rows.
fn query_table(db: &Db<'_>, table: &str, f: &Filter, page: PageRequest) -> Result<Vec<(i64, JournalEntry)>> {
    let archived = table == "journal_archive";
    let mut q = Query::new(&format!(
        "SELECT j.id, j.ts, j.entry_type, j.severity, c.slug, a.slug, j.trace_id, j.summary, j.payload, {archived}
         FROM {table} j LEFT JOIN crews c ON c.id = j.crew_id LEFT JOIN agents a ON a.id = j.agent_id"
    ));
    if let Some(after) = page.after {
        q.and("j.id < ", after);
    }
    match f.entry_type.as_deref() {
        Some(t) if t.ends_with('*') => {
            let prefix = &t[..t.len() - 1];
            q.and("j.entry_type >= ", prefix.to_string());
            q.and("j.entry_type < ", format!("{prefix}\u{10FFFF}"));
        }
        Some(t) => {
            q.and("j.entry_type = ", t.to_string());
        }
        None => {}
    }
    if let Some(t) = &f.trace_id {
        q.and("j.trace_id = ", t.clone());
    }
    if let Some(c) = f.crew_id {
        q.and("j.crew_id = ", c);
    }
    if let Some(s) = f.since {
        q.and("j.ts >= ", s);
    }
    if let Some(u) = f.until {
        q.and("j.ts <= ", u);
    }
    q.fetch(db, "j.id DESC", page.limit + 1, from_row)
}

/// Newest first, live and archived entries together.
pub fn list(db: &Db<'_>, f: &Filter, page: PageRequest) -> Result<Page<JournalEntry>> {
    let mut rows = query_table(db, "journal", f, page)?;
    rows.extend(query_table(db, "journal_archive", f, page)?);
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(page::build(rows, page.limit))
}

/// Moves up to `batch` live entries older than `cutoff` to the archive;
/// returns how many moved (none while another node sweeps). The newest
/// entry stays live whatever its age: SQLite gives a new row the highest
/// live id plus one, so an empty journal would hand out ids the archive
/// already holds.
pub fn archive_batch(tx: &mut Tx<'_>, cutoff: i64, batch: usize) -> Result<usize> {
    if !tx.try_lock_for_transaction(locks::JOURNAL_SWEEP)? {
        return Ok(0);
    }
    let moved: Vec<i64> = tx.query(
        "INSERT INTO journal_archive
             (id, ts, entry_type, severity, crew_id, agent_id, trace_id, summary, payload, archived_at)
         SELECT id, ts, entry_type, severity, crew_id, agent_id, trace_id, summary, payload, ?3
         FROM journal WHERE ts < ?1 AND id < (SELECT MAX(id) FROM journal) ORDER BY ts LIMIT ?2
         RETURNING id",
        args![cutoff, batch as i64, tx.now],
        |r| r.get(0),
    )?;
    for id in &moved {
        tx.execute("DELETE FROM journal WHERE id = ?1", args![id])?;
    }
    Ok(moved.len())
}

/// Deletes up to `batch` archived entries older than `cutoff` (none while
/// another node sweeps).
pub fn prune_batch(tx: &mut Tx<'_>, cutoff: i64, batch: usize) -> Result<usize> {
    if !tx.try_lock_for_transaction(locks::JOURNAL_SWEEP)? {
        return Ok(0);
    }
    tx.execute(
        "DELETE FROM journal_archive WHERE id IN
             (SELECT id FROM journal_archive WHERE ts < ?1 ORDER BY ts LIMIT ?2)",
        args![cutoff, batch as i64],
    )
}
