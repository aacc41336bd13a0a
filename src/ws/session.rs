//! One WebSocket session: the browser's auth frame, subscriptions, and
//! the event stream. A client that cannot keep up is dropped; it never
//! slows others. (The upgrade itself is `api::ws`.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::Sessions;
use crate::domain::event::{Channel, Event, EventKind};
use crate::domain::time;

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

/// A session's bounds (see the settings of the same names).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub auth_timeout: Duration,
    pub max_channels: usize,
    pub ping_interval: Duration,
}

/// What a session needs from the daemon.
pub struct Session<A> {
    /// Authenticated by the upgrade request; else the first frame must be.
    pub authed: bool,
    /// Whether an auth frame's token is the API token.
    pub token_matches: A,
    pub events: broadcast::Receiver<Arc<Event>>,
    pub limits: Limits,
}

fn text(v: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

/// A browser's alternative to the header: `{"type":"auth","token":…}` as
/// its first frame within the auth timeout. Control frames (a Ping) and a
/// JSON ping before it are answered, not counted as a failed auth.
async fn first_frame_auth(token_matches: impl Fn(&str) -> bool, socket: &mut WebSocket, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, socket.recv()).await else {
            return false;
        };
        let Message::Text(t) = msg else {
            if matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                continue;
            }
            return false;
        };
        match serde_json::from_str::<ClientFrame>(&t) {
            Ok(ClientFrame::Auth { token }) => return token_matches(&token),
            Ok(ClientFrame::Ping) => {
                if socket.send(text(json!({ "type": "pong" }))).await.is_err() {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

fn valid_channel(c: &str) -> bool {
    Channel::parse(c).is_some() || c.strip_prefix("crew:").is_some_and(|slug| !slug.is_empty())
}

/// The subscribed channel an event is delivered on, if any: its own
/// channel first, then its crew's.
fn route(subs: &BTreeSet<String>, e: &Event) -> Option<String> {
    if let Some(c) = e.channel().filter(|c| subs.contains(c.as_str())) {
        return Some(c.as_str().to_string());
    }
    let crew = format!("crew:{}", e.crew.as_deref()?);
    subs.contains(&crew).then_some(crew)
}

/// Serves one session until either side closes it.
pub async fn run<A: Fn(&str) -> bool>(mut socket: WebSocket, sessions: &Sessions, session: Session<A>) {
    let Session { authed, token_matches, mut events, limits } = session;
    if !authed {
        if !first_frame_auth(token_matches, &mut socket, limits.auth_timeout).await {
            return close(socket, POLICY, "authentication required").await;
        }
        if socket.send(text(json!({ "type": "auth_ok" }))).await.is_err() {
            return;
        }
    }
    let _counted = sessions.connect();
    let closing = sessions.closing();
    let mut subs: BTreeSet<String> = BTreeSet::new();
    let closed = until_closed(closing);
    tokio::pin!(closed);
    // A client that sends nothing (not even the pong to our ping) for two
    // intervals is gone: a half-open socket.
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut heard = true;
    loop {
        let outgoing = tokio::select! {
            incoming = socket.recv() => {
                heard = true;
                match incoming {
                    Some(Ok(Message::Text(t))) => text(reply(&mut subs, &t, limits.max_channels)),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue,
                }
            },
            event = events.recv() => match event {
                // Every client, whatever it subscribed to: what it shows
                // may be missing changes.
                Ok(e) if e.kind == EventKind::Resync => {
                    text(json!({ "type": "resync", "ts": time::rfc3339(e.ts) }))
                }
                Ok(e) => match route(&subs, &e) {
                    Some(channel) => {
                        text(json!({ "type": e.kind.to_string(), "channel": channel, "ts": time::rfc3339(e.ts), "data": e.data }))
                    }
                    None => continue,
                },
                Err(RecvError::Lagged(_)) => return close(socket, TOO_SLOW, "too slow: events were dropped").await,
                Err(RecvError::Closed) => return close(socket, GOING_AWAY, "server shutting down").await,
            },
            _ = pings.tick() => {
                if !std::mem::replace(&mut heard, false) {
                    return close(socket, GOING_AWAY, "no answer to pings").await;
                }
                Message::Ping(Default::default())
            },
            _ = &mut closed => return close(socket, GOING_AWAY, "server shutting down").await,
        };
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(outgoing)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

async fn until_closed(mut closing: tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// The answer to a client frame.
fn reply(subs: &mut BTreeSet<String>, frame: &str, max_channels: usize) -> serde_json::Value {
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
            let new: BTreeSet<String> = channels.into_iter().filter(|c| !subs.contains(c)).collect();
            if subs.len() + new.len() > max_channels {
                return json!({
                    "type": "error",
                    "message": format!("at most {max_channels} channels per connection (CREWSHIP_WS_MAX_CHANNELS)"),
                    "channels": subs,
                });
            }
            subs.extend(new);
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
    use crate::domain::event::{Change, EventKind};
    use crate::domain::status::AssignmentStatus;

    #[test]
    fn routing_prefers_the_event_channel() {
        let queued = EventKind::Assignment { id: 1, status: AssignmentStatus::Queued };
        let e = Event::new(queued, Some("alpha".into()), &json!({}));
        let mut subs = BTreeSet::new();
        assert_eq!(route(&subs, &e), None);
        subs.insert("crew:alpha".to_string());
        assert_eq!(route(&subs, &e).as_deref(), Some("crew:alpha"));
        subs.insert("assignments".to_string());
        assert_eq!(route(&subs, &e).as_deref(), Some("assignments"));
        let crew_only = Event::new(EventKind::Crew(Change::Updated), Some("alpha".into()), &json!({}));
        assert_eq!(route(&subs, &crew_only).as_deref(), Some("crew:alpha"));
        assert!(valid_channel("crew:x") && !valid_channel("crew:") && !valid_channel("nope"));
    }
}
