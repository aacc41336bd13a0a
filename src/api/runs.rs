//! /api/v1/runs: runs reported by their owners, and every run's record.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::error::ApiResult;
use super::extract::{JsonBody, Listing, Params, Path, Validate};
use super::refs;
use super::state::AppState;
use crate::config::Config;
use crate::domain::named::{Named as _, must_be_one_of};
use crate::domain::status::RunStatus;
use crate::domain::types::Run;
use crate::domain::{DomainError, Result};
use crate::store::runs::{self, Filter, NewRun};

#[derive(Deserialize)]
pub struct StartRun {
    crew: Option<String>,
    agent: Option<String>,
    trigger: Option<String>,
}

impl Validate for StartRun {}

/// Newest first, by crew and status.
pub async fn list(State(app): State<AppState>, params: Params) -> ApiResult<Json<Listing<Run>>> {
    let page = params.page()?;
    let status = params.get("status").map(|s| RunStatus::parse_field("status", s)).transpose()?;
    let crew = params.get("crew").map(str::to_string);
    let list = app
        .store
        .read(move |c| {
            let crew_id = crew.map(|k| refs::crew_in_history(c, &k)).transpose()?;
            runs::list(c, &Filter { crew_id, status }, page)
        })
        .await?;
    Ok(Json(list.into()))
}

pub async fn start(State(app): State<AppState>, JsonBody(b): JsonBody<StartRun>) -> ApiResult<(StatusCode, Json<Run>)> {
    let run = app
        .store
        .write(move |tx| {
            let (crew, agent) = refs::scope(tx, b.crew.as_deref(), b.agent.as_deref())?;
            let new = NewRun { crew, agent, assignment_id: None, trigger: b.trigger, managed: false, node: None };
            runs::start(tx, new)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run.to_api())))
}

#[derive(Deserialize)]
pub struct ReportRun {
    status: String,
    error: Option<String>,
}

impl ReportRun {
    /// One of the terminal statuses.
    fn status(&self) -> Result<RunStatus> {
        RunStatus::parse(&self.status).filter(|s| s.is_terminal()).ok_or_else(|| {
            let terminal = RunStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.as_str());
            DomainError::invalid(must_be_one_of("status", terminal))
        })
    }
}

impl Validate for ReportRun {
    fn validate(&self, _: &Config) -> Result<()> {
        self.status().map(drop)
    }
}

/// A terminal report; repeats return the first outcome and write nothing.
pub async fn report(
    State(app): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ReportRun>,
) -> ApiResult<Json<Run>> {
    let status = b.status()?;
    let run = app.store.write(move |tx| runs::report(tx, &id, status, b.error)).await?;
    Ok(Json(run.to_api()))
}

pub async fn get(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Run>> {
    Ok(Json(app.store.read(move |c| runs::get(c, &id)).await?.to_api()))
}

/// Captured output: live while the run executes, stored once it ends.
pub async fn output(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
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
