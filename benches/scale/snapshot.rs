//! (a) The DB-derived /metrics snapshot (`metrics::snapshot::compute`) on
//! an empty store and on the big one, and side by side the naive snapshot:
//! the same figures counted from the base tables, as a scrape would without
//! maintained counters. Both must agree on every figure.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use serde::Serialize;

use crewship::internals::domain::provider;
use crewship::internals::metrics::snapshot::{DbSnapshot, compute};
use crewship::internals::store::{Location, Store};

use crate::Res;
use crate::stats::Timing;

const BLOCKS: usize = 5;
const PER_BLOCK: usize = 200;
const NAIVE_ROUNDS: usize = 5;

pub const NAIVE: &[(&str, &str)] = &[
    ("assignments by status", "SELECT status, COUNT(*) FROM assignments GROUP BY status"),
    ("pipeline runs by status", "SELECT status, COUNT(*) FROM pipeline_runs GROUP BY status"),
    (
        "run events from journal + journal_archive",
        "SELECT entry_type, COUNT(*) FROM (
             SELECT entry_type FROM journal WHERE entry_type LIKE 'run.%'
             UNION ALL SELECT entry_type FROM journal_archive WHERE entry_type LIKE 'run.%') AS j
         GROUP BY entry_type",
    ),
    (
        "LLM calls and cost by provider",
        "SELECT provider, COUNT(*), CAST(SUM(cost_nanos) AS BIGINT), MIN(id) FROM llm_calls
         GROUP BY provider ORDER BY MIN(id)",
    ),
    (
        "queue depth and crews with queued work",
        "SELECT COUNT(*), COUNT(DISTINCT crew_id) FROM assignments WHERE status = 'queued'",
    ),
    (
        "deepest crew queue",
        "SELECT COALESCE(MAX(n), 0) FROM
             (SELECT COUNT(*) AS n FROM assignments WHERE status = 'queued' GROUP BY crew_id) AS q",
    ),
];

#[derive(Debug, Clone, Serialize)]
pub struct NaiveQuery {
    pub name: String,
    pub sql: String,
    pub first_us: f64,
    pub timing: Timing,
}

#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub family: String,
    pub agree: bool,
    pub detail: String,
}

/// The big store's figures, as the maintained counters hold them.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub assignments: Vec<(String, i64)>,
    pub pipeline_runs: Vec<(String, i64)>,
    pub run_events: Vec<(String, i64)>,
    /// Depth, crews with queued work, deepest crew queue.
    pub queue: (i64, i64, i64),
    pub llm_series: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub figures: Figures,
    pub empty: Timing,
    pub big: Timing,
    pub naive: Vec<NaiveQuery>,
    pub naive_total: Timing,
    pub naive_first_total_us: f64,
    /// Median naive snapshot / median maintained snapshot, on the big store.
    pub ratio: f64,
    /// Median big / median empty (1.0 = scrape cost independent of size).
    pub big_over_empty: f64,
    pub agreement: Vec<Agreement>,
}

pub type Rows = Vec<Vec<Value>>;

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(n) => *n,
        Value::Real(f) => *f as i64,
        _ => 0,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Integer(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// The naive queries, on a plain read connection of the big store's file:
/// raw SQL, no store in between.
fn naive_round(path: &Path) -> Res<Vec<(Duration, Rows)>> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // One read transaction, like the maintained snapshot.
    let tx = conn.unchecked_transaction()?;
    let mut out = Vec::new();
    for (_, sql) in NAIVE {
        let t = Instant::now();
        let mut stmt = conn.prepare_cached(sql)?;
        let n = stmt.column_count();
        let rows: Rows =
            stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())?.collect::<rusqlite::Result<_>>()?;
        out.push((t.elapsed(), rows));
    }
    tx.finish()?;
    Ok(out)
}

fn compare(family: &str, maintained: BTreeMap<String, (i64, i64)>, naive: BTreeMap<String, (i64, i64)>) -> Agreement {
    let nonzero = |m: BTreeMap<String, (i64, i64)>| -> BTreeMap<String, (i64, i64)> {
        m.into_iter().filter(|(_, v)| *v != (0, 0)).collect()
    };
    let (m, n) = (nonzero(maintained), nonzero(naive));
    let agree = m == n;
    let detail = if agree {
        let total: i64 = m.values().map(|v| v.0).sum();
        format!("{} labels, {} in all", m.len(), crate::stats::thousands(total as f64))
    } else {
        format!("maintained {m:?} vs naive {n:?}")
    };
    Agreement { family: family.to_string(), agree, detail }
}

fn pairs(v: &[(String, i64)]) -> BTreeMap<String, (i64, i64)> {
    v.iter().map(|(l, n)| (l.clone(), (*n, 0))).collect()
}

pub fn agreement(snap: &DbSnapshot, naive: &[(Duration, Rows)]) -> Vec<Agreement> {
    let grouped = |i: usize| -> BTreeMap<String, (i64, i64)> {
        naive[i].1.iter().map(|r| (text(&r[0]), (int(&r[1]), 0))).collect()
    };
    let mut out = vec![
        compare("assignments by status", pairs(&snap.assignments.value), grouped(0)),
        compare("pipeline runs by status", pairs(&snap.pipeline_runs.value), grouped(1)),
    ];
    let events = naive[2]
        .1
        .iter()
        .map(|r| {
            let t = text(&r[0]);
            let event = match t.as_str() {
                "run.started" => "started".to_string(),
                other => other.trim_start_matches("run.").to_string(),
            };
            (event, (int(&r[1]), 0))
        })
        .collect();
    out.push(compare("run events", pairs(&snap.run_events.value), events));
    // The naive LLM figures need the series cap applied by hand: the first
    // MAX_OWN_SERIES providers (by first call) own a series, the rest fold
    // into `other`.
    let mut llm: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut own = 0;
    for r in &naive[3].1 {
        let p = text(&r[0]);
        let label = if p != provider::OTHER && own < provider::MAX_OWN_SERIES {
            own += 1;
            p
        } else {
            provider::OTHER.to_string()
        };
        let e = llm.entry(label).or_default();
        e.0 += int(&r[1]);
        e.1 += int(&r[2]);
    }
    let maintained = snap.llm.value.iter().map(|s| (s.label.clone(), (s.calls, s.cost_nanos))).collect();
    out.push(compare("LLM calls and cost by series", maintained, llm));
    let q = snap.queue.value;
    let naive_q = (int(&naive[4].1[0][0]), int(&naive[4].1[0][1]), int(&naive[5].1[0][0]));
    let agree = (q.depth, q.crews, q.depth_max) == naive_q;
    out.push(Agreement {
        family: "queue depth, crews, deepest".into(),
        agree,
        detail: format!("maintained {:?} naive {naive_q:?}", (q.depth, q.crews, q.depth_max)),
    });
    out
}

/// What `rounds` runs of the naive queries took, query by query and in
/// all, and the last run's rows.
pub struct Naive {
    pub queries: Vec<NaiveQuery>,
    pub total: Timing,
    pub first_total_us: f64,
    pub last: Vec<(Duration, Rows)>,
}

pub async fn naive_rounds<F, Fut>(on: &str, rounds: usize, mut round: F) -> Res<Naive>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<Vec<(Duration, Rows)>>>,
{
    let mut per_query: Vec<Vec<Duration>> = vec![Vec::new(); NAIVE.len()];
    let (mut totals, mut last) = (Vec::new(), Vec::new());
    for n in 0..rounds {
        let t = Instant::now();
        let r = round().await?;
        totals.push(t.elapsed());
        for (i, (d, _)) in r.iter().enumerate() {
            per_query[i].push(*d);
        }
        println!("  naive snapshot{on} round {}: {:.2} s", n + 1, t.elapsed().as_secs_f64());
        last = r;
    }
    let queries = NAIVE
        .iter()
        .zip(&per_query)
        .map(|((name, sql), d)| NaiveQuery {
            name: name.to_string(),
            sql: sql.split_whitespace().collect::<Vec<_>>().join(" "),
            first_us: d[0].as_secs_f64() * 1e6,
            timing: Timing::of(d),
        })
        .collect();
    Ok(Naive { queries, total: Timing::of(&totals), first_total_us: totals[0].as_secs_f64() * 1e6, last })
}

pub async fn time_compute(store: &Store, n: usize, into: &mut Vec<Duration>) {
    for _ in 0..n {
        let t = Instant::now();
        let snap = compute(store, None).await;
        into.push(t.elapsed());
        std::hint::black_box(snap);
    }
}

pub async fn run(big_path: &Path, data: &Path) -> Res<Report> {
    let empty_path = data.join("empty.db");
    crate::datagen::remove_db(&empty_path);
    let empty =
        Store::open(&Location::Sqlite(empty_path.clone()), tokio::sync::broadcast::channel(16).0, Default::default())?;
    let big = Store::open(
        &Location::Sqlite(big_path.to_path_buf()),
        tokio::sync::broadcast::channel(16).0,
        Default::default(),
    )?;
    let snap = compute(&big, None).await;
    if let Some((name, _, _)) = snap.health().iter().find(|h| !h.1) {
        return Err(format!("the {name} collector failed on the big store").into());
    }
    // Warm both, then alternate blocks so drift in machine load hits both.
    let (mut e, mut b) = (Vec::new(), Vec::new());
    time_compute(&empty, 50, &mut Vec::new()).await;
    time_compute(&big, 50, &mut Vec::new()).await;
    for _ in 0..BLOCKS {
        time_compute(&empty, PER_BLOCK, &mut e).await;
        time_compute(&big, PER_BLOCK, &mut b).await;
    }
    let (empty_t, big_t) = (Timing::of(&e), Timing::of(&b));
    println!("  snapshot compute: empty median {:.1} µs, big median {:.1} µs", empty_t.median_us, big_t.median_us);

    let naive = naive_rounds("", NAIVE_ROUNDS, || async { naive_round(big_path) }).await?;
    let agreement = agreement(&snap, &naive.last);
    drop((empty, big));
    crate::datagen::remove_db(&empty_path);
    let q = snap.queue.value;
    let figures = Figures {
        assignments: snap.assignments.value.clone(),
        pipeline_runs: snap.pipeline_runs.value.clone(),
        run_events: snap.run_events.value.clone(),
        queue: (q.depth, q.crews, q.depth_max),
        llm_series: snap.llm.value.len(),
    };
    Ok(Report {
        figures,
        empty: empty_t,
        big: big_t,
        naive_first_total_us: naive.first_total_us,
        ratio: naive.total.median_us / big_t.median_us,
        big_over_empty: big_t.median_us / empty_t.median_us,
        naive_total: naive.total,
        naive: naive.queries,
        agreement,
    })
}
