//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
    /// Always `crewshipd`.
    service: &'static str,
    version: &'static str,
    uptime_seconds: f64,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses(
    (status = 200, description = "Alive", body = Health),
))]
pub async fn healthz(State(app): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        service: "crewshipd",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: app.started.elapsed().as_secs_f64(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ok` or `unavailable`.
    status: &'static str,
    checks: Checks,
}

#[derive(Serialize, ToSchema)]
struct Checks {
    /// `ok`, or why the store cannot commit a write.
    db: String,
}

/// Readiness: a write can commit (see `Store::ready`).
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Not ready, and why", body = Ready),
))]
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Ready>) {
    match app.store.ready().await {
        Ok(_) => (StatusCode::OK, Json(Ready { status: "ok", checks: Checks { db: "ok".into() } })),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready { status: "unavailable", checks: Checks { db: e.to_string() } }),
        ),
    }
}
