//! The only code that speaks SQL. Table modules (`crews`, `assignments`,
//! …) hold the rules of what each change writes, which counters move and
//! what is journaled and published; they run their statements through
//! `sql::Db`. A backend (`sqlite`, `postgresql`) implements
//! `backend::Backend` and `sql::Conn`: it alone names its driver, and hands
//! its failures back as typed `fault::Fault`s, which this file alone turns
//! into what callers see. No database type leaves this module.
//!
//! `Store::write` runs a closure atomically (its own savepoint in a group
//! transaction, or a transaction of its own); it returns, and the closure's
//! events are published, only after the commit.

pub mod agents;
pub mod assignments;
mod backend;
pub mod counters;
pub mod crews;
mod fault;
mod group;
pub mod journal;
pub mod ledger;
pub mod locks;
pub mod migrations;
pub mod nodes;
mod options;
pub mod page;
pub mod pipeline_runs;
pub mod pipelines;
pub mod posted;
pub mod postgresql;
pub mod query;
pub mod recount;
pub mod recovery;
pub mod refs;
pub mod roster;
pub mod runs;
pub mod snapshot;
pub mod sql;
pub mod sqlite;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::domain::event::Event;
use crate::domain::{DomainError, Result, time};
use crate::sync::lock;
use backend::{Backend, Failure, Outcome, Value};
use fault::Fault;
pub use options::{Options, Synchronous};
pub use sql::Db;
pub use tx::Tx;

/// Free bytes below which the data directory counts as full.
const MIN_FREE_BYTES: u64 = 1024 * 1024;
/// How long one readiness probe's answer is reused.
const PROBE_REUSE: Duration = Duration::from_secs(1);

impl From<serde_json::Error> for DomainError {
    fn from(e: serde_json::Error) -> Self {
        DomainError::internal(format!("stored JSON: {e}"))
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, shared with other nodes or not.
    Postgres(Box<postgresql::Settings>),
}

struct Inner {
    backend: Box<dyn Backend>,
    events: broadcast::Sender<Arc<Event>>,
    /// Set once the database was found corrupt: not ready until restarted
    /// (when the start-up check refuses it).
    corrupt: Mutex<Option<DomainError>>,
    /// The latest readiness probe, reused for `PROBE_REUSE`.
    probe: tokio::sync::Mutex<Option<(Instant, Result<()>)>>,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Free bytes on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value of the plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs only writes into the struct passed; the path is
    // NUL-terminated.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

fn typed<T: 'static>(value: Value) -> Result<T> {
    value.downcast::<T>().map(|v| *v).map_err(|_| DomainError::internal("the store returned another type"))
}

/// `f`, as a job that hands back its value untyped.
fn untyped<T: Send + 'static>(f: impl FnOnce(&Db<'_>) -> Result<T> + Send + 'static) -> backend::WorkFn {
    Box::new(move |db| f(db).map(|v| Box::new(v) as Value))
}

impl Store {
    /// Opens (creating if needed) the database, checks it and brings its
    /// schema up to date. Refuses a corrupt database, and one migrated by a
    /// newer crewshipd.
    pub fn open(location: &Location, events: broadcast::Sender<Arc<Event>>, options: Options) -> Result<Store> {
        let backend: Box<dyn Backend> = match location {
            Location::Sqlite(path) => Box::new(sqlite::Sqlite::open(path, events.clone(), options)?),
            Location::Postgres(settings) => {
                Box::new(postgresql::Postgres::open((**settings).clone(), events.clone(), options)?)
            }
        };
        Ok(Store {
            inner: Arc::new(Inner { backend, events, corrupt: Mutex::new(None), probe: tokio::sync::Mutex::new(None) }),
        })
    }

    /// The database, for the log (never a password).
    pub fn describe(&self) -> String {
        self.inner.backend.describe()
    }

    /// Whether this store can only ever have one node (SQLite): no other
    /// daemon shares it.
    pub fn single_node(&self) -> bool {
        !self.inner.backend.shared()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Publishes an event that records no change (a container stats sample).
    pub fn publish(&self, event: Event) {
        // No subscribers is fine: nobody is listening yet.
        let _ = self.inner.events.send(Arc::new(event));
    }

    /// Runs `f` atomically; returns once its transaction has committed (its
    /// events are published by then). `f` may run more than once, when the
    /// database aborts a transaction it could not order (PostgreSQL).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Clone + Send + 'static,
    {
        let job: backend::WriteFn = Box::new(move |tx| (f.clone())(tx).map(|v| Box::new(v) as Value));
        self.answer(self.inner.backend.write(job).await)
    }

    /// Runs `f` alone, in a transaction of its own (between write groups
    /// on SQLite): maintenance.
    pub async fn exclusive<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(self.inner.backend.exclusive(untyped(f)).await)
    }

    /// Runs `f` on a read connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(self.inner.backend.read(false, untyped(f)).await)
    }

    /// Runs `f` in one read transaction: everything it reads describes the
    /// same moment.
    pub async fn snapshot<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Db<'_>) -> Result<T> + Send + 'static,
    {
        self.answer(self.inner.backend.read(true, untyped(f)).await)
    }

    /// The start-up check: every maintained counter against a recount from
    /// the base tables, on one snapshot, drift repaired (once, under a lock,
    /// when several nodes start at once). Returns what it repaired.
    pub async fn recount(&self) -> Result<Vec<recount::Drift>> {
        // Waits for a repair another node may be making.
        self.exclusive(|db| db.lock_for_transaction(locks::RECOUNT)).await?;
        let drift = self.snapshot(recount::find_drift).await?;
        if drift.is_empty() {
            return Ok(drift);
        }
        self.exclusive(move |db| {
            // One repair at a time; one that finds the drift gone (another
            // node repaired it) adds nothing.
            db.lock_for_transaction(locks::RECOUNT)?;
            let still = recount::find_drift(db)?;
            let fix: Vec<_> = drift.into_iter().filter(|d| still.contains(d)).collect();
            recount::repair(db, &fix)?;
            Ok(fix)
        })
        .await
    }

    /// A job's value, typed again; or what its failure means to the
    /// caller: a fault named for where the database lives, a corrupt
    /// database remembered for `/readyz`.
    fn answer<T: 'static>(&self, outcome: Outcome) -> Result<T> {
        match outcome {
            Ok(value) => typed(value),
            Err(Failure::Refused(e)) => Err(e),
            Err(Failure::Fault(fault)) => {
                let e = fault.to_error(self.inner.backend.disk());
                if let Fault::Corrupt(_) = fault {
                    *lock(&self.inner.corrupt) = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Whether the store can serve: not found corrupt, room on its disk,
    /// and a write that commits (probed at most once per `PROBE_REUSE`).
    pub async fn ready(&self) -> Result<()> {
        if let Some(corrupt) = lock(&self.inner.corrupt).clone() {
            return Err(corrupt);
        }
        if let Some(dir) = self.inner.backend.disk()
            && free_bytes(dir).is_some_and(|free| free < MIN_FREE_BYTES)
        {
            return Err(Fault::DiskFull.to_error(Some(dir)));
        }
        let mut probe = self.inner.probe.lock().await;
        if let Some((at, result)) = probe.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return result.clone();
        }
        let result = self
            .write(|tx| {
                tx.execute(
                    "INSERT INTO readiness_probe (id, probed_at) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
                    sql::args![time::now_ms()],
                )
                .map(drop)
            })
            .await;
        *probe = Some((Instant::now(), result.clone()));
        result
    }

    /// Makes what is committed durable in the main database file where
    /// that is a step of its own (SQLite's WAL); called at shutdown.
    pub async fn checkpoint(&self) -> Result<()> {
        self.answer(self.inner.backend.checkpoint().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(&Location::Sqlite(dir.path().join("t.db")), broadcast::channel(64).0, Options::default())
                .unwrap();
        (dir, store)
    }

    fn note(tx: &mut Tx<'_>, summary: &str) -> Result<()> {
        journal::append(tx, journal::NewEntry::info("note", summary)).map(|_| ())
    }

    /// The journal's summaries, in id order.
    async fn summaries(store: &Store) -> Vec<String> {
        store.read(|db| db.query("SELECT summary FROM journal ORDER BY id", sql::args![], |r| r.get(0))).await.unwrap()
    }

    #[tokio::test]
    async fn a_failing_operation_rolls_back_alone_within_its_group() {
        let (_dir, store) = open();
        let mut events = store.subscribe();
        // Submitted together, these share group transactions.
        let ops = (0..50).map(|i| {
            let store = store.clone();
            async move {
                store
                    .write(move |tx| {
                        note(tx, &format!("n{i}"))?;
                        match i % 10 {
                            3 => Err(DomainError::invalid("refused")),
                            7 => panic!("a bug in one operation"),
                            _ => Ok(i),
                        }
                    })
                    .await
            }
        });
        let results = futures::future::join_all(ops).await;
        for (i, r) in results.iter().enumerate() {
            match i % 10 {
                3 => assert!(matches!(r, Err(DomainError::Invalid(_)))),
                7 => assert!(matches!(r, Err(DomainError::Internal { .. }))),
                _ => assert_eq!(r.as_ref().unwrap(), &i),
            }
        }
        let stored = summaries(&store).await;
        let expected: Vec<String> = (0..50).filter(|i| i % 10 != 3 && i % 10 != 7).map(|i| format!("n{i}")).collect();
        let mut sorted = stored.clone();
        sorted.sort();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(sorted, expected_sorted);
        // Exactly the committed operations published, in commit order.
        let mut published = Vec::new();
        while let Ok(e) = events.try_recv() {
            published.push(e.data["summary"].as_str().unwrap().to_string());
        }
        assert_eq!(published, stored);
    }

    #[tokio::test]
    async fn an_operation_alone_in_its_transaction_rolls_back_too() {
        let (_dir, store) = open();
        let refused = store
            .write(|tx| {
                note(tx, "half-written")?;
                Err::<(), _>(DomainError::invalid("refused after a write"))
            })
            .await;
        assert!(refused.is_err());
        store.write(|tx| note(tx, "kept")).await.unwrap();
        assert_eq!(summaries(&store).await, vec!["kept".to_string()]);
    }

    #[tokio::test]
    async fn maintenance_runs_between_groups() {
        let (_dir, store) = open();
        store.write(|tx| note(tx, "before")).await.unwrap();
        let n: i64 = store
            .exclusive(|db| db.query_one("SELECT COUNT(*) FROM journal", sql::args![], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(n, 1);
        store.checkpoint().await.unwrap();
    }
}
