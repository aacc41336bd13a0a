//! GET /metrics: its authorization gate (METRICS.md §2) and content
//! negotiation; the page itself is `metrics::Metrics`'.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::{App, AppState};
use super::telemetry::Observed;
use crate::bearer;
use crate::metrics::exposition::Format;
use crate::metrics::page;

/// Loopback true clients (unless switched off) and holders of the metrics
/// token may scrape.
fn authorized(app: &App, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let s = &app.settings;
    (s.scrapers.allow_loopback && s.gate.client_on_loopback(peer, headers))
        || bearer::matches(headers, s.scrapers.token.as_deref())
}

/// Every method lands here. Unauthorized: exactly what an unknown path
/// answers, so a scanner learns nothing. Authorized: GET and HEAD only.
pub async fn handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    // The request itself, not a `HeaderMap` extractor: that one copies the
    // headers on every scrape.
    request: axum::extract::Request,
) -> Response {
    let (method, headers) = (request.method(), request.headers());
    if !authorized(&app, peer, headers) {
        if let Some(o) = request.extensions().get::<Arc<Observed>>() {
            o.hide();
        }
        return ApiError::no_route().into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use GET or HEAD").into_response();
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let header_text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let format = Format::negotiate(header_text(header::ACCEPT));
    let gzipped = page::accepts_gzip(header_text(header::ACCEPT_ENCODING));
    let body = app.metrics.page(format, gzipped).await;
    let mut r = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    // Compressed here, once per page: the compression layer passes it on.
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzipped {
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}
