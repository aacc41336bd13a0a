//! The start-up check: recompute every maintained counter from the base
//! tables, log any drift, and repair it. A bug can then never silently
//! corrupt what operators alert on.
//!
//! Drift is found on one consistent snapshot and repaired by adding the
//! difference, not by overwriting: writes committed since the snapshot
//! moved the base tables and the counters together, so the difference is
//! still exactly what is missing. That holds while other writers go on
//! (a fleet sharing one database).

use std::collections::BTreeMap;

use super::counters::{ASSIGNMENTS, PIPELINE_RUNS, QUEUE, QUEUE_CREWS, RUN_EVENTS};
use super::sql::{Column, Db, Row, args};
use crate::domain::Result;
use crate::domain::status::RunStatus;

/// One counter whose stored value differed from the recount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub counter: String,
    pub stored: i64,
    pub recounted: i64,
    target: Target,
}

/// Where a drifted value is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Counter { family: String, label: String },
    CrewQueued { crew: i64 },
    Llm { label: String, column: usize },
}

type Counts = BTreeMap<(String, String), i64>;

fn grouped(db: &Db<'_>, sql: &str) -> Result<Vec<(String, i64)>> {
    db.query(sql, args![], |r| Ok((r.get(0)?, r.get(1)?)))
}

fn expected_counters(db: &Db<'_>) -> Result<Counts> {
    let mut out = Counts::new();
    for (status, n) in grouped(db, "SELECT status, COUNT(*) FROM assignments GROUP BY status")? {
        out.insert((ASSIGNMENTS.into(), status), n);
    }
    for (status, n) in grouped(db, "SELECT status, COUNT(*) FROM pipeline_runs GROUP BY status")? {
        out.insert((PIPELINE_RUNS.into(), status), n);
    }
    // Every run has had its `started`; terminal runs one terminal event.
    for (status, n) in grouped(db, "SELECT status, COUNT(*) FROM runs GROUP BY status")? {
        *out.entry((RUN_EVENTS.into(), RunStatus::Running.event().into())).or_default() += n;
        if let Some(s) = RunStatus::parse(&status).filter(|s| s.is_terminal()) {
            *out.entry((RUN_EVENTS.into(), s.event().into())).or_default() += n;
        }
    }
    let crews: i64 =
        db.query_one("SELECT COUNT(DISTINCT crew_id) FROM assignments WHERE status = 'queued'", args![], |r| r.get(0))?;
    out.insert((QUEUE.into(), QUEUE_CREWS.into()), crews);
    Ok(out)
}

fn stored_counters(db: &Db<'_>) -> Result<Counts> {
    let rows = db.query(
        "SELECT family, label, CAST(SUM(value) AS BIGINT) FROM counters GROUP BY family, label",
        args![],
        |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)),
    )?;
    Ok(rows.into_iter().collect())
}

/// Keys whose stored and recounted values differ (a missing row counts as
/// the default value).
fn differing<K: Ord + Clone, V: Default + PartialEq + Copy>(
    stored: &BTreeMap<K, V>,
    recounted: &BTreeMap<K, V>,
) -> Vec<(K, V, V)> {
    let keys: std::collections::BTreeSet<&K> = stored.keys().chain(recounted.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (s, r) = (stored.get(k).copied().unwrap_or_default(), recounted.get(k).copied().unwrap_or_default());
            (s != r).then(|| (k.clone(), s, r))
        })
        .collect()
}

fn keyed<K: Column + Ord, V>(db: &Db<'_>, sql: &str, value: impl Fn(&Row<'_>) -> Result<V>) -> Result<BTreeMap<K, V>> {
    Ok(db.query(sql, args![], |r| Ok((r.get(0)?, value(r)?)))?.into_iter().collect())
}

fn one(r: &Row<'_>) -> Result<i64> {
    r.get(1)
}

/// The running totals of an LLM series, in column order.
const LLM_TOTALS: [&str; 6] =
    ["calls", "cost_nanos", "input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_tokens"];

fn totals(r: &Row<'_>) -> Result<[i64; 6]> {
    Ok([r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?])
}

/// What differs from a recount, read from one consistent snapshot.
pub fn find_drift(db: &Db<'_>) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();
    for ((family, label), stored, recounted) in differing(&stored_counters(db)?, &expected_counters(db)?) {
        let counter = format!("{family}/{label}");
        drift.push(Drift { counter, stored, recounted, target: Target::Counter { family, label } });
    }

    let stored = keyed(db, "SELECT crew_id, queued FROM crew_counts", one)?;
    let recounted =
        keyed(db, "SELECT crew_id, COUNT(*) FROM assignments WHERE status = 'queued' GROUP BY crew_id", one)?;
    for (crew, stored, recounted) in differing::<i64, _>(&stored, &recounted) {
        let counter = format!("crew_counts/{crew}/queued");
        drift.push(Drift { counter, stored, recounted, target: Target::CrewQueued { crew } });
    }

    let stored = keyed(db, &format!("SELECT label, {} FROM llm_series", LLM_TOTALS.join(", ")), totals)?;
    let recounted = keyed(
        db,
        "SELECT series, COUNT(*), CAST(SUM(cost_nanos) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT),
             CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT),
             CAST(SUM(cache_creation_tokens) AS BIGINT)
         FROM llm_calls GROUP BY series",
        totals,
    )?;
    for (label, s, r) in differing::<String, _>(&stored, &recounted) {
        for (column, name) in LLM_TOTALS.iter().enumerate() {
            let (counter, target) =
                (format!("llm_series/{label}/{name}"), Target::Llm { label: label.clone(), column });
            drift.push(Drift { counter, stored: s[column], recounted: r[column], target });
        }
    }
    // Rows of several values may differ in some of them only.
    drift.retain(|d| d.stored != d.recounted);
    Ok(drift)
}

/// Adds what each drifted value is missing.
pub fn repair(db: &Db<'_>, drift: &[Drift]) -> Result<()> {
    for d in drift {
        let delta = d.recounted - d.stored;
        match &d.target {
            Target::Counter { family, label } => {
                db.execute(
                    "INSERT INTO counters (family, label, stripe, value) VALUES (?1, ?2, 0, ?3)
                     ON CONFLICT (family, label, stripe) DO UPDATE SET value = counters.value + excluded.value",
                    args![family, label, delta],
                )?;
            }
            Target::CrewQueued { crew } => {
                db.execute(
                    "INSERT INTO crew_counts (crew_id, queued) VALUES (?1, ?2)
                     ON CONFLICT (crew_id) DO UPDATE SET queued = crew_counts.queued + excluded.queued",
                    args![crew, delta],
                )?;
            }
            Target::Llm { label, column } => {
                let mut deltas = [0i64; 6];
                deltas[*column] = delta;
                let [d0, d1, d2, d3, d4, d5] = deltas;
                db.execute(
                    "INSERT INTO llm_series (label, position, calls, cost_nanos, input_tokens, output_tokens,
                         cached_input_tokens, cache_creation_tokens)
                     VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM llm_series), ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (label) DO UPDATE SET calls = llm_series.calls + excluded.calls,
                         cost_nanos = llm_series.cost_nanos + excluded.cost_nanos,
                         input_tokens = llm_series.input_tokens + excluded.input_tokens,
                         output_tokens = llm_series.output_tokens + excluded.output_tokens,
                         cached_input_tokens = llm_series.cached_input_tokens + excluded.cached_input_tokens,
                         cache_creation_tokens = llm_series.cache_creation_tokens + excluded.cache_creation_tokens",
                    args![label, d0, d1, d2, d3, d4, d5],
                )?;
            }
        }
    }
    Ok(())
}

/// Finds and repairs drift in one transaction (where nothing else writes
/// meanwhile); returns what it repaired.
pub fn check_and_repair(db: &Db<'_>) -> Result<Vec<Drift>> {
    let drift = find_drift(db)?;
    repair(db, &drift)?;
    Ok(drift)
}
