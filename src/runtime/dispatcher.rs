//! The dispatcher: accepts pending assignments into their crews' queues and
//! starts queued ones FIFO while each crew is under its budget. It wakes on
//! the events that can free a slot or add work; only after a failed
//! dispatch (a busy or full database) does it also wake on a timer, so
//! queued work is never stranded until the next event.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::fleet::Membership;
use super::runner::Runner;
use crate::domain::Result;
use crate::domain::event::{Change, Event, EventKind};
use crate::domain::status::AssignmentStatus;
use crate::store::Store;
use crate::store::assignments::{self, Dispatched};
use crate::store::nodes::NodeRef;

/// Claims and queue moves per operation: bounds how long one dispatch
/// holds the writer (and a big savepoint grows slower per statement).
const CLAIM_BATCH: usize = 64;
const QUEUE_BATCH: i64 = 100;
/// The first and the longest wait before a failed dispatch is retried.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a node that may not claim (it is registering again) looks
/// whether it may.
const FENCED_LOOK: Duration = Duration::from_secs(1);
/// When to look again at a crew whose queue another node held: its
/// transaction commits within moments, and may have claimed nothing (so
/// no event would say the crew is free again).
const HELD_LOOK: Duration = Duration::from_millis(20);

/// Events after which there may be something to start.
fn wakes(e: &Event) -> bool {
    use AssignmentStatus::{Cancelled, Completed, Failed, Pending};
    matches!(
        e.kind,
        EventKind::Assignment { status: Pending | Completed | Failed | Cancelled, .. }
            | EventKind::Crew(Change::Updated)
            | EventKind::Resync
    )
}

/// Queues pending work and claims what the budgets allow for `me`.
async fn dispatch_batch(store: &Store, me: NodeRef) -> Result<Dispatched> {
    store.write(move |tx| assignments::dispatch(tx, &me, QUEUE_BATCH, CLAIM_BATCH)).await
}

/// Runs until `stop` changes; it stops only between dispatches, so work it
/// claimed is always handed to the runner.
pub async fn run(
    store: Store,
    runner: Arc<Runner>,
    membership: Arc<Membership>,
    mut events: broadcast::Receiver<Arc<Event>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry: Option<Duration> = None;
    loop {
        let mut held = false;
        while membership.may_claim() {
            match dispatch_batch(&store, membership.me()).await {
                Ok(done) => {
                    retry = None;
                    held = done.held;
                    for c in done.claimed {
                        runner.start(c);
                    }
                    if !done.more {
                        break;
                    }
                }
                Err(e) => {
                    let wait = retry.map_or(RETRY_FIRST, |w| (w * 2).min(RETRY_MAX));
                    tracing::error!(error = %e, retry_in = ?wait, "dispatch failed");
                    retry = Some(wait);
                    break;
                }
            }
        }
        // Sleep until something may have changed: a waking event, a lag (we
        // missed events, so assume one), or a timer: after a failure, while
        // fenced, or while another node held a crew's queue.
        let wait = match (membership.may_claim(), held) {
            (false, _) => Some(FENCED_LOOK),
            (true, true) => Some(HELD_LOOK),
            (true, false) => retry,
        };
        let retry_at = wait.map(|w| tokio::time::Instant::now() + w);
        let mut woken = false;
        while !woken {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) => woken = wakes(&e),
                    Err(broadcast::error::RecvError::Lagged(_)) => woken = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = sleep_until(retry_at) => woken = true,
                _ = membership.requeued() => woken = true,
                _ = stop.changed() => return,
            }
        }
        // Coalesce a burst of events into one dispatch.
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
    }
}

/// Resolves at `at`; never without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
