//! One WebSocket connection: authentication, subscriptions, and the event
//! stream. A client that cannot keep up is dropped; it never slows others.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::app::{App, AppState};
use crate::domain::event::{Channel, Event};
use crate::domain::time;
use crate::{bearer, clientip};

/// A frame that cannot be written in this long means the client stopped
/// reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Close codes (RFC 6455): going away, policy violation, try again later.
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;
const TOO_SLOW: u16 = 1013;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientFrame {
    Auth { token: String },
    Subscribe { channels: Vec<String> },
    Unsubscribe { channels: Vec<String> },
    Ping,
}

pub async fn handler(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let client = app.config.trusted_proxies.client_ip(peer, &headers);
    let authed = clientip::is_loopback(client) || bearer::matches(&headers, app.config.api_token.as_deref());
    // Clients send only small control frames; small buffers keep an idle
    // connection cheap (the defaults reserve 128 KiB each way).
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| session(app, socket, authed))
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// A browser's alternative to the header: `{"type":"auth","token":…}` as
/// the first frame, within the configured time.
async fn first_frame_auth(app: &App, socket: &mut WebSocket) -> bool {
    let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(app.config.ws_auth_timeout, socket.recv()).await else {
        return false;
    };
    match serde_json::from_str::<ClientFrame>(&t) {
        Ok(ClientFrame::Auth { token }) => bearer::token_eq(&token, app.config.api_token.as_deref()),
        _ => false,
    }
}

fn valid_channel(c: &str) -> bool {
    Channel::parse(c).is_some() || c.strip_prefix("crew:").is_some_and(|slug| !slug.is_empty())
}

/// The subscribed channel an event is delivered on, if any: its own
/// channel first, then its crew's.
fn route(subs: &BTreeSet<String>, e: &Event) -> Option<String> {
    if let Some(c) = e.channel.filter(|c| subs.contains(c.as_str())) {
        return Some(c.as_str().to_string());
    }
    let crew = format!("crew:{}", e.crew.as_deref()?);
    subs.contains(&crew).then_some(crew)
}

async fn session(app: AppState, mut socket: WebSocket, authed: bool) {
    if !authed {
        if !first_frame_auth(&app, &mut socket).await {
            return close(socket, POLICY, "authentication required").await;
        }
        if socket.send(text(json!({ "type": "auth_ok" }))).await.is_err() {
            return;
        }
    }
    let _slot = app.hub.connect();
    let closing = app.hub.closing();
    let mut events = app.store.subscribe();
    let mut subs: BTreeSet<String> = BTreeSet::new();
    let closed = until_closed(closing);
    tokio::pin!(closed);
    loop {
        let outgoing = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => reply(&mut subs, &t),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            event = events.recv() => match event {
                Ok(e) => match route(&subs, &e) {
                    Some(channel) => json!({ "type": e.kind, "channel": channel, "ts": time::rfc3339(e.ts), "data": e.data }),
                    None => continue,
                },
                Err(RecvError::Lagged(_)) => return close(socket, TOO_SLOW, "too slow: events were dropped").await,
                Err(RecvError::Closed) => return close(socket, GOING_AWAY, "server shutting down").await,
            },
            _ = &mut closed => return close(socket, GOING_AWAY, "server shutting down").await,
        };
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(text(outgoing))).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

async fn until_closed(mut closing: tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// The answer to a client frame.
fn reply(subs: &mut BTreeSet<String>, frame: &str) -> serde_json::Value {
    match serde_json::from_str::<ClientFrame>(frame) {
        Ok(ClientFrame::Ping) => json!({ "type": "pong" }),
        Ok(ClientFrame::Auth { .. }) => json!({ "type": "auth_ok" }),
        Ok(ClientFrame::Subscribe { channels }) | Ok(ClientFrame::Unsubscribe { channels })
            if channels.iter().any(|c| !valid_channel(c)) =>
        {
            let bad: Vec<&String> = channels.iter().filter(|c| !valid_channel(c)).collect();
            json!({ "type": "error", "message": format!("unknown channels: {bad:?}") })
        }
        Ok(ClientFrame::Subscribe { channels }) => {
            subs.extend(channels);
            json!({ "type": "subscribed", "channels": subs })
        }
        Ok(ClientFrame::Unsubscribe { channels }) => {
            for c in &channels {
                subs.remove(c);
            }
            json!({ "type": "subscribed", "channels": subs })
        }
        Err(e) => json!({ "type": "error", "message": format!("bad frame: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_prefers_the_event_channel() {
        let e = Event::new("assignment.queued", Channel::Assignments, Some("alpha".into()), &json!({}));
        let mut subs = BTreeSet::new();
        assert_eq!(route(&subs, &e), None);
        subs.insert("crew:alpha".to_string());
        assert_eq!(route(&subs, &e).as_deref(), Some("crew:alpha"));
        subs.insert("assignments".to_string());
        assert_eq!(route(&subs, &e).as_deref(), Some("assignments"));
        let crew_only = Event::on("crew.updated", None, Some("alpha".into()), &json!({}));
        assert_eq!(route(&subs, &crew_only).as_deref(), Some("crew:alpha"));
        assert!(valid_channel("crew:x") && !valid_channel("crew:") && !valid_channel("nope"));
    }
}
