//! GET /api/v1/status: what `crewship doctor` checks that only the daemon
//! knows: where it listens, whether remote scrapers need a token it has,
//! its data dir's free space, and the container engine its docker crews need.

use std::time::Duration;

use axum::Json;
use axum::extract::State;

use super::error::ApiResult;
use super::state::AppState;
use crate::store::{self, crews};
use crewship_wire::answers::{DataDir, Docker, Listen, MetricsAccess, Status};

/// How long the engine may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// What `crewship doctor` checks that only the daemon knows.
#[utoipa::path(get, path = "/status", tag = "health", responses(
    (status = 200, description = "The daemon's side of the checks", body = Status),
))]
pub async fn get(State(app): State<AppState>) -> ApiResult<Json<Status>> {
    let docker_crews = app.store.read(crews::count_in_containers).await?;
    let engine = app.crew_containers.engine();
    let ping = match tokio::time::timeout(PING_TIMEOUT, engine.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {PING_TIMEOUT:?}")),
    };
    let s = &app.settings;
    Ok(Json(Status {
        service: "crewshipd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        listen: Listen { host: s.listen_host.to_string(), beyond_loopback: !s.listen_host.is_loopback() },
        metrics: MetricsAccess { token_set: s.scrapers.token.is_some(), allow_loopback: s.scrapers.allow_loopback },
        data_dir: DataDir { path: s.data_dir.display().to_string(), free_bytes: store::free_bytes(&s.data_dir) },
        docker: Docker { crews: docker_crews, reachable: ping.is_none(), error: ping },
    }))
}
