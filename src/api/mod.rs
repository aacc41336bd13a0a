//! The HTTP surface: every route in one place.

pub mod agents;
pub mod assignments;
pub mod auth;
pub mod containers;
pub mod crews;
pub mod error;
pub mod extract;
pub mod gate;
pub mod health;
pub mod inflight;
pub mod journal;
pub mod llm_calls;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod paymaster;
pub mod pipeline_runs;
pub mod pipelines;
pub mod runs;
pub mod settings;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod ws;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Extension, Router};
use tower_http::compression::CompressionLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use error::ApiError;
use state::AppState;

async fn no_route() -> impl IntoResponse {
    ApiError::no_route()
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this path")
}

pub fn router(app: AppState) -> Router {
    // One `routes!` a path: the path, its methods and their description
    // come from the handlers' annotations.
    let (v1, v1_doc) = OpenApiRouter::new()
        .routes(routes!(crews::create, crews::list))
        .routes(routes!(crews::get, crews::patch, crews::delete))
        .routes(routes!(agents::create_agent, agents::list_agents))
        .routes(routes!(agents::get_agent, agents::patch_agent, agents::delete_agent))
        .routes(routes!(assignments::create, assignments::list))
        .routes(routes!(assignments::get))
        .routes(routes!(assignments::cancel))
        .routes(routes!(runs::start, runs::list))
        .routes(routes!(runs::get, runs::report))
        .routes(routes!(runs::output))
        .routes(routes!(journal::list, journal::post))
        .routes(routes!(pipelines::create, pipelines::list))
        .routes(routes!(pipelines::get, pipelines::delete))
        .routes(routes!(pipelines::start_run))
        .routes(routes!(pipeline_runs::list_runs))
        .routes(routes!(pipeline_runs::get_run))
        .routes(routes!(pipeline_runs::cancel_run))
        .routes(routes!(llm_calls::record))
        .routes(routes!(paymaster::spend))
        .routes(routes!(paymaster::rates))
        .routes(routes!(containers::list))
        .routes(routes!(containers::start))
        .routes(routes!(containers::stop))
        .routes(routes!(nodes::list))
        .routes(routes!(status::get))
        .routes(routes!(openapi::serve))
        .split_for_parts();
    let (outer, outer_doc) =
        OpenApiRouter::new().routes(routes!(health::healthz)).routes(routes!(health::readyz)).split_for_parts();
    let v1 = v1
        .layer(Extension(openapi::finish(v1_doc, outer_doc)))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // The last layer runs first: the gate, then the body reservation.
        .layer(from_fn_with_state(app.clone(), inflight::hold_body_bytes))
        .layer(from_fn_with_state(app.clone(), auth::require_api_access));
    outer
        .nest(openapi::PREFIX, v1)
        .route("/metrics", any(metrics::handler))
        .route("/ws", get(ws::handler))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(app.settings.limits.body_limit))
        .layer(map_response(error::json_errors))
        .layer(CompressionLayer::new().gzip(true))
        .layer(from_fn_with_state(app.clone(), telemetry::observe))
        .with_state(app)
}
