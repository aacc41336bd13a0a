//! The dispatcher: accepts pending assignments into their crews' queues and
//! starts queued ones FIFO while each crew is under its budget. It wakes on
//! the events that can free a slot or add work, never on a timer.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::runner::Runner;
use crate::domain::Result;
use crate::domain::event::Event;
use crate::store::assignments::{self, Claimed};
use crate::store::{Store, crews};

/// Claims and queue moves per operation: bounds how long one dispatch
/// holds the writer (and a big savepoint grows slower per statement).
const CLAIM_BATCH: usize = 64;
const QUEUE_BATCH: i64 = 100;

/// Events after which there may be something to start.
fn wakes(e: &Event) -> bool {
    matches!(
        e.kind.as_str(),
        "assignment.pending" | "assignment.completed" | "assignment.failed" | "assignment.cancelled" | "crew.updated"
    )
}

/// Queues pending work and claims what the budgets allow, in one
/// transaction; returns the claims and whether more may remain.
async fn dispatch_batch(store: &Store) -> Result<(Vec<Claimed>, bool)> {
    store
        .write(|tx| {
            let queued = assignments::queue_pending(tx, QUEUE_BATCH)?;
            let mut claimed = Vec::new();
            'crews: for crew_id in assignments::crews_ready(tx)? {
                let Some(crew) = crews::by_id(tx, crew_id)? else {
                    continue;
                };
                while let Some(c) = assignments::claim_next(tx, &crew)? {
                    claimed.push(c);
                    if claimed.len() >= CLAIM_BATCH {
                        break 'crews;
                    }
                }
            }
            let more = queued as i64 == QUEUE_BATCH || claimed.len() >= CLAIM_BATCH;
            Ok((claimed, more))
        })
        .await
}

/// Runs until `stop` changes; it stops only between dispatches, so work it
/// claimed is always handed to the runner.
pub async fn run(
    store: Store,
    runner: Arc<Runner>,
    mut events: broadcast::Receiver<Arc<Event>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        loop {
            match dispatch_batch(&store).await {
                Ok((claimed, more)) => {
                    for c in claimed {
                        runner.start(c);
                    }
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "dispatch failed; retrying on the next event");
                    break;
                }
            }
        }
        // Sleep until something may have changed: a waking event, or a lag
        // (we missed events, so assume one).
        let mut woken = false;
        while !woken {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) => woken = wakes(&e),
                    Err(broadcast::error::RecvError::Lagged(_)) => woken = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.changed() => return,
            }
        }
        // Coalesce a burst of events into one dispatch.
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = events.try_recv() {}
    }
}
