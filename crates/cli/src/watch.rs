//! `crewship watch`: follows `/ws` and prints a line per event.

use std::io::IsTerminal;
use std::time::SystemTime;

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::client::{Client, Query};
use super::ctx::Ctx;
use super::error::{CliError, Result};
use super::render::{self, short};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Outcome texts (a result summary, an error) are cut to this many
/// characters so each event stays on one line.
const DETAIL_MAX: usize = 80;

#[derive(Args)]
pub struct WatchArgs {
    /// A channel to follow (repeatable): assignments, runs, journal,
    /// containers, pipeline_runs or crew:<slug>. The journal's entries
    /// for a change another followed channel shows are left out, so each
    /// change is one line.
    #[arg(long = "channel", value_name = "C", default_values = ["assignments", "runs", "pipeline_runs", "journal"])]
    channels: Vec<String>,
    /// Only events of this crew (its slug).
    #[arg(long, value_name = "SLUG")]
    crew: Option<String>,
    /// Only events of this type: `assignment.failed`, or a prefix ending in
    /// `*` (`run.*`). A journal entry's type is its entry type.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
}

/// Which events `watch` prints, and how.
struct Shown {
    /// Journal entries of these kinds (`run`, …) duplicate a followed channel.
    mirrored: Vec<&'static str>,
    crew: Option<String>,
    kind: Option<String>,
    colour: bool,
}

/// The event kinds whose journal entries duplicate a channel's events.
const MIRRORS: [(&str, &str); 3] = [("assignment", "assignments"), ("run", "runs"), ("pipeline_run", "pipeline_runs")];

impl Shown {
    fn new(ctx: &Ctx, args: &WatchArgs) -> Shown {
        let mirrored =
            MIRRORS.iter().filter(|(_, ch)| args.channels.iter().any(|c| c == ch)).map(|(k, _)| *k).collect();
        let colour = !ctx.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Shown { mirrored, crew: args.crew.clone(), kind: args.kind.clone(), colour }
    }

    fn wants(&self, frame: &Value) -> bool {
        let kind = frame["type"].as_str().unwrap_or_default();
        let data = &frame["data"];
        // A journal entry stands for its own type (`run.started`).
        let own = if kind == "journal.entry" { data["entry_type"].as_str().unwrap_or_default() } else { kind };
        if kind == "journal.entry" && self.mirrored.iter().any(|m| own.split('.').next() == Some(*m)) {
            return false;
        }
        let type_ok = match self.kind.as_deref() {
            None => true,
            Some(p) => match p.strip_suffix('*') {
                Some(prefix) => own.starts_with(prefix),
                None => own == p,
            },
        };
        let crew_ok = self.crew.as_deref().is_none_or(|c| data["crew"].as_str() == Some(c));
        type_ok && crew_ok
    }
}

pub async fn run(ctx: &Ctx, args: WatchArgs) -> Result<()> {
    let shown = Shown::new(ctx, &args);
    let mut socket = connect(&ctx.client).await?;
    let subscribe = json!({ "type": "subscribe", "channels": args.channels });
    socket.send(Message::text(subscribe.to_string())).await.map_err(dropped)?;
    loop {
        let message = tokio::select! {
            m = socket.next() => m,
            _ = tokio::signal::ctrl_c() => {
                // Best effort: the user is leaving either way.
                let _ = socket.close(None).await;
                return Ok(());
            }
        };
        match message {
            Some(Ok(Message::Text(text))) => frame(ctx, &shown, &text)?,
            Some(Ok(Message::Close(close))) => return Err(closed(close)),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(dropped(e)),
            None => return Err(closed(None)),
        }
    }
}

/// Opens `/ws`, with the API token as a header (a remote daemon wants it).
async fn connect(client: &Client) -> Result<Socket> {
    let mut url = client.url(&["ws"], &Query::default());
    url.set_scheme("ws").expect("http and ws are both special schemes");
    let mut request = url.as_str().into_client_request().map_err(dropped)?;
    if let Some(token) = client.token() {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| CliError::Failed("the token is not a valid header value".into()))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    match connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Io(e)) => Err(CliError::Unreachable { url: url.to_string(), reason: e.to_string() }),
        Err(WsError::Http(reply)) => {
            let body = reply.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            Err(CliError::from_reply(reply.status().as_u16(), &body))
        }
        Err(e) => Err(dropped(e)),
    }
}

fn dropped(e: WsError) -> CliError {
    CliError::Failed(format!("the event stream failed: {e}"))
}

fn closed(close: Option<CloseFrame>) -> CliError {
    match close {
        Some(f) => CliError::Failed(format!("crewshipd closed the event stream: {} ({})", f.reason, u16::from(f.code))),
        None => CliError::Failed("crewshipd closed the event stream".into()),
    }
}

/// Handles one server frame: events are printed, the subscription's
/// acknowledgement goes to stderr (so stdout stays one line per event), a
/// refusal ends the watch.
fn frame(ctx: &Ctx, shown: &Shown, text: &str) -> Result<()> {
    let frame: Value = serde_json::from_str(text)
        .map_err(|e| CliError::Failed(format!("crewshipd sent a frame that is not JSON: {e}")))?;
    match frame["type"].as_str().unwrap_or_default() {
        "subscribed" => {
            eprintln!("crewship: watching {}", render::cell(&frame["channels"]));
            Ok(())
        }
        "error" => Err(CliError::Failed(format!("crewshipd refused: {}", render::cell(&frame["message"])))),
        _ if frame.get("channel").is_none() || !shown.wants(&frame) => Ok(()),
        _ if ctx.json => render::print(&format!("{text}\n")),
        _ => render::print(&format!("{}\n", line(&frame, shown.colour))),
    }
}

/// `<time> <type> <channel> <summary>`: the time is when the change
/// happened (the frame's `ts`), else when the frame arrived. On a
/// terminal the type is coloured by how things went.
fn line(frame: &Value, colour: bool) -> String {
    let kind = frame["type"].as_str().unwrap_or_default();
    let channel = frame["channel"].as_str().unwrap_or_default();
    let at = frame["ts"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()).unwrap_or_else(SystemTime::now);
    let shown_kind = match (colour, paint(kind)) {
        (true, Some(code)) => format!("\x1b[{code}m{kind}\x1b[0m"),
        _ => kind.to_string(),
    };
    format!("{} {shown_kind} {channel} {}", humantime::format_rfc3339_seconds(at), summary(kind, &frame["data"]))
}

/// The ANSI colour of an event type's outcome, if it has one.
fn paint(kind: &str) -> Option<&'static str> {
    match kind.rsplit('.').next()? {
        "completed" => Some("32"),
        "failed" | "timeout" | "interrupted" => Some("31"),
        "cancelled" => Some("33"),
        "running" | "started" => Some("36"),
        _ => None,
    }
}

/// The few fields that say what happened, per kind of event.
fn summary(kind: &str, d: &Value) -> String {
    let who = || format!("{}/{}", render::cell(&d["crew"]), render::cell(&d["agent"]));
    let parts: Vec<String> = match kind.split('.').next().unwrap_or_default() {
        "assignment" => {
            vec![field(&d["id"]), who(), field(&d["status"]), detail(&d["error_message"], &d["result_summary"])]
        }
        "run" => vec![field(&d["id"]), who(), field(&d["status"]), detail(&d["error"], &Value::Null)],
        "pipeline_run" => {
            vec![field(&d["id"]), field(&d["pipeline"]), field(&d["status"]), detail(&d["reason"], &Value::Null)]
        }
        "journal" => vec![field(&d["entry_type"]), field(&d["severity"]), detail(&d["summary"], &Value::Null)],
        "crew" | "agent" => vec![field(&d["crew"]), field(&d["slug"])],
        "container" => vec![
            field(&d["crew"]),
            format!("cpu={}%", render::cell(&d["cpu_percent"])),
            format!("mem={}", render::cell(&d["memory_used_bytes"])),
            format!("pids={}", render::cell(&d["pids"])),
        ],
        _ => vec![short(&d.to_string(), DETAIL_MAX)],
    };
    parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A present field as text; absent ones are left out of the line.
fn field(v: &Value) -> String {
    if v.is_null() { String::new() } else { render::cell(v) }
}

/// The first present of an error and an outcome, quoted and cut short.
fn detail(first: &Value, second: &Value) -> String {
    [first, second]
        .into_iter()
        .find_map(Value::as_str)
        .map(|t| format!("{:?}", short(t, DETAIL_MAX)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_of_what_happened() {
        let frame = json!({"type": "assignment.completed", "channel": "assignments", "ts": "2027-01-15T08:00:00.250Z",
            "data": {"id": "asg_1", "crew": "alpha", "agent": "wk", "status": "completed",
            "result_summary": "all\ndone", "error_message": null}});
        assert_eq!(
            line(&frame, false),
            r#"2027-01-15T08:00:00Z assignment.completed assignments asg_1 alpha/wk completed "all done""#
        );
        assert!(line(&frame, true).contains("\x1b[32massignment.completed\x1b[0m"));
        let entry = json!({"entry_type": "note", "severity": "warning", "summary": "disk", "crew": null});
        assert_eq!(summary("journal.entry", &entry), r#"note warning "disk""#);
        let sample = json!({"crew": "alpha", "cpu_percent": 12.5, "memory_used_bytes": 1024, "pids": 3});
        assert_eq!(summary("container.sample", &sample), "alpha cpu=12.5% mem=1024 pids=3");
    }
}
