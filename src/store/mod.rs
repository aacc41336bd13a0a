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
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};

use crate::domain::event::Event;
use crate::domain::{DomainError, Result, time};
pub use writer::Tx;
use writer::{Job, Writer};

const READERS: usize = 4;
/// Prepared statements kept per connection: more than the store uses, so
/// none is ever evicted and prepared again on a hot path.
const STATEMENT_CACHE: usize = 256;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a full disk reads as, until the store names its directory.
const DISK_FULL: &str = "the disk holding the database is full";
/// Free bytes below which the data directory counts as full.
const MIN_FREE_BYTES: u64 = 1024 * 1024;
/// How long one readiness probe's answer is reused.
const PROBE_REUSE: Duration = Duration::from_secs(1);

impl From<rusqlite::Error> for DomainError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, DiskFull, NotADatabase};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => DomainError::Unavailable(e.to_string()),
            Some(DiskFull) => DomainError::Unavailable(DISK_FULL.into()),
            Some(DatabaseCorrupt | NotADatabase) => DomainError::Unavailable(format!("the database is corrupt: {e}")),
            _ => DomainError::internal(e),
        }
    }
}

impl From<serde_json::Error> for DomainError {
    fn from(e: serde_json::Error) -> Self {
        DomainError::internal(format!("stored JSON: {e}"))
    }
}

/// SQLite's durability (`synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// An acknowledged write is on disk (an fsync at every commit).
    Full,
    /// An acknowledged write survives a crash of crewshipd, not of the
    /// machine.
    Normal,
}

/// How the store is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub sync: Synchronous,
    /// Write operations that may wait for the writer; more get 503.
    pub write_queue: usize,
    /// Time budget of the start-up integrity check (zero: none).
    pub check_time: Duration,
    /// False only for the benchmark that measures what counter maintenance
    /// costs: the metrics of such a store are wrong.
    pub maintain_counters: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sync: Synchronous::Full,
            write_queue: 4096,
            check_time: Duration::from_secs(10),
            maintain_counters: true,
        }
    }
}

struct Inner {
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    events: broadcast::Sender<Arc<Event>>,
    path: PathBuf,
    /// Set once the database was found corrupt: not ready until restarted
    /// (when the start-up check refuses it).
    corrupt: Mutex<Option<String>>,
    /// The latest readiness probe, reused for `PROBE_REUSE`.
    probe: tokio::sync::Mutex<Option<(Instant, Result<()>)>>,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn configure(conn: &Connection, sync: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a commit is on disk before it is acknowledged, so a power loss
    // loses nothing acknowledged; group commit pays the fsync once per
    // group. NORMAL in WAL mode survives a crash of the process, not of the
    // machine: the newest commits may roll back.
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {sync};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;"
    ))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// `PRAGMA quick_check` on a connection of its own (so no page it reads
/// stays cached in the store's), within `budget`: a corrupt database is
/// refused with what SQLite found; a check that runs out of time is only
/// reported.
fn check_integrity(path: &Path, budget: Duration) -> Result<()> {
    if budget.is_zero() {
        return Ok(());
    }
    let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let deadline = Instant::now() + budget;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline))?;
    let found: rusqlite::Result<Vec<String>> =
        conn.prepare("PRAGMA quick_check(20)").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    let corrupt = |found: String| {
        DomainError::invalid(format!("the database {} is corrupt ({found}); restore it from a backup", path.display()))
    };
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match found {
        Ok(lines) if lines == ["ok"] => Ok(()),
        Ok(lines) => Err(corrupt(lines.join("; "))),
        Err(e) if matches!(e.sqlite_error_code(), Some(DatabaseCorrupt | NotADatabase)) => Err(corrupt(e.to_string())),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            tracing::warn!(db = %path.display(), ?budget, "the start-up integrity check ran out of time; skipped the rest");
            Ok(())
        }
        Err(e) => Err(DomainError::invalid(format!(
            "the database {} cannot be checked ({e}); restore it from a backup",
            path.display()
        ))),
    }
}

/// Free bytes on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes into the struct passed; the path is NUL-terminated.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

impl Store {
    /// Opens (creating if needed) the database, checks it and brings its
    /// schema up to date. Refuses a corrupt database, and one migrated by a
    /// newer crewshipd.
    pub fn open(path: &Path, events: broadcast::Sender<Arc<Event>>, options: Options) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DomainError::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        if path.exists() {
            check_integrity(path, options.check_time)?;
        }
        let mut writer = Connection::open(path)?;
        configure(&writer, options.sync)?;
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
        let (jobs, queue) = mpsc::channel(options.write_queue);
        let thread = Writer {
            conn: writer,
            events: events.clone(),
            counting: options.maintain_counters,
            folded: Default::default(),
        };
        std::thread::Builder::new()
            .name("crewship-writer".into())
            .spawn(move || thread.run(queue))
            .map_err(|e| DomainError::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: jobs,
                readers: Mutex::new(readers),
                reader_slots: Semaphore::new(READERS),
                events,
                path: path.to_path_buf(),
                corrupt: Mutex::new(None),
                probe: tokio::sync::Mutex::new(None),
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
        self.inner.writer.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                DomainError::Unavailable("too many writes are waiting for the database; retry shortly".into())
            }
            mpsc::error::TrySendError::Closed(_) => gone(),
        })?;
        let value = answer.await.map_err(|_| gone())?.map_err(|e| self.explain(e))?;
        value.downcast::<T>().map(|v| *v).map_err(|_| DomainError::internal("writer returned another type"))
    }

    /// Names the data directory in a full-disk error, and remembers a
    /// corrupt database for `/readyz`.
    fn explain(&self, e: DomainError) -> DomainError {
        match &e {
            DomainError::Unavailable(m) if m == DISK_FULL => {
                let dir = self.inner.path.parent().unwrap_or(&self.inner.path);
                DomainError::Unavailable(format!("no space left on the disk holding {}", dir.display()))
            }
            DomainError::Unavailable(m) if m.starts_with("the database is corrupt") => {
                *self.inner.corrupt.lock().unwrap_or_else(|p| p.into_inner()) = Some(m.clone());
                e
            }
            _ => e,
        }
    }

    /// Whether the store can serve: not found corrupt, room on its disk,
    /// and a write that commits (probed at most once per `PROBE_REUSE`).
    pub async fn ready(&self) -> Result<()> {
        if let Some(reason) = self.inner.corrupt.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(DomainError::Unavailable(reason));
        }
        let dir = self.inner.path.parent().unwrap_or(&self.inner.path);
        if free_bytes(dir).is_some_and(|free| free < MIN_FREE_BYTES) {
            return Err(DomainError::Unavailable(format!("no space left on the disk holding {}", dir.display())));
        }
        let mut probe = self.inner.probe.lock().await;
        if let Some((at, result)) = probe.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return result.clone();
        }
        let result = self
            .write(|tx| {
                tx.prepare_cached(
                    "INSERT INTO readiness_probe (id, probed_at) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
                )?
                .execute([time::now_ms()])?;
                Ok(())
            })
            .await;
        *probe = Some((Instant::now(), result.clone()));
        result
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
            .ok_or_else(|| DomainError::internal("reader pool empty"))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            inner.readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        })
        .await
        .map_err(|e| DomainError::internal(format!("read task: {e}")))?
        .map_err(|e| self.explain(e))
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
        let store = Store::open(&dir.path().join("t.db"), broadcast::channel(64).0, Options::default()).unwrap();
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
