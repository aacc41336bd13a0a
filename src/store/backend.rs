//! The seam between the store and a database: what a backend provides
//! (`Backend`), the jobs its threads run, how a job ends (`Outcome`), and
//! the one bounded queue through which jobs reach those threads.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use super::fault::Fault;
use super::sql::Db;
use super::tx::Tx;
use crate::domain::{DomainError, Result};

/// What a job hands back, typed again by `Store`.
pub(super) type Value = Box<dyn Any + Send>;
/// A write operation: run again if its transaction is aborted.
pub(super) type WriteFn = Box<dyn FnMut(&mut Tx<'_>) -> Result<Value> + Send>;
/// Work on one connection: a read, or maintenance in a transaction of its
/// own.
pub(super) type WorkFn = Box<dyn FnOnce(&Db<'_>) -> Result<Value> + Send>;

/// Why a job did not succeed.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The operation refused (a rule it enforces), or the daemon could not
    /// run it (a full queue, a bug).
    Refused(DomainError),
    /// The database failed.
    Fault(Fault),
}

pub(super) type Outcome = std::result::Result<Value, Failure>;
pub(super) type Answer = oneshot::Sender<Outcome>;
pub(super) type Pending<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A database the store keeps its data in. The store calls it once an
/// operation, so a trait object costs nothing measurable beside the
/// thread hop every job takes.
pub(super) trait Backend: Send + Sync {
    /// The database, for the log (never a password).
    fn describe(&self) -> String;
    /// The directory whose free space the database grows into, where this
    /// node can see it.
    fn disk(&self) -> Option<&Path>;
    /// Whether other nodes may commit beside this one.
    fn shared(&self) -> bool;
    /// Runs `f` atomically, with other writes or alone; answers once
    /// committed, its events published.
    fn write(&self, f: WriteFn) -> Pending<'_>;
    /// Runs `f` in a transaction of its own.
    fn exclusive(&self, f: WorkFn) -> Pending<'_>;
    /// Runs `f` on a read connection, in one snapshot when `consistent`.
    fn read(&self, consistent: bool, f: WorkFn) -> Pending<'_>;
    /// Makes what is committed durable in the main database file, where
    /// that is a separate step (shutdown).
    fn checkpoint(&self) -> Pending<'_>;
}

/// The bounded queue in front of a backend's threads: a job that finds it
/// full is refused at once (503, retry) instead of waiting without bound.
pub(super) struct Queue<J> {
    jobs: mpsc::Sender<J>,
}

impl<J: Send> Queue<J> {
    pub fn bounded(capacity: usize) -> (Queue<J>, mpsc::Receiver<J>) {
        let (jobs, queue) = mpsc::channel(capacity.max(1));
        (Queue { jobs }, queue)
    }

    /// Queues the job that `job` makes with its answer, and waits for it.
    pub async fn submit(&self, job: impl FnOnce(Answer) -> J) -> Outcome {
        let stopped = || Failure::Refused(DomainError::Unavailable("the store's database threads have stopped".into()));
        let (answer, reply) = oneshot::channel();
        self.jobs.try_send(job(answer)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Failure::Refused(DomainError::Unavailable(
                "too many operations are waiting for the database; retry shortly".into(),
            )),
            mpsc::error::TrySendError::Closed(_) => stopped(),
        })?;
        reply.await.map_err(|_| stopped())?
    }
}

/// Runs `f`, which works on `db`: a panic is a failure of the job alone,
/// and a failure is the database's fault where `db` saw one.
pub(super) fn guarded<T>(db: &Db<'_>, f: impl FnOnce() -> Result<T>) -> std::result::Result<T, Failure> {
    db.take_fault();
    let result =
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(DomainError::internal("a store job panicked")));
    result.map_err(|e| failure(db, e))
}

/// An error of work on `db`: the database's fault where `db` saw one.
pub(super) fn failure(db: &Db<'_>, e: DomainError) -> Failure {
    match db.take_fault() {
        Some(fault) => Failure::Fault(fault),
        None => Failure::Refused(e),
    }
}

impl From<Fault> for Failure {
    fn from(fault: Fault) -> Failure {
        Failure::Fault(fault)
    }
}
