//! GET /ws: the upgrade, behind the same gate as /api/v1 (Origin, token;
//! a browser may send its token as the first frame instead), then the
//! session (`ws::session`).

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::gate;
use super::state::AppState;
use crate::server::ConnectionSlot;
use crate::ws::session::{self, Session};

/// Frames kept for a client's reads, and its largest message: clients send
/// only small control frames, and small buffers keep an idle connection
/// cheap (the defaults reserve 128 KiB each way).
const READ_BUFFER: usize = 4 * 1024;
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

pub async fn handler(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    slot: Option<Extension<ConnectionSlot>>,
    headers: HeaderMap,
) -> Response {
    let admitted = async {
        let g = &app.settings.gate;
        g.check_origin(&headers)?;
        let caller = g.caller(&app.store, peer, &headers).await?;
        gate::refuse_run_callers(&caller)?;
        let ws = upgrade.map_err(|e| {
            ApiError::new(e.status(), "websocket_upgrade_required", format!("/ws needs a WebSocket upgrade: {e}"))
        })?;
        Ok::<_, ApiError>((ws, caller.is_some()))
    };
    let (ws, authed) = match admitted.await {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    let limits = app.settings.ws;
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_outbound_bytes)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| async move {
            // The connection's slot under the cap stays taken while the
            // session lasts.
            let _slot = slot;
            let events = app.store.subscribe();
            let token_matches = |token: &str| app.settings.gate.token_matches(token);
            let session = Session { authed, token_matches, events, limits: limits.session };
            session::run(socket, &app.sessions, session).await
        })
}
