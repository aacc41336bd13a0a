//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::state::AppState;

pub async fn healthz(State(app): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": "crewshipd",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs_f64(),
    }))
}

/// Ready when a write can commit (see `Store::ready`).
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match app.store.ready().await {
        Ok(_) => (StatusCode::OK, Json(json!({ "status": "ok", "checks": { "db": "ok" } }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "checks": { "db": e.to_string() } })),
        ),
    }
}
