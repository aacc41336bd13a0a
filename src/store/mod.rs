//! The only code that speaks SQL. One writer thread owns the only write
//! connection (SQLite admits one writer at a time, so writers queue here
//! instead of on SQLITE_BUSY) and commits in groups; a small pool of WAL
//! readers serves reads on the blocking pool. Nothing runs on the async
//! runtime's threads.
//!
//! `Store::write` runs a closure atomically (its own savepoint in a group
//! transaction); it returns, and the closure's events are published, only
//! after the commit.

pub mod agents;
pub mod assignments;
pub mod counters;
pub mod crews;
pub mod journal;
pub mod ledger;
pub mod migrations;
pub mod page;
pub mod pipelines;
pub mod query;
pub mod recount;
pub mod runs;
pub mod snapshot;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};

use crate::domain::event::Event;
use crate::domain::{DomainError, Result};
pub use writer::Tx;
use writer::{Job, Writer};

const READERS: usize = 4;
/// Prepared statements kept per connection: more than the store uses, so
/// none is ever evicted and prepared again on a hot path.
const STATEMENT_CACHE: usize = 256;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl From<rusqlite::Error> for DomainError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => DomainError::Unavailable(e.to_string()),
            _ => DomainError::Internal(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for DomainError {
    fn from(e: serde_json::Error) -> Self {
        DomainError::Internal(format!("stored JSON: {e}"))
    }
}

struct Inner {
    writer: mpsc::UnboundedSender<Job>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    events: broadcast::Sender<Arc<Event>>,
    path: PathBuf,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // NORMAL in WAL mode is durable against process crashes (kill -9): a
    // commit is in the WAL file before it returns; only power loss could
    // roll back the newest commits.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to
    /// date. Refuses a database migrated by a newer crewshipd.
    pub fn open(path: &Path, events: broadcast::Sender<Arc<Event>>) -> Result<Store> {
        Store::open_with(path, events, true)
    }

    /// `maintain_counters: false` is for benchmarks only: it measures the
    /// write path without its counters. Metrics of such a store are wrong.
    pub fn open_with(path: &Path, events: broadcast::Sender<Arc<Event>>, maintain_counters: bool) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DomainError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        migrations::apply(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            readers.push(conn);
        }
        let (jobs, queue) = mpsc::unbounded_channel();
        let thread =
            Writer { conn: writer, events: events.clone(), counting: maintain_counters, folded: Default::default() };
        std::thread::Builder::new()
            .name("crewship-writer".into())
            .spawn(move || thread.run(queue))
            .map_err(|e| DomainError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: jobs,
                readers: Mutex::new(readers),
                reader_slots: Semaphore::new(READERS),
                events,
                path: path.to_path_buf(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Publishes an event that records no change (a container stats sample).
    pub fn publish(&self, event: Event) {
        // No subscribers is fine: nobody is listening yet.
        let _ = self.inner.events.send(Arc::new(event));
    }

    /// Runs `f` atomically in the writer; returns once its transaction has
    /// committed (its events are published by then).
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Write(Box::new(move |tx| f(tx).map(|v| Box::new(v) as _)), reply);
        self.submit(job, answer).await
    }

    async fn submit<T: 'static>(
        &self,
        job: Job,
        answer: oneshot::Receiver<Result<Box<dyn std::any::Any + Send>>>,
    ) -> Result<T> {
        let gone = || DomainError::Unavailable("the store's writer has stopped".into());
        self.inner.writer.send(job).map_err(|_| gone())?;
        let value = answer.await.map_err(|_| gone())??;
        value.downcast::<T>().map(|v| *v).map_err(|_| DomainError::Internal("writer returned another type".into()))
    }

    /// Runs `f` on a read connection (a consistent WAL snapshot if `f`
    /// opens a transaction).
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit =
            self.inner.reader_slots.acquire().await.map_err(|_| DomainError::Unavailable("store closed".into()))?;
        let conn = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or_else(|| DomainError::Internal("reader pool empty".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            inner.readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| DomainError::Internal(format!("read task: {e}")))?
    }

    /// Runs `f` with the writer connection outside any transaction, for
    /// maintenance that manages its own transactions (recount, checkpoint).
    pub async fn with_writer<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job::Raw(Box::new(move |conn| f(conn).map(|v| Box::new(v) as _)), reply);
        self.submit(job, answer).await
    }

    /// Flushes the WAL into the main file; called at shutdown.
    pub async fn checkpoint(&self) -> Result<()> {
        self.with_writer(|conn| {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(())
        })
        .await
    }
}

/// Reads an optional row.
pub(crate) fn optional<T>(r: rusqlite::Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), broadcast::channel(64).0).unwrap();
        (dir, store)
    }

    fn note(tx: &mut Tx<'_>, summary: &str) -> Result<()> {
        journal::append(tx, journal::NewEntry::info("note", summary)).map(|_| ())
    }

    /// The journal's summaries, in id order.
    async fn summaries(store: &Store) -> Vec<String> {
        store
            .read(|c| {
                Ok(c.prepare("SELECT summary FROM journal ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap()
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
                7 => assert!(matches!(r, Err(DomainError::Internal(_)))),
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
            .with_writer(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM journal", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1);
        store.checkpoint().await.unwrap();
    }
}
