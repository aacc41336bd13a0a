//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::state::AppState;
use crewship_wire::answers::{Checks, Health, Ready};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses(
    (status = 200, description = "Alive", body = Health),
))]
pub async fn healthz(State(app): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        service: "crewshipd".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_seconds: app.started.elapsed().as_secs_f64(),
    })
}

/// Readiness: a write can commit (see `Store::ready`).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready, and why", body = Ready),
))]
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Ready>) {
    match app.store.ready().await {
        Ok(_) => (StatusCode::OK, Json(Ready { status: "ok".into(), checks: Checks { db: "ok".into() } })),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready { status: "unavailable".into(), checks: Checks { db: e.to_string() } }),
        ),
    }
}
