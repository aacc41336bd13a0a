//! /api/v1/assignments: the work queue.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiResult;
use super::extract::{JsonBody, Listing, PageParams, Path, Query, Validate};
use super::settings::Limits;
use super::state::AppState;
use super::telemetry::Observed;
use crate::domain::named::Named as _;
use crate::domain::status::AssignmentStatus;
use crate::domain::types::Assignment;
use crate::domain::validate::{self, TextSchema};
use crate::domain::{DomainError, Result};
use crate::store::assignments::{self, Filter, Submission};
use crate::store::refs;
use crewship_wire::requests::CreateAssignment;

/// An assignment named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AssignmentPath {
    /// The assignment's id.
    id: String,
}

impl Validate for CreateAssignment {
    fn validate(&self, limits: &Limits) -> Result<()> {
        validate::text("task", &self.task, TextSchema::MAX)?;
        let limit = limits.max_task_bytes;
        if self.task.len() > limit {
            return Err(DomainError::invalid(format!("task is over {limit} bytes (CREWSHIP_MAX_TASK_BYTES)")));
        }
        Ok(())
    }
}

/// Queue work for an agent.
#[utoipa::path(post, path = "/assignments", tag = "assignments", request_body = CreateAssignment, responses(
    (status = 201, description = "The new assignment, queued", body = Assignment),
))]
pub async fn create(
    State(app): State<AppState>,
    Extension(observed): Extension<Arc<Observed>>,
    JsonBody(b): JsonBody<CreateAssignment>,
) -> ApiResult<(StatusCode, Json<Assignment>)> {
    // The caller's context: the runs' traces link to it.
    let link = observed.incoming().map(|c| c.header());
    let submission =
        Submission { crew: b.crew, agent: b.agent, assigned_by: b.assigned_by, task: b.task, trace_link: link };
    let row = app.store.write(move |tx| assignments::submit(tx, submission)).await?;
    Ok((StatusCode::CREATED, Json(row.to_api())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this crew's (id or slug).
    crew: Option<String>,
    /// Only those in this status.
    #[param(value_type = Option<AssignmentStatus>, inline)]
    status: Option<String>,
}

/// List assignments, newest first.
#[utoipa::path(get, path = "/assignments", tag = "assignments", params(PageParams, ListQuery), responses(
    (status = 200, description = "A page of assignments", body = Listing<Assignment>),
))]
pub async fn list(
    State(app): State<AppState>,
    Query(page): Query<PageParams>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Listing<Assignment>>> {
    let page = page.request()?;
    let status = q.status.as_deref().map(|s| AssignmentStatus::parse_field("status", s)).transpose()?;
    let crew = q.crew;
    let list = app
        .store
        .read(move |c| {
            let crew_id = crew.map(|k| refs::crew_in_history(c, &k)).transpose()?;
            assignments::list(c, &Filter { crew_id, status }, page)
        })
        .await?;
    Ok(Json(list.into()))
}

/// Get an assignment.
#[utoipa::path(get, path = "/assignments/{id}", tag = "assignments", params(AssignmentPath), responses(
    (status = 200, description = "The assignment", body = Assignment),
))]
pub async fn get(
    State(app): State<AppState>,
    Path(AssignmentPath { id: key }): Path<AssignmentPath>,
) -> ApiResult<Json<Assignment>> {
    Ok(Json(app.store.read(move |c| assignments::get(c, &key)).await?.to_api()))
}

/// Cancel an assignment: a queued one at once, a running one once its
/// process is stopped; cancelling a cancelled one changes nothing.
#[utoipa::path(post, path = "/assignments/{id}/cancel", tag = "assignments", params(AssignmentPath), responses(
    (status = 200, description = "The assignment, cancelled", body = Assignment),
    (status = 409, description = "It already completed or failed"),
))]
pub async fn cancel(
    State(app): State<AppState>,
    Path(AssignmentPath { id: key }): Path<AssignmentPath>,
) -> ApiResult<Json<Assignment>> {
    let row = app.store.read(move |c| assignments::get(c, &key)).await?;
    let row = app.runtime.cancel_assignment(row.id, "cancelled by request").await?;
    Ok(Json(row.to_api()))
}
