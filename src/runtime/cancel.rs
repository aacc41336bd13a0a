//! Cancels callers ask for: an assignment, a pipeline run, a deleted
//! pipeline's runs. The store settles the records; this side stops the
//! processes still running.

use super::Runtime;
use super::runner::{Runner, StopReason};
use crate::domain::ids::{self, Kind};
use crate::domain::{DomainError, Result};
use crate::store::Store;
use crate::store::assignments::{self, AssignmentRow, Cancelling};
use crate::store::pipelines::{self, PipelineRow, PipelineRunRow};

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

impl Runtime {
    pub async fn cancel_assignment(&self, id: i64, reason: &str) -> Result<AssignmentRow> {
        cancel_assignment(&self.store, &self.runner, id, reason).await
    }

    pub async fn cancel_pipeline_run(&self, run: PipelineRunRow, reason: &str) -> Result<PipelineRunRow> {
        self.executor.cancel(run, reason).await
    }

    /// Soft-deletes a live pipeline, then cancels its unfinished runs.
    pub async fn delete_pipeline(&self, key: String) -> Result<PipelineRow> {
        let (pipeline, unfinished) = self.store.write(move |tx| pipelines::delete(tx, &key)).await?;
        for run in unfinished {
            match self.executor.cancel(run, "pipeline deleted").await {
                Ok(_) | Err(DomainError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pipeline)
    }
}
