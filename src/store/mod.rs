//! The only code that speaks SQL. One writer connection (SQLite admits one
//! writer at a time, so in-process writers queue here instead of on
//! SQLITE_BUSY) and a small pool of WAL readers. All work runs on the
//! blocking pool, never on the async runtime's threads.
//!
//! `Store::write` runs a closure in one IMMEDIATE transaction; the events
//! the closure emits are published only after the commit succeeds.

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

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Semaphore, broadcast};

use crate::domain::event::Event;
use crate::domain::{DomainError, Result, time};

const READERS: usize = 4;
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

/// A write transaction plus the events it will publish once committed.
pub struct Tx<'c> {
    tx: Transaction<'c>,
    events: Vec<Event>,
    /// One clock reading per transaction, so every row it writes agrees.
    pub now: i64,
    /// False only in the benchmark variant that measures what counter
    /// maintenance costs.
    counting: bool,
}

impl<'c> Deref for Tx<'c> {
    type Target = Transaction<'c>;
    fn deref(&self) -> &Transaction<'c> {
        &self.tx
    }
}

impl Tx<'_> {
    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn counting(&self) -> bool {
        self.counting
    }
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    events: broadcast::Sender<Arc<Event>>,
    path: PathBuf,
    maintain_counters: bool,
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
    conn.set_prepared_statement_cache_capacity(64);
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
            conn.set_prepared_statement_cache_capacity(64);
            readers.push(conn);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
                reader_slots: Semaphore::new(READERS),
                events,
                path: path.to_path_buf(),
                maintain_counters,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Runs `f` in one write transaction; commits if it returns Ok, then
    /// publishes what it emitted.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let (value, events) = tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let counting = inner.maintain_counters;
            let mut tx = Tx { tx, events: Vec::new(), now: time::now_ms(), counting };
            let value = f(&mut tx)?;
            let Tx { tx, events, .. } = tx;
            tx.commit()?;
            Ok::<_, DomainError>((value, events))
        })
        .await
        .map_err(|e| DomainError::Internal(format!("write task: {e}")))??;
        for event in events {
            // No subscribers is fine: nobody is listening yet.
            let _ = self.inner.events.send(Arc::new(event));
        }
        Ok(value)
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
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| DomainError::Internal(format!("writer task: {e}")))?
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
