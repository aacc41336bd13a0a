//! The reads behind /metrics. Each touches only maintained counters or an
//! index edge, so its cost does not grow with the tables it describes.
//! Labels are read as text whatever bytes the database holds (invalid
//! UTF-8 is replaced, never an error that would silence a family).

use super::counters::{ASSIGNMENTS, QUEUE, QUEUE_CREWS};
use super::sql::{Db, args};
use crate::domain::pricing::Tokens;
use crate::domain::status::AssignmentStatus;
use crate::domain::{Result, time};

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
    /// How long the oldest queued assignment has waited, now (0: none).
    pub oldest_age_ms: i64,
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
        // MIN over an index of queued assignments: one index edge.
        oldest_age_ms: db
            .query_one("SELECT MIN(queued_at) FROM assignments WHERE status = 'queued'", args![], |r| {
                r.get::<Option<i64>>(0)
            })?
            .map_or(0, |at| (time::now_ms() - at).max(0)),
    })
}

/// The running totals of one LLM series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmSeries {
    pub label: String,
    pub calls: i64,
    pub cost_nanos: i64,
    pub tokens: Tokens,
}

/// Every LLM series, in order of first use, `other` last.
pub fn llm_series(db: &Db<'_>) -> Result<Vec<LlmSeries>> {
    db.query(
        "SELECT label, calls, cost_nanos, input_tokens, output_tokens, cached_input_tokens, cache_creation_tokens
         FROM llm_series ORDER BY label = 'other', position, label",
        args![],
        |r| {
            Ok(LlmSeries {
                label: r.text_lossy(0)?,
                calls: r.get(1)?,
                cost_nanos: r.get(2)?,
                tokens: Tokens {
                    input: r.get(3)?,
                    output: r.get(4)?,
                    cached_input: r.get(5)?,
                    cache_creation: r.get(6)?,
                },
            })
        },
    )
}
