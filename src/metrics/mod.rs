//! GET /metrics: the exposition, its authorization gate and the snapshot
//! cache (METRICS.md).

pub mod exposition;
pub mod families;
pub mod page;
pub mod process;
pub mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::app::{App, AppState};
use crate::{bearer, clientip};
use exposition::Format;
use snapshot::{DbSnapshot, SnapshotCache};

pub struct Metrics {
    pub cache: Arc<SnapshotCache>,
    pub pages: page::Pages,
}

impl Metrics {
    pub fn new(cache: SnapshotCache, live_window: std::time::Duration) -> Metrics {
        Metrics { cache: Arc::new(cache), pages: page::Pages::new(live_window) }
    }
}

/// Loopback true clients (unless switched off) and holders of the metrics
/// token may scrape.
fn authorized(app: &App, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let client = app.config.trusted_proxies.client_ip(peer, headers);
    (app.config.metrics_allow_loopback && clientip::is_loopback(client))
        || bearer::matches(headers, app.config.metrics_token.as_deref())
}

/// Renders the page: live process figures plus the DB block `db`.
pub fn render(app: &App, db: &DbSnapshot, format: Format) -> String {
    let (tracked, reporting) = app.containers.counts();
    let live = families::Live {
        uptime_seconds: app.started.elapsed().as_secs_f64(),
        alive_tasks: process::alive_tasks(),
        alloc: process::allocator(),
        process: process::process(),
        ws_connections: app.hub.connections(),
        containers_tracked: tracked,
        containers_reporting: reporting,
        snapshot_computations: app.metrics.cache.computations(),
    };
    exposition::encode(&families::build(&live, db), &app.config.hostname, format)
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
    let db = app.metrics.cache.get().await;
    let body = app.metrics.pages.get(db, format, gzipped, |db| render(&app, db, format)).await;
    let mut r = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
    // Compressed here, once per page: the compression layer passes it on.
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzipped {
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}
