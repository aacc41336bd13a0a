//! /api/v1/assignments: the work queue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::error::ApiResult;
use super::extract::{JsonBody, Listing, Params, Path, Validate};
use super::refs;
use super::state::AppState;
use super::telemetry::Observed;
use crate::config::Config;
use crate::domain::status::AssignmentStatus;
use crate::domain::types::Assignment;
use crate::domain::{DomainError, Result};
use crate::store::agents;
use crate::store::assignments::{self, Filter};

#[derive(Deserialize)]
pub struct CreateAssignment {
    crew: String,
    agent: String,
    task: String,
    assigned_by: Option<String>,
}

impl Validate for CreateAssignment {
    fn validate(&self, config: &Config) -> Result<()> {
        if self.task.trim().is_empty() {
            return Err(DomainError::invalid("task must not be empty"));
        }
        let limit = config.runner.max_task_bytes;
        if self.task.len() > limit {
            return Err(DomainError::invalid(format!("task is over {limit} bytes (CREWSHIP_MAX_TASK_BYTES)")));
        }
        Ok(())
    }
}

pub async fn create(
    State(app): State<AppState>,
    Extension(observed): Extension<Arc<Observed>>,
    JsonBody(b): JsonBody<CreateAssignment>,
) -> ApiResult<(StatusCode, Json<Assignment>)> {
    // The caller's context: the runs' traces link to it.
    let link = observed.incoming().map(|c| c.header());
    let row = app
        .store
        .write(move |tx| {
            let crew = refs::crew(tx, &b.crew)?;
            let agent = agents::resolve_for_work(tx, &crew, &b.agent)?;
            let by = b.assigned_by.map(|k| agents::resolve_for_work(tx, &crew, &k)).transpose()?;
            assignments::create(tx, &crew, &agent, by.as_ref(), &b.task, None, link)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(row.to_api())))
}

pub async fn list(State(app): State<AppState>, params: Params) -> ApiResult<Json<Listing<Assignment>>> {
    let page = params.page()?;
    let status = params
        .get("status")
        .map(|s| {
            AssignmentStatus::parse(s).ok_or_else(|| {
                DomainError::invalid("status must be one of pending, queued, running, completed, failed, cancelled")
            })
        })
        .transpose()?;
    let crew = params.get("crew").map(str::to_string);
    let list = app
        .store
        .read(move |c| {
            let crew_id = crew.map(|k| refs::crew_in_history(c, &k)).transpose()?;
            assignments::list(c, &Filter { crew_id, status }, page)
        })
        .await?;
    Ok(Json(list.into()))
}

pub async fn get(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Assignment>> {
    Ok(Json(app.store.read(move |c| assignments::get(c, &key)).await?.to_api()))
}

/// Queued → cancelled; running → the process is stopped, then cancelled;
/// already cancelled → no-op; completed or failed → 409.
pub async fn cancel(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Assignment>> {
    let row = app.store.read(move |c| assignments::get(c, &key)).await?;
    let row = app.runtime.cancel_assignment(row, "cancelled by request").await?;
    Ok(Json(row.to_api()))
}
