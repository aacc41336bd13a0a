//! The reads behind /metrics. Each touches only maintained counters or an
//! index edge, so its cost does not grow with the tables it describes.
//! Labels are read as text whatever bytes the database holds (invalid
//! UTF-8 is replaced, never an error that would silence a family).

use super::counters::{ASSIGNMENTS, QUEUE, QUEUE_CREWS};
use super::sql::{Db, args};
use crate::domain::Result;
use crate::domain::status::AssignmentStatus;

/// Every (label, value) of one counter family, as stored.
pub fn family(db: &Db<'_>, family: &str) -> Result<Vec<(String, i64)>> {
    db.query(
        "SELECT label, CAST(SUM(value) AS BIGINT) FROM counters WHERE family = ?1 GROUP BY label ORDER BY label",
        args![family],
        |r| Ok((r.text_lossy(0)?, r.get(1)?)),
    )
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queue {
    pub depth: i64,
    pub crews: i64,
    pub depth_max: i64,
}

pub fn queue(db: &Db<'_>) -> Result<Queue> {
    let get = |family: &str, label: &str| -> Result<i64> {
        db.query_one(
            "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM counters WHERE family = ?1 AND label = ?2",
            args![family, label],
            |r| r.get(0),
        )
    };
    Ok(Queue {
        // A crew's queue is its queued assignments (deleting a crew cancels them).
        depth: get(ASSIGNMENTS, AssignmentStatus::Queued.as_str())?,
        crews: get(QUEUE, QUEUE_CREWS)?,
        // MAX over an indexed column reads one index edge.
        depth_max: db.query_one("SELECT COALESCE(MAX(queued), 0) FROM crew_counts", args![], |r| r.get(0))?,
    })
}

/// (label, calls, cost in nano-USD) per LLM series, in order of first use,
/// `other` last.
pub fn llm_series(db: &Db<'_>) -> Result<Vec<(String, i64, i64)>> {
    db.query(
        "SELECT label, calls, cost_nanos FROM llm_series ORDER BY label = 'other', position, label",
        args![],
        |r| Ok((r.text_lossy(0)?, r.get(1)?, r.get(2)?)),
    )
}
