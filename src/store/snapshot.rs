//! The reads behind /metrics. Each touches only maintained counters or an
//! index edge, so its cost does not grow with the tables it describes.

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::counters::{ASSIGNMENTS, QUEUE, QUEUE_CREWS};
use crate::domain::Result;
use crate::domain::status::AssignmentStatus;

/// A label as text, whatever bytes the database holds (invalid UTF-8 is
/// replaced, never an error that would silence a family).
fn label(r: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    Ok(match r.get_ref(0)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    })
}

/// Every (label, value) of one counter family, as stored.
pub fn family(conn: &Connection, family: &str) -> Result<Vec<(String, i64)>> {
    Ok(conn
        .prepare_cached("SELECT label, value FROM counters WHERE family = ?1 ORDER BY label")?
        .query_map([family], |r| Ok((label(r)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queue {
    pub depth: i64,
    pub crews: i64,
    pub depth_max: i64,
}

pub fn queue(conn: &Connection) -> Result<Queue> {
    let get = |family: &str, label: &str| -> Result<i64> {
        Ok(conn
            .prepare_cached("SELECT COALESCE((SELECT value FROM counters WHERE family = ?1 AND label = ?2), 0)")?
            .query_row([family, label], |r| r.get(0))?)
    };
    Ok(Queue {
        // A crew's queue is its queued assignments (deleting a crew cancels them).
        depth: get(ASSIGNMENTS, AssignmentStatus::Queued.as_str())?,
        crews: get(QUEUE, QUEUE_CREWS)?,
        // MAX over an indexed column reads one index edge.
        depth_max: conn
            .prepare_cached("SELECT COALESCE(MAX(queued), 0) FROM crew_counts")?
            .query_row([], |r| r.get(0))?,
    })
}

/// (label, calls, cost in nano-USD) per LLM series, in order of first use,
/// `other` last.
pub fn llm_series(conn: &Connection) -> Result<Vec<(String, i64, i64)>> {
    Ok(conn
        .prepare_cached("SELECT label, calls, cost_nanos FROM llm_series ORDER BY label = 'other', position, label")?
        .query_map([], |r| Ok((label(r)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?)
}
