//! /api/v1/containers: tracked containers and their latest stats; starting
//! and stopping a docker crew's container.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiResult;
use super::extract::Path;
use super::state::AppState;
use crate::containers::lifecycle::ContainerState;
use crate::store::crews::{self, CrewRow};

pub async fn list(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "items": app.container_stats.samples(), "next_cursor": null }))
}

async fn live_crew(app: &AppState, key: String) -> ApiResult<CrewRow> {
    Ok(app.store.read(move |c| crews::resolve_live(c, &key)).await?)
}

pub async fn start(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<ContainerState>> {
    let crew = live_crew(&app, key).await?;
    Ok(Json(app.crew_containers.start(&crew).await?))
}

pub async fn stop(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Json<ContainerState>> {
    let crew = live_crew(&app, key).await?;
    Ok(Json(app.crew_containers.stop(&crew).await?))
}
