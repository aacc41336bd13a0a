//! Cancelling an assignment: the store settles the records; this side
//! stops its process where it is still running. (A pipeline run's cancel,
//! and a deleted pipeline's, are the pipeline executor's.)

use super::runner::{Runner, StopReason};
use crate::domain::ids::{self, Kind};
use crate::domain::{DomainError, Result};
use crate::store::Store;
use crate::store::assignments::{self, AssignmentRow, Cancelling};

/// Cancels an assignment: waiting → cancelled; running → its process is
/// stopped first; cancelled → no-op; completed or failed → conflict.
pub async fn cancel_assignment(store: &Store, runner: &Runner, id: i64, reason: &str) -> Result<AssignmentRow> {
    // The dispatcher may claim a queued row meanwhile; we then look again.
    for _ in 0..5 {
        let why = reason.to_string();
        match store.write(move |tx| assignments::cancel(tx, id, &why)).await? {
            Cancelling::Done(row) => return Ok(*row),
            Cancelling::Changed => {}
            Cancelling::Running => {
                if !runner.stop(id, StopReason::Cancel).await {
                    // Not executing here (it ended meanwhile, or its process
                    // is gone): settle the records directly.
                    let why = reason.to_string();
                    store.write(move |tx| assignments::settle_cancelled(tx, id, &why)).await?;
                }
            }
        }
    }
    let id = ids::format(Kind::Assignment, id);
    Err(DomainError::conflict(format!("assignment {id} keeps changing; try again")))
}
