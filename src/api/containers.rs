//! /api/v1/containers: tracked containers and their latest stats; starting
//! and stopping a docker crew's container.

use axum::Json;
use axum::extract::State;

use super::crews::CrewPath;
use super::error::ApiResult;
use super::extract::{Listing, Path};
use super::state::AppState;
use crate::containers::lifecycle::ContainerState;
use crate::containers::registry::Reading;
use crate::store::crews::{self, CrewRow};

/// List the tracked containers with their latest stats sample.
#[utoipa::path(get, path = "/containers", tag = "containers", responses(
    (status = 200, description = "Every tracked container, in one page", body = Listing<Reading>),
))]
pub async fn list(State(app): State<AppState>) -> Json<Listing<Reading>> {
    Json(Listing { items: app.container_stats.readings(), next_cursor: None })
}

async fn live_crew(app: &AppState, key: String) -> ApiResult<CrewRow> {
    Ok(app.store.read(move |c| crews::resolve_live(c, &key)).await?)
}

/// Start a docker crew's container (creating it if it is gone).
#[utoipa::path(post, path = "/crews/{crew}/container/start", tag = "containers", params(CrewPath), responses(
    (status = 200, description = "The container, running", body = ContainerState),
    (status = 409, description = "The crew does not run in a container"),
))]
pub async fn start(State(app): State<AppState>, Path(c): Path<CrewPath>) -> ApiResult<Json<ContainerState>> {
    let crew = live_crew(&app, c.crew).await?;
    Ok(Json(app.crew_containers.start(&crew).await?))
}

/// Stop a docker crew's container.
#[utoipa::path(post, path = "/crews/{crew}/container/stop", tag = "containers", params(CrewPath), responses(
    (status = 200, description = "The container, stopped", body = ContainerState),
    (status = 409, description = "The crew does not run in a container"),
))]
pub async fn stop(State(app): State<AppState>, Path(c): Path<CrewPath>) -> ApiResult<Json<ContainerState>> {
    let crew = live_crew(&app, c.crew).await?;
    Ok(Json(app.crew_containers.stop(&crew).await?))
}
