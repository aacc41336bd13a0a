//! The middleware in front of every /api/v1 route: the gate's checks
//! (`api::gate`) in order, then the caller in the request's extensions.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiResult;
use super::gate::{self, Caller};
use super::state::AppState;
use super::telemetry::Observed;
use crate::otel;

pub async fn require_api_access(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    match admit(&app, peer, req.headers(), req.method(), &path).await {
        Ok(caller) => {
            if let (Caller::Run(run), Some(observed)) = (&caller, req.extensions().get::<Arc<Observed>>())
                && let Some(trace) = otel::context::trace_id(&run.run_id)
            {
                observed.joins_run(&trace, app.tracer.samples_root(&trace));
            }
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn admit(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> ApiResult<Caller> {
    let g = &app.settings.gate;
    g.check_origin(headers)?;
    gate::check_content_type(headers)?;
    let caller = g.caller(&app.store, peer, headers).await?.ok_or_else(|| g.unauthorized())?;
    if let Caller::Run(run) = &caller
        && !run.may(method, path.strip_prefix("/api/v1").unwrap_or(path))
    {
        return Err(gate::outside_scope());
    }
    Ok(caller)
}
