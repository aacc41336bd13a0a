//! /api/v1/pipeline-runs: the runs of pipelines.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiResult;
use super::extract::{Listing, PageParams, Path, Query};
use super::state::AppState;
use crate::domain::DomainError;
use crate::domain::named::Named as _;
use crate::domain::status::PipelineRunStatus;
use crate::domain::types::PipelineRun;
use crate::store::pipelines::{self, RunFilter};

/// A pipeline run named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunPath {
    /// The pipeline run's id.
    id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs in this status.
    #[param(value_type = Option<PipelineRunStatus>, inline)]
    status: Option<String>,
    /// Only this pipeline's (id or slug).
    pipeline: Option<String>,
}

/// List pipeline runs, newest first.
#[utoipa::path(get, path = "/pipeline-runs", tag = "pipelines", params(PageParams, RunsQuery), responses(
    (status = 200, description = "A page of pipeline runs", body = Listing<PipelineRun>),
))]
pub async fn list_runs(
    State(app): State<AppState>,
    Query(page): Query<PageParams>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Listing<PipelineRun>>> {
    let page = page.request()?;
    let status = q.status.as_deref().map(|s| PipelineRunStatus::parse_field("status", s)).transpose()?;
    let pipeline = q.pipeline;
    let list = app
        .store
        .read(move |c| {
            let pipeline_id = pipeline
                .map(|k| match pipelines::resolve(c, &k) {
                    Err(DomainError::NotFound { .. }) => Err(DomainError::invalid(format!("unknown pipeline {k:?}"))),
                    other => other.map(|p| p.id),
                })
                .transpose()?;
            pipelines::list_runs(c, &RunFilter { status, pipeline_id }, page)
        })
        .await?;
    Ok(Json(list.into()))
}

/// Get a pipeline run with its steps.
#[utoipa::path(get, path = "/pipeline-runs/{id}", tag = "pipelines", params(RunPath), responses(
    (status = 200, description = "The run", body = PipelineRun),
))]
pub async fn get_run(
    State(app): State<AppState>,
    Path(RunPath { id: key }): Path<RunPath>,
) -> ApiResult<Json<PipelineRun>> {
    Ok(Json(app.store.read(move |c| pipelines::get_run(c, &key)).await?.to_api()))
}

/// Cancel a pipeline run and its running step.
#[utoipa::path(post, path = "/pipeline-runs/{id}/cancel", tag = "pipelines", params(RunPath), responses(
    (status = 200, description = "The run, cancelled", body = PipelineRun),
    (status = 409, description = "It already ended"),
))]
pub async fn cancel_run(
    State(app): State<AppState>,
    Path(RunPath { id: key }): Path<RunPath>,
) -> ApiResult<Json<PipelineRun>> {
    let run = app.store.read(move |c| pipelines::get_run(c, &key)).await?;
    Ok(Json(app.runtime.cancel_pipeline_run(run, "cancelled by request").await?.to_api()))
}
