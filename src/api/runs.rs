//! /api/v1/runs: runs reported by their owners, and every run's record.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiResult;
use super::extract::{JsonBody, Listing, PageParams, Path, Query, Validate};
use super::settings::Limits;
use super::state::AppState;
use crate::domain::named::{Named as _, must_be_one_of};
use crate::domain::status::RunStatus;
use crate::domain::types::Run;
use crate::domain::{DomainError, Result};
use crate::store::refs;
use crate::store::runs::{self, Filter};
use crewship_wire::requests::{ReportRun, StartRun};

/// A run named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    /// The run's id (its trace id).
    id: String,
}

impl Validate for StartRun {}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this crew's (id or slug).
    crew: Option<String>,
    /// Only those in this status.
    #[param(value_type = Option<RunStatus>, inline)]
    status: Option<String>,
}

/// List runs, newest first.
#[utoipa::path(get, path = "/runs", tag = "runs", params(PageParams, ListQuery), responses(
    (status = 200, description = "A page of runs", body = Listing<Run>),
))]
pub async fn list(
    State(app): State<AppState>,
    Query(page): Query<PageParams>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Listing<Run>>> {
    let page = page.request()?;
    let status = q.status.as_deref().map(|s| RunStatus::parse_field("status", s)).transpose()?;
    let crew = q.crew;
    let list = app
        .store
        .read(move |c| {
            let crew_id = crew.map(|k| refs::crew_in_history(c, &k)).transpose()?;
            runs::list(c, &Filter { crew_id, status }, page)
        })
        .await?;
    Ok(Json(list.into()))
}

/// Report a run that crewshipd did not start.
#[utoipa::path(post, path = "/runs", tag = "runs", request_body = StartRun, responses(
    (status = 201, description = "The run, running", body = Run),
))]
pub async fn start(State(app): State<AppState>, JsonBody(b): JsonBody<StartRun>) -> ApiResult<(StatusCode, Json<Run>)> {
    let run =
        app.store.write(move |tx| runs::start_reported(tx, b.crew.as_deref(), b.agent.as_deref(), b.trigger)).await?;
    Ok((StatusCode::CREATED, Json(run.to_api())))
}

/// A report's status: one of the terminal ones.
fn reported_status(b: &ReportRun) -> Result<RunStatus> {
    RunStatus::parse(&b.status)
        .filter(|s| s.is_terminal())
        .ok_or_else(|| DomainError::invalid(must_be_one_of("status", crewship_wire::requests::terminal())))
}

impl Validate for ReportRun {
    fn validate(&self, _: &Limits) -> Result<()> {
        reported_status(self).map(drop)
    }
}

/// Report how a run ended; a repeat returns the first outcome and writes
/// nothing.
#[utoipa::path(patch, path = "/runs/{id}", tag = "runs", params(RunPath), request_body = ReportRun, responses(
    (status = 200, description = "The run, ended", body = Run),
    (status = 409, description = "crewshipd runs it, so only crewshipd ends it"),
))]
pub async fn report(
    State(app): State<AppState>,
    Path(RunPath { id }): Path<RunPath>,
    JsonBody(b): JsonBody<ReportRun>,
) -> ApiResult<Json<Run>> {
    let status = reported_status(&b)?;
    let run = app.store.write(move |tx| runs::report(tx, &id, status, b.error)).await?;
    Ok(Json(run.to_api()))
}

/// Get a run.
#[utoipa::path(get, path = "/runs/{id}", tag = "runs", params(RunPath), responses(
    (status = 200, description = "The run", body = Run),
))]
pub async fn get(State(app): State<AppState>, Path(RunPath { id }): Path<RunPath>) -> ApiResult<Json<Run>> {
    Ok(Json(app.store.read(move |c| runs::get(c, &id)).await?.to_api()))
}

/// A run's captured output: live while it executes, stored once it ends.
#[utoipa::path(get, path = "/runs/{id}/output", tag = "runs", params(RunPath), responses(
    (status = 200, description = "Its stdout and stderr as captured", body = String, content_type = "text/plain; charset=utf-8"),
))]
pub async fn output(State(app): State<AppState>, Path(RunPath { id }): Path<RunPath>) -> ApiResult<impl IntoResponse> {
    let text = match app.runtime.live_output(&id) {
        Some(text) => text,
        None => {
            app.store
                .read(move |c| {
                    let run = runs::get(c, &id)?;
                    Ok(runs::output(c, run.pk)?.unwrap_or_default())
                })
                .await?
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
