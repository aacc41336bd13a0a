//! The DB-derived block of /metrics: computed at most once per TTL, shared
//! by concurrent scrapers (single flight), computed by a task of its own so
//! a scraper that hangs up cancels nothing. Each collector fails alone and
//! keeps its last good values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use crate::domain::Result;
use crate::store::snapshot::{self, LlmSeries, Queue};
use crate::store::{Db, Store, counters, migrations, nodes};

/// One collector's latest good value and its health.
#[derive(Debug, Clone, Default)]
pub struct Slot<T> {
    pub value: T,
    pub up: bool,
    pub errors: u64,
}

impl<T: Clone + Default> Slot<T> {
    fn next(name: &str, prev: Option<&Slot<T>>, result: Result<T>) -> Slot<T> {
        let errors = prev.map_or(0, |p| p.errors);
        match result {
            Ok(value) => Slot { value, up: true, errors },
            Err(e) => {
                tracing::warn!(collector = name, error = %e, "metrics collector failed; serving its last good values");
                Slot { value: prev.map(|p| p.value.clone()).unwrap_or_default(), up: false, errors: errors + 1 }
            }
        }
    }
}

pub type Labeled = Vec<(String, i64)>;

#[derive(Debug, Clone)]
pub struct DbSnapshot {
    pub taken_at: Instant,
    pub assignments: Slot<Labeled>,
    pub queue: Slot<Queue>,
    pub pipeline_runs: Slot<Labeled>,
    pub run_events: Slot<Labeled>,
    /// In order of first use.
    pub llm: Slot<Vec<LlmSeries>>,
    pub migration_version: Slot<i64>,
    /// (live, expired) nodes of the fleet.
    pub nodes: Slot<(i64, i64)>,
}

impl DbSnapshot {
    /// (collector name, up, errors) for every collector.
    pub fn health(&self) -> [(&'static str, bool, u64); 7] {
        [
            ("assignments", self.assignments.up, self.assignments.errors),
            ("queue", self.queue.up, self.queue.errors),
            ("pipeline_runs", self.pipeline_runs.up, self.pipeline_runs.errors),
            ("run_events", self.run_events.up, self.run_events.errors),
            ("llm", self.llm.up, self.llm.errors),
            ("migrations", self.migration_version.up, self.migration_version.errors),
            ("fleet", self.nodes.up, self.nodes.errors),
        ]
    }
}

type Results = (
    Result<Labeled>,
    Result<Queue>,
    Result<Labeled>,
    Result<Labeled>,
    Result<Vec<LlmSeries>>,
    Result<i64>,
    Result<(i64, i64)>,
);

/// Every collector's read, in one transaction; `isolate` confines each
/// one's failure (which costs PostgreSQL two round trips more apiece).
fn read_all(db: &Db<'_>, isolate: bool) -> Results {
    fn one<T>(db: &Db<'_>, isolate: bool, f: impl FnOnce(&Db<'_>) -> Result<T>) -> Result<T> {
        if isolate { db.isolated(f) } else { f(db) }
    }
    (
        one(db, isolate, |db| snapshot::family(db, counters::ASSIGNMENTS)),
        one(db, isolate, snapshot::queue),
        one(db, isolate, |db| snapshot::family(db, counters::PIPELINE_RUNS)),
        one(db, isolate, |db| snapshot::family(db, counters::RUN_EVENTS)),
        one(db, isolate, snapshot::llm_series),
        one(db, isolate, migrations::current),
        one(db, isolate, nodes::counts),
    )
}

fn any_failed(r: &Results) -> bool {
    r.0.is_err() || r.1.is_err() || r.2.is_err() || r.3.is_err() || r.4.is_err() || r.5.is_err() || r.6.is_err()
}

/// Computes a snapshot; a failed collector keeps its value from `prev`.
pub async fn compute(store: &Store, prev: Option<&DbSnapshot>) -> DbSnapshot {
    let taken_at = Instant::now();
    // One read transaction: every family describes the same moment. When
    // one fails, they are read again each on its own, so that one failure
    // (which aborts a PostgreSQL transaction) does not take the others.
    let mut read: Result<Results> = store.snapshot(|db| Ok(read_all(db, false))).await;
    if read.as_ref().is_ok_and(any_failed) {
        read = store.snapshot(|db| Ok(read_all(db, true))).await;
    }
    let (a, q, p, r, l, m, n) = match read {
        Ok(results) => results,
        Err(e) => {
            let e = e.to_string();
            let err = || crate::domain::DomainError::Unavailable(e.clone());
            (Err(err()), Err(err()), Err(err()), Err(err()), Err(err()), Err(err()), Err(err()))
        }
    };
    DbSnapshot {
        taken_at,
        assignments: Slot::next("assignments", prev.map(|s| &s.assignments), a),
        queue: Slot::next("queue", prev.map(|s| &s.queue), q),
        pipeline_runs: Slot::next("pipeline_runs", prev.map(|s| &s.pipeline_runs), p),
        run_events: Slot::next("run_events", prev.map(|s| &s.run_events), r),
        llm: Slot::next("llm", prev.map(|s| &s.llm), l),
        migration_version: Slot::next("migrations", prev.map(|s| &s.migration_version), m),
        nodes: Slot::next("fleet", prev.map(|s| &s.nodes), n),
    }
}

type Flight = Shared<BoxFuture<'static, Arc<DbSnapshot>>>;

/// Below Prometheus' default 10 s scrape timeout, with room to encode.
const STALE_AFTER: Duration = Duration::from_secs(3);

#[derive(Default)]
struct State {
    current: Option<Arc<DbSnapshot>>,
    inflight: Option<Flight>,
}

pub struct SnapshotCache {
    store: Store,
    ttl: Duration,
    state: Mutex<State>,
    computations: AtomicU64,
}

impl SnapshotCache {
    pub fn new(store: Store, ttl: Duration) -> SnapshotCache {
        SnapshotCache { store, ttl, state: Mutex::new(State::default()), computations: AtomicU64::new(0) }
    }

    /// How many snapshots have been computed since start.
    pub fn computations(&self) -> u64 {
        self.computations.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The current snapshot, computing a new one if it is older than the TTL.
    /// A scrape waits at most `STALE_AFTER` for a slow computation (a
    /// database stuck behind a lock) when an older snapshot exists: it then
    /// gets that one, its age telling how stale it is, while the
    /// computation goes on.
    pub async fn get(self: &Arc<Self>) -> Arc<DbSnapshot> {
        let (flight, stale) = {
            let mut st = self.state();
            if let Some(cur) = st.current.as_ref().filter(|c| c.taken_at.elapsed() < self.ttl) {
                return cur.clone();
            }
            let flight = match &st.inflight {
                Some(f) => f.clone(),
                None => {
                    let f = self.launch(st.current.clone());
                    st.inflight = Some(f.clone());
                    f
                }
            };
            (flight, st.current.clone())
        };
        match stale {
            Some(stale) => tokio::time::timeout(STALE_AFTER, flight).await.unwrap_or(stale),
            None => flight.await,
        }
    }

    fn launch(self: &Arc<Self>, prev: Option<Arc<DbSnapshot>>) -> Flight {
        let cache = self.clone();
        let fallback = prev.clone();
        let task = tokio::spawn(async move {
            let snap = Arc::new(compute(&cache.store, prev.as_deref()).await);
            cache.computations.fetch_add(1, Ordering::Relaxed);
            let mut st = cache.state();
            st.current = Some(snap.clone());
            st.inflight = None;
            snap
        });
        let cache = self.clone();
        async move {
            match task.await {
                Ok(snap) => snap,
                // Only a runtime shutting down aborts the task.
                Err(_) => {
                    cache.state().inflight = None;
                    fallback.unwrap_or_else(|| Arc::new(empty()))
                }
            }
        }
        .boxed()
        .shared()
    }
}

fn empty() -> DbSnapshot {
    DbSnapshot {
        taken_at: Instant::now(),
        assignments: Slot::default(),
        queue: Slot::default(),
        pipeline_runs: Slot::default(),
        run_events: Slot::default(),
        llm: Slot::default(),
        migration_version: Slot::default(),
        nodes: Slot::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    #[tokio::test(start_paused = true)]
    async fn a_stuck_computation_serves_the_last_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &Location::Sqlite(dir.path().join("t.db")),
            tokio::sync::broadcast::channel(8).0,
            Default::default(),
        )
        .unwrap();
        let cache = Arc::new(SnapshotCache::new(store, Duration::from_millis(10)));
        let old = Arc::new(empty());
        {
            let mut st = cache.state();
            st.current = Some(old.clone());
            // A computation that never finishes, as behind a stuck lock.
            st.inflight = Some(futures::future::pending().boxed().shared());
        }
        tokio::time::advance(Duration::from_millis(20)).await;
        let served = cache.get().await;
        assert!(Arc::ptr_eq(&served, &old), "the stale snapshot is served");
        // Without any snapshot yet there is nothing to fall back on: wait.
        cache.state().current = None;
        assert!(tokio::time::timeout(Duration::from_secs(60), cache.get()).await.is_err());
    }
}
