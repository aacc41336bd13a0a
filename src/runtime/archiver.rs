//! Journal archiving and retention: entries older than the archive age move
//! to the archive, archived entries past retention are deleted, in bounded
//! batches of short transactions so writers never wait long. In a fleet one
//! node sweeps at a time (each batch takes an advisory lock, or leaves the
//! sweep to the node holding it). Counters are untouched: they are running
//! totals, not counts of journal rows.

use std::time::Duration;

use tokio::sync::watch;

use crate::domain::{Result, time};
use crate::store::{Store, journal};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub archive_after: Duration,
    pub retention: Duration,
    pub batch: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub archived: usize,
    pub pruned: usize,
}

fn cutoff(age: Duration) -> i64 {
    time::now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

/// One pass: archive, then prune, batch after batch until nothing is left
/// or a stop is asked for.
pub async fn sweep(store: &Store, p: Policy, stop: &watch::Receiver<bool>) -> Result<Swept> {
    let mut swept = Swept::default();
    let archive_before = cutoff(p.archive_after);
    loop {
        let n = store.write(move |tx| journal::archive_batch(tx, archive_before, p.batch)).await?;
        swept.archived += n;
        if n < p.batch || *stop.borrow() {
            break;
        }
    }
    let prune_before = cutoff(p.retention);
    loop {
        let n = store.write(move |tx| journal::prune_batch(tx, prune_before, p.batch)).await?;
        swept.pruned += n;
        if n < p.batch || *stop.borrow() {
            break;
        }
    }
    Ok(swept)
}

pub async fn run(store: Store, policy: Policy, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        match sweep(&store, policy, &stop).await {
            Ok(s) if s != Swept::default() => {
                tracing::info!(archived = s.archived, pruned = s.pruned, "journal sweep")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "journal sweep failed; retrying next interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
