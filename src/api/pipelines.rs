//! /api/v1/pipelines and /api/v1/pipeline-runs.

use std::collections::{HashMap, HashSet};
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
use crate::domain::ids::Kind;
use crate::domain::status::PipelineRunStatus;
use crate::domain::template::{self, Ref};
use crate::domain::types::{Pipeline, PipelineRun, StepSpec};
use crate::domain::{DomainError, Result, validate};
use crate::store::agents;
use crate::store::pipelines::{self, NewPipeline, RunFilter, StoredStep};

#[derive(Deserialize)]
pub struct CreatePipeline {
    slug: String,
    name: String,
    max_concurrent_runs: Option<i64>,
    steps: Vec<StepSpec>,
}

impl Validate for CreatePipeline {
    fn validate(&self, config: &Config) -> Result<()> {
        validate::slug(&self.slug, Kind::Pipeline)?;
        validate::name(&self.name)?;
        validate::at_least_one("max_concurrent_runs", self.max_concurrent_runs.unwrap_or(1))?;
        check_steps(&self.steps, config.runner.max_pipeline_steps)
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
        if step.id.trim().is_empty() || step.id.contains(['.', '{', '}']) {
            return Err(DomainError::invalid(format!("step id {:?} must be non-empty, without . {{ }}", step.id)));
        }
        if step.task.trim().is_empty() {
            return Err(DomainError::invalid(format!("step {:?} has an empty task", step.id)));
        }
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

pub async fn create(
    State(app): State<AppState>,
    JsonBody(b): JsonBody<CreatePipeline>,
) -> ApiResult<(StatusCode, Json<Pipeline>)> {
    let max = b.max_concurrent_runs.unwrap_or(1);
    let pipeline = app
        .store
        .write(move |tx| {
            let steps = b
                .steps
                .into_iter()
                .map(|s| {
                    let crew = refs::crew(tx, &s.crew)?;
                    let agent = agents::resolve_for_work(tx, &crew, &s.agent)?;
                    Ok(StoredStep {
                        id: s.id,
                        crew_id: crew.id,
                        crew: crew.slug,
                        agent_id: agent.id,
                        agent: agent.slug,
                        task: s.task,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            pipelines::insert(tx, NewPipeline { slug: b.slug, name: b.name, max_concurrent_runs: max, steps })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(pipeline.to_api())))
}

pub async fn list(State(app): State<AppState>, params: Params) -> ApiResult<Json<Listing<Pipeline>>> {
    let page = params.page()?;
    Ok(Json(app.store.read(move |c| pipelines::list(c, page)).await?.into()))
}

pub async fn get(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Pipeline>> {
    Ok(Json(app.store.read(move |c| pipelines::resolve(c, &key)).await?.to_api()))
}

/// Soft delete; its queued and running runs are cancelled.
pub async fn delete(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<Pipeline>> {
    let pipeline = app.store.read(move |c| pipelines::resolve(c, &key)).await?;
    app.runtime.delete_pipeline(&pipeline).await?;
    let id = pipeline.id;
    let pipeline = app
        .store
        .read(move |c| pipelines::pipeline_by_id(c, id)?.ok_or_else(|| DomainError::not_found("pipeline", "")))
        .await?;
    Ok(Json(pipeline.to_api()))
}

#[derive(Deserialize)]
pub struct StartRun {
    inputs: Option<serde_json::Map<String, serde_json::Value>>,
    dry_run: Option<bool>,
}

impl Validate for StartRun {}

pub async fn start_run(
    State(app): State<AppState>,
    Extension(observed): Extension<Arc<Observed>>,
    Path(key): Path<String>,
    JsonBody(b): JsonBody<StartRun>,
) -> ApiResult<(StatusCode, Json<PipelineRun>)> {
    let inputs = b.inputs.unwrap_or_default();
    let dry_run = b.dry_run.unwrap_or(false);
    let limit = app.config.runner.max_task_bytes;
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
    let run = app
        .store
        .write(move |tx| {
            // Pipelines never change once created, but one may have been
            // deleted meanwhile.
            let live = pipelines::pipeline_by_id(tx, pipeline.id)?.filter(|p| p.deleted_at.is_none());
            let pipeline = live.ok_or_else(|| DomainError::not_found("pipeline", pipeline.slug))?;
            pipelines::create_run(tx, &pipeline, inputs, dry_run, rendered, link)
        })
        .await?;
    if run.status == PipelineRunStatus::Running {
        app.runtime.pipeline_run_started(run.id);
    }
    Ok((StatusCode::CREATED, Json(run.to_api())))
}

pub async fn list_runs(State(app): State<AppState>, params: Params) -> ApiResult<Json<Listing<PipelineRun>>> {
    let page = params.page()?;
    let status = params
        .get("status")
        .map(|s| {
            PipelineRunStatus::parse(s).ok_or_else(|| {
                DomainError::invalid(
                    "status must be one of queued, running, completed, failed, cancelled, dry_run, interrupted",
                )
            })
        })
        .transpose()?;
    let pipeline = params.get("pipeline").map(str::to_string);
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

pub async fn get_run(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<PipelineRun>> {
    Ok(Json(app.store.read(move |c| pipelines::get_run(c, &key)).await?.to_api()))
}

pub async fn cancel_run(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<PipelineRun>> {
    let run = app.store.read(move |c| pipelines::get_run(c, &key)).await?;
    Ok(Json(app.runtime.cancel_pipeline_run(run, "cancelled by request").await?.to_api()))
}
