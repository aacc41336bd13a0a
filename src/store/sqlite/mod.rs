//! The SQLite backend: its connections, dialect, schema and migrations,
//! and error mapping. One writer thread owns the only write connection
//! (SQLite admits one writer at a time, so writers queue here instead of on
//! SQLITE_BUSY) and commits in groups; a small pool of WAL readers serves
//! reads on the blocking pool. Nothing runs on the async runtime's threads.

pub mod migrations;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};

use super::sql::Db;
use super::tx::{ExclusiveFn, Value, WriteFn};
use super::{Options, Synchronous};
use crate::domain::{DomainError, Result};
use crate::sync::lock;
use writer::{Job, Writer};

const READERS: usize = 4;
/// Prepared statements kept per connection: more than the store uses, so
/// none is ever evicted and prepared again on a hot path.
const STATEMENT_CACHE: usize = 256;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a full disk reads as, until the store names its directory.
pub(super) const DISK_FULL: &str = "the disk holding the database is full";
/// How a corrupt database reads (the store remembers it for `/readyz`).
pub(super) const CORRUPT: &str = "the database is corrupt";

impl From<rusqlite::Error> for DomainError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseCorrupt, DatabaseLocked, DiskFull, NotADatabase};
        match e.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => DomainError::Unavailable(e.to_string()),
            Some(DiskFull) => DomainError::Unavailable(DISK_FULL.into()),
            Some(DatabaseCorrupt | NotADatabase) => DomainError::Unavailable(format!("{CORRUPT}: {e}")),
            _ => DomainError::caused_by(e),
        }
    }
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
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase, OperationInterrupted};
    match found {
        Ok(lines) if lines == ["ok"] => Ok(()),
        Ok(lines) => Err(corrupt(lines.join("; "))),
        Err(e) if matches!(e.sqlite_error_code(), Some(DatabaseCorrupt | NotADatabase)) => Err(corrupt(e.to_string())),
        Err(e) if e.sqlite_error_code() == Some(OperationInterrupted) => {
            tracing::warn!(db = %path.display(), ?budget, "the start-up integrity check ran out of time; skipped the rest");
            Ok(())
        }
        Err(e) => Err(DomainError::invalid(format!(
            "the database {} cannot be checked ({e}); restore it from a backup",
            path.display()
        ))),
    }
}

/// The store's SQL interface on a plain connection: for the tests and
/// benchmarks that prepare a database file themselves.
pub fn db(conn: &Connection) -> Db<'_> {
    Db::sqlite(conn)
}

pub(super) struct Sqlite {
    writer: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating if needed) the database, checks it and brings its
    /// schema up to date. Refuses a corrupt database, and one migrated by a
    /// newer crewshipd.
    pub fn open(
        path: &Path,
        events: broadcast::Sender<std::sync::Arc<crate::domain::event::Event>>,
        options: Options,
    ) -> Result<Sqlite> {
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
        let thread = Writer { conn: writer, events, counting: options.maintain_counters, folded: Default::default() };
        std::thread::Builder::new()
            .name("crewship-writer".into())
            .spawn(move || thread.run(queue))
            .map_err(|e| DomainError::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Sqlite {
            writer: jobs,
            readers: Mutex::new(readers),
            reader_slots: Semaphore::new(READERS),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit(&self, job: Job, answer: oneshot::Receiver<Result<Value>>) -> Result<Value> {
        let gone = || DomainError::Unavailable("the store's writer has stopped".into());
        self.writer.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                DomainError::Unavailable("too many writes are waiting for the database; retry shortly".into())
            }
            mpsc::error::TrySendError::Closed(_) => gone(),
        })?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn write(&self, f: WriteFn) -> Result<Value> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Write(f, reply), answer).await
    }

    pub async fn exclusive(&self, f: ExclusiveFn) -> Result<Value> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Exclusive(f, reply), answer).await
    }

    pub async fn checkpoint(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Checkpoint(reply), answer).await.map(drop)
    }

    /// Runs `f` on a read connection, in a read transaction of its own
    /// (one consistent WAL snapshot) when `consistent`.
    pub async fn read<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        consistent: bool,
        f: impl FnOnce(&Db<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self.reader_slots.acquire().await.map_err(|_| DomainError::Unavailable("store closed".into()))?;
        let conn = lock(&self.readers).pop().ok_or_else(|| DomainError::internal("reader pool empty"))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = if consistent {
                // Dropping the transaction (on any return) rolls it back.
                conn.unchecked_transaction().map_err(DomainError::from).and_then(|tx| {
                    let value = f(&Db::sqlite(&tx))?;
                    tx.finish()?;
                    Ok(value)
                })
            } else {
                f(&Db::sqlite(&conn))
            };
            lock(&me.readers).push(conn);
            result
        })
        .await
        .map_err(|e| DomainError::internal(format!("read task: {e}")))?
    }
}
