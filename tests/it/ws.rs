//! The WebSocket hub over a real socket.

use serde_json::json;

use crate::common::ws::Client;
use crate::common::{Daemon, PATIENCE, sample};
use crate::tools::eventually;

const REMOTE: (&str, &str) = ("x-forwarded-for", "203.0.113.50");

async fn ws_connections(d: &Daemon) -> f64 {
    sample(&d.metrics().await, "crewshipd_ws_connections", None).unwrap()
}

/// Waits, with a deadline, for the live connection gauge to read `n`: the
/// server learns of a closed socket on its own schedule.
async fn gauge_reaches(d: &Daemon, n: f64) {
    eventually(&format!("ws_connections to reach {n}"), PATIENCE, || async {
        (ws_connections(d).await == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn auth_by_header_or_first_frame() {
    let d = Daemon::start_with(&[("CREWSHIP_API_TOKEN", "tok"), ("CREWSHIP_WS_AUTH_TIMEOUT", "300ms")]).await;
    // The header, from loopback as from anywhere.
    let mut local = Client::connect(&d.base, &[("authorization", "Bearer tok")]).await;
    local.subscribe(&["journal"]).await;
    let mut header = Client::connect(&d.base, &[REMOTE, ("authorization", "Bearer tok")]).await;
    header.subscribe(&["journal"]).await;
    // A first frame instead; a WebSocket ping before it is no failure.
    let mut frame = Client::connect(&d.base, &[]).await;
    frame.ping().await;
    frame.send(json!({"type": "auth", "token": "tok"})).await;
    assert_eq!(frame.next().await.unwrap()["type"], "auth_ok");
    frame.subscribe(&["journal"]).await;
    // A wrong token, or silence, or anything else first: closed with 1008.
    let mut wrong = Client::connect(&d.base, &[]).await;
    wrong.send(json!({"type": "auth", "token": "nope"})).await;
    assert_eq!(wrong.next().await.unwrap()["closed"], 1008);
    let mut silent = Client::connect(&d.base, &[REMOTE]).await;
    assert_eq!(silent.next().await.unwrap()["closed"], 1008);
    let mut subscribing = Client::connect(&d.base, &[]).await;
    subscribing.send(json!({"type": "subscribe", "channels": ["journal"]})).await;
    assert_eq!(subscribing.next().await.unwrap()["closed"], 1008);
    // A wrong token in the header is refused before the upgrade.
    let refused = Client::try_connect(&d.base, &[("authorization", "Bearer nope")]).await;
    assert!(refused.err().is_some_and(|e| e.contains("401")));
    // Only the three authenticated sessions count.
    assert_eq!(ws_connections(&d).await, 3.0);
    d.ok("/api/v1/journal", json!({"entry_type": "note", "summary": "hello"}), 201).await;
    for c in [&mut local, &mut header, &mut frame] {
        let e = c.next_matching(|f| f["type"] == "journal.entry").await;
        assert_eq!(e["data"]["summary"], "hello");
    }
    drop(header);
    gauge_reaches(&d, 2.0).await;
}

#[tokio::test]
async fn channels_and_event_order() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "cat").await;
    d.crew_with_agent("beta", 1, "cat").await;
    let mut crew = d.ws().await;
    crew.subscribe(&["crew:beta"]).await;
    let mut all = d.ws().await;
    all.subscribe(&["assignments", "runs"]).await;
    let mut bad = d.ws().await;
    bad.send(json!({"type": "subscribe", "channels": ["nonsense"]})).await;
    assert_eq!(bad.next().await.unwrap()["type"], "error");
    bad.send(json!({"type": "ping"})).await;
    assert_eq!(bad.next().await.unwrap()["type"], "pong");

    let a = d.run_to_end("alpha", "worker", "a").await;
    let b = d.run_to_end("beta", "worker", "b").await;
    // Every transition of an assignment and its run, in commit order.
    let run_id = a["run_id"].clone();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("assignment.completed") {
        let f = all.next_matching(|f| f["data"]["id"] == a["id"] || f["data"]["id"] == run_id).await;
        seen.push(f["type"].as_str().unwrap().to_string());
    }
    assert_eq!(
        seen,
        [
            "assignment.pending",
            "assignment.queued",
            "run.started",
            "assignment.running",
            "run.completed",
            "assignment.completed"
        ]
    );
    // The crew channel carries beta's events only.
    let first = crew.next().await.unwrap();
    assert_eq!(first["channel"], "crew:beta");
    assert_eq!(first["data"]["crew"], "beta", "{first}");
    let done = crew.next_matching(|f| f["type"] == "assignment.completed").await;
    assert_eq!(done["data"]["id"], b["id"]);
    // Unsubscribed: nothing more arrives; a ping proves the line is live.
    crew.send(json!({"type": "unsubscribe", "channels": ["crew:beta"]})).await;
    crew.next_matching(|f| f["type"] == "subscribed").await;
    d.run_to_end("beta", "worker", "c").await;
    crew.send(json!({"type": "ping"})).await;
    let next = crew.next().await.unwrap();
    assert_eq!(next["type"], "pong", "an event arrived after unsubscribing: {next}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_without_stalling_others() {
    let d = Daemon::start_with(&[("CREWSHIP_EVENT_BUFFER", "64")]).await;
    let mut stuck = d.ws().await;
    stuck.subscribe(&["journal"]).await;
    let mut reader = d.ws().await;
    reader.subscribe(&["journal"]).await;
    assert_eq!(ws_connections(&d).await, 2.0);
    // ~50 MB of events: far more than socket buffers hold for `stuck`.
    let payload = "x".repeat(256 * 1024);
    let posts = 200;
    let poster = {
        let base = d.base.clone();
        let bearer = d.bearer();
        let payload = payload.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            for i in 0..posts {
                let body = json!({"entry_type": "bulk", "summary": format!("e{i}"), "payload": {"blob": payload}});
                let post = client.post(format!("{base}/api/v1/journal")).header("authorization", &bearer).json(&body);
                let r = post.send().await.unwrap();
                assert_eq!(r.status(), 201);
            }
        })
    };
    for i in 0..posts {
        let f = reader.next_matching(|f| f["type"] == "journal.entry").await;
        assert_eq!(f["data"]["summary"], format!("e{i}"));
    }
    poster.await.unwrap();
    gauge_reaches(&d, 1.0).await;
    drop(stuck);
}
