//! The HTTP surface: every route in one place.

pub mod assignments;
pub mod auth;
pub mod containers;
pub mod crews;
pub mod error;
pub mod extract;
pub mod health;
pub mod inflight;
pub mod journal;
pub mod metrics;
pub mod nodes;
pub mod paymaster;
pub mod pipelines;
pub mod refs;
pub mod runs;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod ws;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use tower_http::compression::CompressionLayer;

use error::ApiError;
use state::AppState;

async fn no_route() -> impl IntoResponse {
    ApiError::no_route()
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this path")
}

pub fn router(app: AppState) -> Router {
    let v1 = Router::new()
        .route("/crews", post(crews::create).get(crews::list))
        .route("/crews/{crew}", get(crews::get).patch(crews::patch).delete(crews::delete))
        .route("/crews/{crew}/agents", post(crews::create_agent).get(crews::list_agents))
        .route(
            "/crews/{crew}/agents/{agent}",
            get(crews::get_agent).patch(crews::patch_agent).delete(crews::delete_agent),
        )
        .route("/assignments", post(assignments::create).get(assignments::list))
        .route("/assignments/{id}", get(assignments::get))
        .route("/assignments/{id}/cancel", post(assignments::cancel))
        .route("/runs", post(runs::start).get(runs::list))
        .route("/runs/{id}", get(runs::get).patch(runs::report))
        .route("/runs/{id}/output", get(runs::output))
        .route("/journal", get(journal::list).post(journal::post))
        .route("/pipelines", post(pipelines::create).get(pipelines::list))
        .route("/pipelines/{pipeline}", get(pipelines::get).delete(pipelines::delete))
        .route("/pipelines/{pipeline}/runs", post(pipelines::start_run))
        .route("/pipeline-runs", get(pipelines::list_runs))
        .route("/pipeline-runs/{id}", get(pipelines::get_run))
        .route("/pipeline-runs/{id}/cancel", post(pipelines::cancel_run))
        .route("/llm-calls", post(paymaster::record))
        .route("/paymaster/spend", get(paymaster::spend))
        .route("/paymaster/rates", get(paymaster::rates))
        .route("/containers", get(containers::list))
        .route("/nodes", get(nodes::list))
        .route("/status", get(status::get))
        .route("/crews/{crew}/container/start", post(containers::start))
        .route("/crews/{crew}/container/stop", post(containers::stop))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // The last layer runs first: the gate, then the body reservation.
        .layer(from_fn_with_state(app.clone(), inflight::hold_body_bytes))
        .layer(from_fn_with_state(app.clone(), auth::require_api_access));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", any(metrics::handler))
        .route("/ws", get(ws::handler))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.config.listen.body_limit))
        .layer(map_response(error::json_errors))
        .layer(CompressionLayer::new().gzip(true))
        .layer(from_fn_with_state(app.clone(), telemetry::observe))
        .with_state(app)
}
