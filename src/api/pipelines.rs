//! /api/v1/pipelines, and starting a run of one (its runs: `pipeline_runs`).

use std::collections::{HashMap, HashSet};
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
use crate::domain::ids::Kind;
use crate::domain::status::PipelineRunStatus;
use crate::domain::template::{self, Ref};
use crate::domain::types::{Pipeline, PipelineRun, StepSpec};
use crate::domain::validate::TextSchema;
use crate::domain::{DomainError, Result, validate};
use crate::store::pipelines;
use crewship_wire::requests::{CreatePipeline, RunPipeline};

/// A pipeline named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PipelinePath {
    /// The pipeline's slug or id.
    slug: String,
}

impl Validate for CreatePipeline {
    fn validate(&self, limits: &Limits) -> Result<()> {
        validate::slug(&self.slug, Kind::Pipeline)?;
        validate::name(&self.name)?;
        validate::at_least_one("max_concurrent_runs", self.max_concurrent_runs.unwrap_or(1))?;
        check_steps(&self.steps, limits.max_pipeline_steps)
    }
}

/// Steps within the bound, ids unique, templates well-formed, step
/// outputs only from earlier steps.
fn check_steps(steps: &[StepSpec], max_steps: usize) -> Result<()> {
    if steps.is_empty() {
        return Err(DomainError::invalid("a pipeline needs at least one step"));
    }
    if steps.len() > max_steps {
        return Err(DomainError::invalid(format!(
            "a pipeline may have at most {max_steps} steps (CREWSHIP_MAX_PIPELINE_STEPS)"
        )));
    }
    let mut seen = HashSet::new();
    for step in steps {
        if validate::trimmed(&step.id).is_empty() || step.id.contains(['.', '{', '}']) {
            return Err(DomainError::invalid(format!("step id {:?} must be non-empty, without . {{ }}", step.id)));
        }
        validate::text(&format!("step {:?}'s task", step.id), &step.task, TextSchema::MAX)?;
        for r in template::references(&step.task)? {
            if let Ref::StepOutput(id) = r
                && !seen.contains(id.as_str())
            {
                return Err(DomainError::invalid(format!(
                    "step {:?} uses the output of {id:?}, which is not an earlier step",
                    step.id
                )));
            }
        }
        if !seen.insert(step.id.as_str()) {
            return Err(DomainError::invalid(format!("step id {:?} is used twice", step.id)));
        }
    }
    Ok(())
}

/// Create a pipeline.
#[utoipa::path(post, path = "/pipelines", tag = "pipelines", request_body = CreatePipeline, responses(
    (status = 201, description = "The new pipeline", body = Pipeline),
    (status = 409, description = "A live pipeline has this slug"),
))]
pub async fn create(
    State(app): State<AppState>,
    JsonBody(b): JsonBody<CreatePipeline>,
) -> ApiResult<(StatusCode, Json<Pipeline>)> {
    let max = b.max_concurrent_runs.unwrap_or(1);
    let pipeline = app.store.write(move |tx| pipelines::create(tx, b.slug, b.name, max, b.steps)).await?;
    Ok((StatusCode::CREATED, Json(pipeline.to_api())))
}

/// List live pipelines, oldest first.
#[utoipa::path(get, path = "/pipelines", tag = "pipelines", params(PageParams), responses(
    (status = 200, description = "A page of pipelines", body = Listing<Pipeline>),
))]
pub async fn list(State(app): State<AppState>, Query(page): Query<PageParams>) -> ApiResult<Json<Listing<Pipeline>>> {
    let page = page.request()?;
    Ok(Json(app.store.read(move |c| pipelines::list(c, page)).await?.into()))
}

/// Get a pipeline.
#[utoipa::path(get, path = "/pipelines/{slug}", tag = "pipelines", params(PipelinePath), responses(
    (status = 200, description = "The pipeline", body = Pipeline),
))]
pub async fn get(
    State(app): State<AppState>,
    Path(PipelinePath { slug: key }): Path<PipelinePath>,
) -> ApiResult<Json<Pipeline>> {
    Ok(Json(app.store.read(move |c| pipelines::resolve(c, &key)).await?.to_api()))
}

/// Delete a pipeline (softly); its queued and running runs are cancelled.
#[utoipa::path(delete, path = "/pipelines/{slug}", tag = "pipelines", params(PipelinePath), responses(
    (status = 200, description = "The pipeline, deleted", body = Pipeline),
))]
pub async fn delete(
    State(app): State<AppState>,
    Path(PipelinePath { slug: key }): Path<PipelinePath>,
) -> ApiResult<Json<Pipeline>> {
    Ok(Json(app.runtime.delete_pipeline(key).await?.to_api()))
}

impl Validate for RunPipeline {}

/// Run a pipeline, or with `dry_run` only render its steps.
#[utoipa::path(post, path = "/pipelines/{slug}/runs", tag = "pipelines", params(PipelinePath), request_body = RunPipeline, responses(
    (status = 201, description = "The run: running, queued or dry_run", body = PipelineRun),
))]
pub async fn start_run(
    State(app): State<AppState>,
    Extension(observed): Extension<Arc<Observed>>,
    Path(PipelinePath { slug: key }): Path<PipelinePath>,
    JsonBody(b): JsonBody<RunPipeline>,
) -> ApiResult<(StatusCode, Json<PipelineRun>)> {
    let inputs = b.inputs.unwrap_or_default();
    let dry_run = b.dry_run.unwrap_or(false);
    let limit = app.settings.limits.max_task_bytes;
    let pipeline = app.store.read(move |c| pipelines::resolve(c, &key)).await?;
    // Rendering catches missing inputs and oversized tasks before anything
    // is written, and it runs here, not in the writer: a big template must
    // never hold up every other write.
    let (pipeline, inputs, rendered) = tokio::task::spawn_blocking(move || {
        let rendered: Result<Vec<String>> = pipeline
            .steps
            .iter()
            .map(|s| template::render_step(&s.id, &s.task, &inputs, &HashMap::new(), limit))
            .collect();
        (pipeline, inputs, rendered)
    })
    .await
    .map_err(DomainError::internal)?;
    let rendered = rendered?;
    let link = observed.incoming().map(|c| c.header());
    let run = app.store.write(move |tx| pipelines::create_run(tx, &pipeline, inputs, dry_run, rendered, link)).await?;
    if run.status == PipelineRunStatus::Running {
        app.runtime.pipeline_run_started(run.id);
    }
    Ok((StatusCode::CREATED, Json(run.to_api())))
}
