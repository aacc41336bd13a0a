//! GET /api/v1/status: what `crewship doctor` checks that only the daemon
//! knows: where it listens, whether remote scrapers need a token it has,
//! its data dir's free space, and the container engine its docker crews need.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiResult;
use super::state::AppState;
use crate::store::{self, crews};

/// How long the engine may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn get(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let docker_crews = app.store.read(crews::count_in_containers).await?;
    let engine = app.crew_containers.engine();
    let ping = match tokio::time::timeout(PING_TIMEOUT, engine.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {PING_TIMEOUT:?}")),
    };
    let c = &app.config;
    Ok(Json(json!({
        "service": "crewshipd",
        "version": env!("CARGO_PKG_VERSION"),
        "listen": {
            "host": c.listen.host.to_string(),
            "beyond_loopback": !c.listen.host.is_loopback(),
        },
        "metrics": { "token_set": c.metrics.token.is_some(), "allow_loopback": c.metrics.allow_loopback },
        "data_dir": { "path": c.database.data_dir.display().to_string(), "free_bytes": store::free_bytes(&c.database.data_dir) },
        "docker": { "crews": docker_crews, "reachable": ping.is_none(), "error": ping },
    })))
}
