//! The start-up check: recompute every maintained counter from the base
//! tables, log any drift, and repair it. A bug can then never silently
//! corrupt what operators alert on.

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
    Ok(db
        .query("SELECT family, label, value FROM counters", args![], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .into_iter()
        .collect())
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

fn pair(r: &Row<'_>) -> Result<(i64, i64)> {
    Ok((r.get(1)?, r.get(2)?))
}

/// The running totals of an LLM series, in column order.
const LLM_TOTALS: [&str; 6] =
    ["calls", "cost_nanos", "input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_tokens"];

fn totals(r: &Row<'_>) -> Result<[i64; 6]> {
    Ok([r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?])
}

/// Recounts everything; repairs and returns the drift. Runs in one
/// transaction of its own (`Store::exclusive`), so what it counts holds
/// still.
pub fn check_and_repair(tx: &Db<'_>) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();

    for ((family, label), stored, recounted) in differing(&stored_counters(tx)?, &expected_counters(tx)?) {
        drift.push(Drift { counter: format!("{family}/{label}"), stored, recounted });
        tx.execute(
            "INSERT INTO counters (family, label, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (family, label) DO UPDATE SET value = excluded.value",
            args![family, label, recounted],
        )?;
    }

    let stored = keyed(tx, "SELECT crew_id, queued, running FROM crew_counts", pair)?;
    let recounted = keyed(
        tx,
        "SELECT crew_id, SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END)
         FROM assignments
         WHERE status IN ('queued', 'running') GROUP BY crew_id",
        pair,
    )?;
    for (crew, s, r) in differing::<i64, _>(&stored, &recounted) {
        drift.push(Drift { counter: format!("crew_counts/{crew}/queued"), stored: s.0, recounted: r.0 });
        drift.push(Drift { counter: format!("crew_counts/{crew}/running"), stored: s.1, recounted: r.1 });
        tx.execute(
            "INSERT INTO crew_counts (crew_id, queued, running) VALUES (?1, ?2, ?3)
             ON CONFLICT (crew_id) DO UPDATE SET queued = excluded.queued, running = excluded.running",
            args![crew, r.0, r.1],
        )?;
    }

    let stored = keyed(tx, &format!("SELECT label, {} FROM llm_series", LLM_TOTALS.join(", ")), totals)?;
    let recounted = keyed(
        tx,
        "SELECT series, COUNT(*), CAST(SUM(cost_nanos) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT),
             CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT),
             CAST(SUM(cache_creation_tokens) AS BIGINT)
         FROM llm_calls GROUP BY series",
        totals,
    )?;
    for (label, s, r) in differing::<String, _>(&stored, &recounted) {
        for (i, column) in LLM_TOTALS.iter().enumerate() {
            drift.push(Drift { counter: format!("llm_series/{label}/{column}"), stored: s[i], recounted: r[i] });
        }
        tx.execute(
            "INSERT INTO llm_series (label, position, calls, cost_nanos, input_tokens, output_tokens,
                 cached_input_tokens, cache_creation_tokens)
             VALUES (?1, (SELECT COALESCE(MAX(position), 0) + 1 FROM llm_series), ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (label) DO UPDATE SET calls = excluded.calls, cost_nanos = excluded.cost_nanos,
                 input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
                 cached_input_tokens = excluded.cached_input_tokens,
                 cache_creation_tokens = excluded.cache_creation_tokens",
            args![label, r[0], r[1], r[2], r[3], r[4], r[5]],
        )?;
    }
    // Rows of several values may differ in some of them only.
    drift.retain(|d| d.stored != d.recounted);
    Ok(drift)
}
