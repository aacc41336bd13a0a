//! The /api/v1 gate: loopback true clients, or the API bearer token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::{bearer, clientip};

pub async fn require_api_access(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let client = app.config.trusted_proxies.client_ip(peer, req.headers());
    if clientip::is_loopback(client) || bearer::matches(req.headers(), app.config.api_token.as_deref()) {
        next.run(req).await
    } else {
        ApiError::unauthorized().into_response()
    }
}
