//! The SQLite backend: its connections, dialect, schema and migrations,
//! and error mapping. One writer thread owns the only write connection
//! (SQLite admits one writer at a time, so writers queue here instead of on
//! SQLITE_BUSY) and commits in groups; a small pool of WAL readers serves
//! reads on the blocking pool. Nothing runs on the async runtime's threads.

mod conn;
mod migrations;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, broadcast};

use super::backend::{Backend, Failure, Outcome, Pending, Queue, WorkFn, WriteFn, guarded};
use super::options::{Options, Synchronous};
use super::sql::Db;
use crate::domain::event::Event;
use crate::domain::{DomainError, Result};
use crate::sync::lock;
use conn::{SqliteConn, fault};
use writer::{Job, Writer};

const READERS: usize = 4;
/// Prepared statements kept per connection: more than the store uses, so
/// none is ever evicted and prepared again on a hot path.
const STATEMENT_CACHE: usize = 256;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
    let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(opening)?;
    let deadline = Instant::now() + budget;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline)).map_err(opening)?;
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

/// An error opening the database.
fn opening(e: rusqlite::Error) -> DomainError {
    fault(e).into()
}

/// Runs `f` with the store's SQL interface on a plain connection: for the
/// tests and benchmarks that prepare a database file themselves.
pub fn with_db<T>(conn: &Connection, f: impl FnOnce(&Db<'_>) -> T) -> T {
    f(&SqliteConn::new(conn).db())
}

/// Brings a database's schema up to date, each migration in its own
/// transaction.
pub fn migrate(conn: &Connection) -> Result<()> {
    with_db(conn, |db| super::migrations::apply(db, &migrations::SCRIPTS))
}

/// Read connections, each used by one read at a time.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    slots: Semaphore,
}

pub(super) struct Sqlite {
    writer: Queue<Job>,
    readers: Arc<Readers>,
    path: PathBuf,
}

impl Sqlite {
    /// Opens (creating if needed) the database, checks it and brings its
    /// schema up to date. Refuses a corrupt database, and one migrated by a
    /// newer crewshipd.
    pub fn open(path: &Path, events: broadcast::Sender<Arc<Event>>, options: Options) -> Result<Sqlite> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DomainError::internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        if path.exists() {
            check_integrity(path, options.check_time)?;
        }
        let writer = Connection::open(path).map_err(opening)?;
        configure(&writer, options.sync).map_err(opening)?;
        migrate(&writer)?;
        let mut idle = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(opening)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(opening)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            idle.push(conn);
        }
        let (jobs, queue) = Queue::bounded(options.write_queue);
        let thread = Writer { conn: writer, events, counting: options.maintain_counters, folded: Default::default() };
        std::thread::Builder::new()
            .name("crewship-writer".into())
            .spawn(move || thread.run(queue))
            .map_err(|e| DomainError::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(Sqlite {
            writer: jobs,
            readers: Arc::new(Readers { idle: Mutex::new(idle), slots: Semaphore::new(READERS) }),
            path: path.to_path_buf(),
        })
    }
}

impl Readers {
    /// Runs `f` on a read connection, in a read transaction of its own
    /// (one consistent WAL snapshot) when `consistent`.
    async fn read(self: Arc<Self>, consistent: bool, f: WorkFn) -> Outcome {
        let closed = || Failure::Refused(DomainError::Unavailable("the store is closed".into()));
        let _permit = self.slots.acquire().await.map_err(|_| closed())?;
        let conn = lock(&self.idle).pop().ok_or_else(closed)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = {
                let sqlite = SqliteConn::new(&conn);
                let db = sqlite.db();
                guarded(&db, || {
                    if consistent {
                        db.batch("BEGIN")?;
                    }
                    f(&db)
                })
            };
            // A read transaction ends however `f` did (even by a panic), so
            // the connection goes back to the pool outside any snapshot.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            lock(&me.idle).push(conn);
            result
        })
        .await
        .map_err(|e| Failure::Refused(DomainError::internal(format!("read task: {e}"))))?
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn disk(&self) -> Option<&Path> {
        Some(self.path.parent().unwrap_or(&self.path))
    }

    fn shared(&self) -> bool {
        false
    }

    fn write(&self, f: WriteFn) -> Pending<'_> {
        Box::pin(self.writer.submit(|answer| Job::Write(f, answer)))
    }

    fn exclusive(&self, f: WorkFn) -> Pending<'_> {
        Box::pin(self.writer.submit(|answer| Job::Exclusive(f, answer)))
    }

    fn read(&self, consistent: bool, f: WorkFn) -> Pending<'_> {
        Box::pin(self.readers.clone().read(consistent, f))
    }

    fn checkpoint(&self) -> Pending<'_> {
        Box::pin(self.writer.submit(Job::Checkpoint))
    }
}
