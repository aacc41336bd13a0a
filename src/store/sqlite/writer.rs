//! The writer: one thread owns the only write connection and commits in
//! groups. Operations queued while a transaction is open join the next one,
//! each inside its own SAVEPOINT, so a failing operation rolls back alone
//! while the rest share one commit. Nothing is acknowledged, and no event
//! is published, before the commit that holds it.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::domain::event::Event;
use crate::domain::{DomainError, Result, time};
use crate::store::counters::{self, Pending};
use crate::store::sql::Db;
use crate::store::tx::{ExclusiveFn, Tx, Value, WriteFn};

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
    Write(WriteFn, oneshot::Sender<Result<Value>>),
    /// Runs alone in a transaction of its own, between groups (the
    /// start-up recount, maintenance).
    Exclusive(ExclusiveFn, oneshot::Sender<Result<Value>>),
    /// Flushes the WAL into the main file (shutdown).
    Checkpoint(oneshot::Sender<Result<Value>>),
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
                    Job::Write(f, reply) => group.push((f, reply)),
                    Job::Exclusive(f, reply) => {
                        self.commit_group(std::mem::take(&mut group));
                        let _ = reply.send(self.exclusive(f));
                    }
                    Job::Checkpoint(reply) => {
                        self.commit_group(std::mem::take(&mut group));
                        let done = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
                        let _ = reply.send(done.map(|()| Box::new(()) as Value).map_err(DomainError::from));
                    }
                }
                if group.len() < MAX_GROUP {
                    next = jobs.try_recv().ok();
                }
            }
            self.commit_group(std::mem::take(&mut group));
        }
    }

    fn exclusive(&mut self, f: ExclusiveFn) -> Result<Value> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = catch_unwind(AssertUnwindSafe(|| f(&Db::sqlite(&tx))))
            .unwrap_or_else(|_| Err(DomainError::internal("maintenance task panicked")))?;
        tx.commit()?;
        Ok(value)
    }

    fn commit_group(&mut self, group: Vec<(WriteFn, oneshot::Sender<Result<Value>>)>) {
        if group.is_empty() {
            return;
        }
        let tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = DomainError::from(e);
                for (_, reply) in group {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
        };
        // An operation alone in its transaction needs no savepoint: the
        // transaction itself rolls back if it fails.
        let alone = group.len() == 1;
        let (open, release, undo) =
            if alone { ("", "", "") } else { ("SAVEPOINT op", "RELEASE op", "ROLLBACK TO op; RELEASE op") };
        let mut done = Vec::with_capacity(group.len());
        let mut counted = Pending::default();
        let mut group = group.into_iter();
        for (mut f, reply) in group.by_ref() {
            if let Err(e) = tx.execute_batch(open) {
                let _ = reply.send(Err(e.into()));
                continue;
            }
            let mut op = Tx::new(Db::sqlite(&tx), time::now_ms(), self.counting, 0, &mut self.folded);
            let result = catch_unwind(AssertUnwindSafe(|| f(&mut op)))
                .unwrap_or_else(|_| Err(DomainError::internal("write operation panicked")));
            let (events, pending) = (op.events, op.pending);
            let closed = match &result {
                Ok(_) => tx.execute_batch(release),
                Err(_) => tx.execute_batch(undo),
            };
            if let Err(e) = closed {
                // The transaction's state is unknown: give up the group
                // (dropping `tx` rolls it back) rather than commit it.
                self.folded.clear();
                let e = DomainError::from(e);
                let pending = group.map(|(_, reply)| reply);
                for reply in done.into_iter().map(|(reply, _, _)| reply).chain(std::iter::once(reply)).chain(pending) {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            match result {
                Ok(value) => {
                    counted.merge(pending);
                    done.push((reply, value, events));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    if alone {
                        // Dropping `tx` rolls the failed operation back.
                        return;
                    }
                }
            }
        }
        match counters::write(&Db::sqlite(&tx), counted, 0).and_then(|()| tx.commit().map_err(DomainError::from)) {
            Ok(()) => {
                for (reply, value, events) in done {
                    for event in events {
                        // No subscribers is fine: nobody is listening yet.
                        let _ = self.events.send(Arc::new(event));
                    }
                    let _ = reply.send(Ok(value));
                }
            }
            Err(e) => {
                // What the cache learnt may rest on rows that just rolled back.
                self.folded.clear();
                for (reply, _, _) in done {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
