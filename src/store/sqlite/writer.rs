//! The writer: one thread owns the only write connection and commits in
//! groups. Operations queued while a transaction is open join the next one,
//! each inside its own SAVEPOINT, so a failing operation rolls back alone
//! while the rest share one commit. Nothing is acknowledged, and no event
//! is published, before the commit that holds it.

use std::collections::HashSet;
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, mpsc};

use super::conn::{SqliteConn, fault};
use crate::domain::event::Event;
use crate::store::backend::{Answer, Failure, Value, WorkFn, WriteFn, guarded};
use crate::store::group::{self, answer_all};

/// Operations per transaction, at most: bounds one commit's latency.
const MAX_GROUP: usize = 256;

/// How long the writer polls for the next job before it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The next job: polled for a moment first, since a client that waits for
/// each write sends the next one within microseconds, and a thread woken
/// from sleep costs more than that.
fn next_job(jobs: &mut mpsc::Receiver<Job>) -> Option<Job> {
    let start = std::time::Instant::now();
    while start.elapsed() < SPIN {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    jobs.blocking_recv()
}

pub(super) enum Job {
    /// Runs inside the group's transaction, in its own savepoint.
    Write(WriteFn, Answer),
    /// Runs alone in a transaction of its own, between groups (the
    /// start-up recount, maintenance).
    Exclusive(WorkFn, Answer),
    /// Flushes the WAL into the main file (shutdown).
    Checkpoint(Answer),
}

pub(super) struct Writer {
    pub conn: Connection,
    pub events: broadcast::Sender<Arc<Event>>,
    pub counting: bool,
    pub folded: HashSet<String>,
}

impl Writer {
    /// Serves jobs until every sender is gone.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut group = Vec::new();
        while let Some(first) = next_job(&mut jobs) {
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Write(f, answer) => group.push((f, answer)),
                    Job::Exclusive(f, answer) => {
                        self.commit_group(std::mem::take(&mut group));
                        let _ = answer.send(self.exclusive(f));
                    }
                    Job::Checkpoint(answer) => {
                        self.commit_group(std::mem::take(&mut group));
                        let done = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                        let _ = answer.send(done.map(|()| Box::new(()) as Value).map_err(|e| fault(e).into()));
                    }
                }
                if group.len() < MAX_GROUP {
                    next = jobs.try_recv().ok();
                }
            }
            self.commit_group(std::mem::take(&mut group));
        }
    }

    fn exclusive(&mut self, f: WorkFn) -> Result<Value, Failure> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fault)?;
        let value = {
            let conn = SqliteConn::new(&tx);
            let db = conn.db();
            guarded(&db, || f(&db))?
        };
        tx.commit().map_err(fault)?;
        Ok(value)
    }

    fn commit_group(&mut self, group: Vec<(WriteFn, Answer)>) {
        if group.is_empty() {
            return;
        }
        let tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return answer_all(group.into_iter().map(|(_, a)| a), &fault(e).into()),
        };
        let done = {
            let conn = SqliteConn::new(&tx);
            group::run(&conn.db(), group, self.counting, 0, &mut self.folded)
        };
        // None: nothing to commit, every operation answered; dropping `tx`
        // rolls back.
        let Some(done) = done else {
            // What the cache learnt may rest on rows that roll back.
            self.folded.clear();
            return;
        };
        match tx.commit() {
            Ok(()) => {
                for (answer, value, events) in done {
                    for event in events {
                        // No subscribers is fine: nobody is listening yet.
                        let _ = self.events.send(Arc::new(event));
                    }
                    let _ = answer.send(Ok(value));
                }
            }
            Err(e) => {
                self.folded.clear();
                answer_all(done.into_iter().map(|(answer, _, _)| answer), &fault(e).into());
            }
        }
    }
}
