//! The PostgreSQL backend: its connections, dialect, schema and
//! migrations, and error mapping.
//!
//! A bounded pool (`CREWSHIP_DATABASE_POOL`) of connections, each owned by
//! a thread of its own that runs the store's transactions: one operation a
//! transaction (PostgreSQL handles concurrency; no group commit), at READ
//! COMMITTED, with the counters striped so concurrent transactions do not
//! queue on one row. A transaction aborted by a deadlock or a serialization
//! failure runs again, a bounded number of times, then answers 503. The
//! driver is `postgres`, tokio-postgres behind a blocking facade: the rules
//! above the seam stay one synchronous code path for both databases, and
//! only these threads ever wait on the database, never the async runtime's.
//! A lost connection is an outage, not a crash: the request answers 503,
//! and the next one reconnects.

mod conn;
mod feed;
mod migrations;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use super::backend::{Answer, Backend, Failure, Outcome, Pending, Queue, Value, WorkFn, WriteFn, failure, guarded};
use super::counters;
use super::fault::Fault;
use super::options::Options;
use super::tx::Tx;
use crate::domain::event::Event;
use crate::domain::{DomainError, Result, time};
use crate::sync::lock;
use conn::PgConn;

/// Runs of a transaction aborted by a deadlock or serialization failure.
const TRIES: u32 = 5;
/// How long a connection attempt may take, and how often a broken pool
/// thread tries again (requests meanwhile answer 503 at once).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// Where the database is and how to reach it.
#[derive(Clone)]
pub struct Settings {
    config: postgres::Config,
    /// Connections in the pool.
    pub pool: usize,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Settings {
    /// A `postgres://` URL (libpq's parameters, `sslmode` and
    /// `application_name` among them), the password from the URL, else the
    /// file `password_file`, else `PGPASSWORD`.
    pub fn parse(
        url: &str,
        password_file: Option<&str>,
        pgpassword: Option<String>,
        pool: usize,
    ) -> std::result::Result<Settings, String> {
        let mut config: postgres::Config = url.parse().map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if !matches!(config.get_ssl_mode(), postgres::config::SslMode::Disable | postgres::config::SslMode::Prefer) {
            return Err("sslmode require and stricter need TLS, which this build does not have; use sslmode=disable \
                        or prefer, or a TLS-terminating proxy on the database host"
                .into());
        }
        if config.get_password().is_none() {
            let password = match password_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read the password file {path}: {e}"))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ),
                None => pgpassword,
            };
            if let Some(p) = password {
                config.password(p);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("crewshipd");
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        Ok(Settings { config, pool })
    }

    /// `postgres://user@host:port/db`, never with the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or_default();
        let db = self.config.get_dbname().unwrap_or(user);
        format!("postgres://{user}@{host}:{port}/{db}")
    }
}

enum Job {
    Write(WriteFn, Answer),
    Read(WorkFn, bool, Answer),
    Exclusive(WorkFn, Answer),
}

pub(super) struct Postgres {
    jobs: Queue<Job>,
    settings: Settings,
    /// Ends the event feed's listener.
    stop: Arc<AtomicBool>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What each pool thread keeps between jobs.
struct Worker {
    settings: Settings,
    conn: Option<PgConn>,
    last_attempt: Option<Instant>,
    counting: bool,
    stripes: i64,
    /// Providers known to count under `other`.
    folded: HashSet<String>,
}

impl Postgres {
    /// Connects, migrates (once, whichever node gets there first), and
    /// starts the pool.
    pub fn open(settings: Settings, events: broadcast::Sender<Arc<Event>>, options: Options) -> Result<Postgres> {
        // The driver runs a runtime of its own, which may not start on an
        // async runtime's thread: connect and migrate on a thread of ours.
        let conn = std::thread::scope(|s| {
            s.spawn(|| {
                let conn = PgConn::connect(&settings.config)?;
                super::migrations::apply(&conn.db(), &migrations::SCRIPTS)?;
                Ok::<_, DomainError>(conn)
            })
            .join()
            .unwrap_or_else(|_| Err(DomainError::internal("migrating the database panicked")))
        })?;
        let (jobs, queue) = Queue::bounded(options.write_queue);
        let queue = Arc::new(Mutex::new(queue));
        let mut first = Some(conn);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (config, stop) = (settings.config.clone(), stop.clone());
            std::thread::Builder::new()
                .name("crewship-pg-feed".into())
                .spawn(move || feed::listen(config, events, stop))
                .map_err(|e| DomainError::internal(format!("cannot start the event feed's thread: {e}")))?;
        }
        for i in 0..settings.pool {
            let mut worker = Worker {
                settings: settings.clone(),
                conn: first.take(),
                last_attempt: None,
                counting: options.maintain_counters,
                stripes: options.counter_stripes.max(1),
                folded: HashSet::new(),
            };
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("crewship-pg-{i}"))
                .spawn(move || worker.run(&queue))
                .map_err(|e| DomainError::internal(format!("cannot start a database thread: {e}")))?;
        }
        Ok(Postgres { jobs, settings, stop })
    }
}

impl Backend for Postgres {
    fn describe(&self) -> String {
        self.settings.describe()
    }

    fn disk(&self) -> Option<&Path> {
        None
    }

    fn shared(&self) -> bool {
        true
    }

    fn write(&self, f: WriteFn) -> Pending<'_> {
        Box::pin(self.jobs.submit(|answer| Job::Write(f, answer)))
    }

    fn exclusive(&self, f: WorkFn) -> Pending<'_> {
        Box::pin(self.jobs.submit(|answer| Job::Exclusive(f, answer)))
    }

    fn read(&self, consistent: bool, f: WorkFn) -> Pending<'_> {
        Box::pin(self.jobs.submit(move |answer| Job::Read(f, consistent, answer)))
    }

    fn checkpoint(&self) -> Pending<'_> {
        // Every commit is already in the server's hands.
        Box::pin(std::future::ready(Ok(Box::new(()) as Value)))
    }
}

impl Worker {
    fn run(&mut self, queue: &Mutex<mpsc::Receiver<Job>>) {
        loop {
            let job = lock(queue).blocking_recv();
            let Some(job) = job else { return };
            match job {
                Job::Write(f, answer) => {
                    let _ = answer.send(self.with_conn(|w, c| w.write(c, f)));
                }
                Job::Read(f, consistent, answer) => {
                    let begin = if consistent { Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") } else { None };
                    let _ = answer.send(self.with_conn(|_, c| in_transaction(c, begin, f)));
                }
                Job::Exclusive(f, answer) => {
                    let _ = answer.send(self.with_conn(|_, c| in_transaction(c, Some("BEGIN"), f)));
                }
            }
        }
    }

    /// Runs `f` on the thread's connection, connecting first if it has
    /// none (at most once per `RECONNECT_EVERY`); drops a connection that
    /// broke.
    fn with_conn(&mut self, f: impl FnOnce(&mut Worker, &PgConn) -> Outcome) -> Outcome {
        if self.conn.as_ref().is_none_or(PgConn::is_closed) {
            self.conn = None;
            if self.last_attempt.is_some_and(|t| t.elapsed() < RECONNECT_EVERY) {
                return Err(Fault::Unreachable("retry shortly".into()).into());
            }
            self.last_attempt = Some(Instant::now());
            self.conn = Some(PgConn::connect(&self.settings.config)?);
            tracing::info!(db = self.settings.describe(), "connected to the database");
        }
        let conn = self.conn.take().expect("connected above");
        let result = f(self, &conn);
        if !conn.is_closed() {
            self.conn = Some(conn);
        }
        result
    }

    /// One write operation in a transaction of its own, run again after a
    /// deadlock or serialization failure; its events reach the subscribers
    /// through the feed once it commits.
    fn write(&mut self, conn: &PgConn, mut f: WriteFn) -> Outcome {
        let db = conn.db();
        for attempt in 1..=TRIES {
            db.batch("BEGIN").map_err(|e| failure(&db, e))?;
            let stripe = rand::random_range(0..self.stripes);
            let mut tx = Tx::new(db, time::now_ms(), self.counting, stripe, &mut self.folded);
            let committed = guarded(&db, || {
                let value = f(&mut tx)?;
                let (events, counted) = (std::mem::take(&mut tx.events), std::mem::take(&mut tx.counted));
                counters::write(&db, counted, tx.stripe)?;
                feed::publish(&db, &events)?;
                db.batch("COMMIT")?;
                Ok(value)
            });
            match committed {
                // Its events reach the subscribers through the feed.
                Ok(value) => return Ok(value),
                Err(failed) => {
                    let _ = db.batch("ROLLBACK");
                    // What the cache learnt may rest on rows that rolled back.
                    self.folded.clear();
                    if !matches!(failed, Failure::Fault(Fault::Aborted(_))) {
                        return Err(failed);
                    }
                    tracing::debug!(attempt, "a write was aborted; running it again");
                    std::thread::sleep(Duration::from_millis(u64::from(attempt) * 5));
                }
            }
        }
        Err(Fault::Aborted(format!("{TRIES} times (deadlocks or serialization failures)")).into())
    }
}

/// Runs `f` on `conn`, in a transaction begun by `begin` where given.
fn in_transaction(conn: &PgConn, begin: Option<&str>, f: WorkFn) -> Outcome {
    let db = conn.db();
    let Some(begin) = begin else { return guarded(&db, || f(&db)) };
    db.batch(begin).map_err(|e| failure(&db, e))?;
    match guarded(&db, || f(&db)) {
        Ok(value) => db.batch("COMMIT").map(|()| value).map_err(|e| failure(&db, e)),
        Err(failed) => {
            let _ = db.batch("ROLLBACK");
            Err(failed)
        }
    }
}
