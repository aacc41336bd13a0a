//! Everything a client can make the daemon spend has a bound, tried at the
//! bound: connections, the time to send headers and bodies, shutdown,
//! rendered tasks, request bodies in flight, the writer's queue, WebSocket
//! subscriptions and half-open sockets.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::ws::Client;
use crate::common::{Daemon, Launch, PATIENCE, sample};
use crate::tools::{addr_of, eventually};

/// Reads until the server closes the connection; what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut got)).await.expect("the server closed in time");
    got
}

#[tokio::test]
async fn slow_headers_are_cut_at_the_header_timeout() {
    let d = Daemon::start_with(&[("CREWSHIP_HTTP_HEADER_TIMEOUT", "1s")]).await;
    let addr = addr_of(&d.base);
    // 200 clients that start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let closed = futures::stream::iter(slow.iter_mut()).then(until_closed).collect::<Vec<_>>().await;
    // Each was answered 408 or simply closed; none got what it asked for.
    for got in &closed {
        let text = String::from_utf8_lossy(got);
        assert!(got.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // An idle keep-alive connection goes the same way.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let got = String::from_utf8_lossy(&until_closed(&mut idle).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(d.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn idle_sockets_past_the_open_file_limit_leave_healthz_reachable() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let launch = Launch { open_files: Some(1024), ..Launch::default() };
    let d = Daemon::launch(dir, &[("CREWSHIP_HTTP_HEADER_TIMEOUT", "2s")], launch).await;
    assert!(d.log().contains("max_connections=768"), "{}", d.log());
    let addr = addr_of(&d.base);
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // The daemon took what its cap allows and left the rest in the backlog;
    // as the idle ones are cut, /healthz gets through.
    let r = tokio::time::timeout(PATIENCE, d.client().get(d.url("/healthz")).send()).await.expect("healthz in time");
    assert_eq!(r.unwrap().status(), 200);
    drop(idle);
    assert_eq!(d.get("/api/v1/crews").await.status, 200);
}

#[tokio::test]
async fn at_the_connection_cap_new_clients_wait_for_a_free_slot() {
    let d = Daemon::start_with(&[("CREWSHIP_MAX_CONNECTIONS", "3"), ("CREWSHIP_HTTP_HEADER_TIMEOUT", "60s")]).await;
    let addr = addr_of(&d.base);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Served, so certainly accepted: each holds a slot, kept alive.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let mut waiting = tokio::spawn({
        let url = d.url("/healthz");
        let client = d.client().clone();
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    // Nothing answers the fourth while all three slots are taken …
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut waiting).await.is_err());
    // … and it is served as soon as one closes.
    drop(held.pop());
    let status = tokio::time::timeout(PATIENCE, waiting).await.expect("served once a slot freed").unwrap().unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sigterm_with_a_half_sent_request_exits_within_the_grace() {
    let mut d = Daemon::start_with(&[("CREWSHIP_SHUTDOWN_GRACE", "1s"), ("CREWSHIP_HTTP_HEADER_TIMEOUT", "60s")]).await;
    let addr = addr_of(&d.base);
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /api/v1/journal HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n").await.unwrap();
    let mut body_half = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/journal HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"entry_type\":",
        d.bearer()
    );
    body_half.write_all(head.as_bytes()).await.unwrap();
    d.signal(libc::SIGTERM);
    let status = d.exit_within(PATIENCE).await.expect("crewshipd exited");
    assert!(status.success(), "{status}");
    assert!(d.log().contains("crewshipd stopped"), "{}", d.log());
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let d = Daemon::start_with(&[("CREWSHIP_HTTP_BODY_TIMEOUT", "500ms")]).await;
    let mut s = TcpStream::connect(addr_of(&d.base)).await.unwrap();
    let head = format!(
        "POST /api/v1/journal HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"entry_type\":",
        d.bearer()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let got = String::from_utf8_lossy(&until_closed(&mut s).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"code\":\"request_timeout\""), "{got}");
}

#[tokio::test]
async fn a_template_that_would_render_huge_is_refused_without_rendering_it() {
    let d = Daemon::start_with(&[("CREWSHIP_MAX_TASK_BYTES", "262144")]).await;
    d.crew_with_agent("alpha", 1, "cat").await;
    // 800 copies of a 250 KB input: 200 MB if rendered in full.
    let task = "{{inputs.big}}".repeat(800);
    let steps = json!([
        {"id": "small", "crew": "alpha", "agent": "worker", "task": "{{inputs.small}}"},
        {"id": "huge", "crew": "alpha", "agent": "worker", "task": task},
    ]);
    d.ok("/api/v1/pipelines", json!({"slug": "pipe", "name": "P", "steps": steps}), 201).await;
    let big = "x".repeat(250_000);
    for dry_run in [true, false] {
        let r = d
            .post("/api/v1/pipelines/pipe/runs", json!({"inputs": {"big": big, "small": "s"}, "dry_run": dry_run}))
            .await;
        assert_eq!(r.status, 422, "{}", r.text);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("\"huge\"") && msg.contains("CREWSHIP_MAX_TASK_BYTES"), "{msg}");
    }
    assert_eq!(d.get("/api/v1/pipeline-runs").await.body["items"], json!([]), "nothing half-written");
    // Exactly at the bound a task renders; a direct task over it is refused.
    let at = "y".repeat(262_144);
    let r = d.post("/api/v1/pipelines/pipe/runs", json!({"inputs": {"big": "", "small": at}, "dry_run": true})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let over =
        d.post("/api/v1/assignments", json!({"crew": "alpha", "agent": "worker", "task": "z".repeat(262_145)})).await;
    assert_eq!(over.status, 422, "{}", over.text);
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

/// The bound the test holds the daemon to with 1 500 posts of 500 KB in
/// flight (750 MB offered): the 64 MiB in-flight budget, parsing on top,
/// and the daemon's own baseline.
const RSS_BOUND: u64 = 256 * 1024 * 1024;

/// A connection reset by the daemon, somewhere in the error's chain.
fn is_reset(e: &reqwest::Error) -> bool {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset))
}

#[tokio::test]
async fn memory_held_by_bodies_in_flight_is_bounded() {
    let d = Daemon::start().await;
    let body = json!({"padding": "p".repeat(500 * 1024)}).to_string();
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    let posts = (0..1500).map(|_| {
        let req = client
            .post(d.url("/api/v1/journal"))
            .header("authorization", d.bearer())
            .header("content-type", "application/json")
            .body(body.clone());
        async move { req.send().await.map(|r| (r.status().as_u16(), r.headers().contains_key("retry-after"))) }
    });
    let answers = futures::stream::iter(posts).buffer_unordered(1500).collect::<Vec<_>>().await;
    let (mut invalid, mut busy, mut reset) = (0, 0, 0);
    for a in answers {
        match a {
            // A body without the fields it needs: parsed, then refused.
            Ok((422, _)) => invalid += 1,
            Ok((503, true)) => busy += 1,
            // A refused body is never read: closing the connection with
            // the client still sending resets it, and a client that did
            // not wait for `100 Continue` may see the reset, not the 503.
            Err(e) if is_reset(&e) => reset += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        invalid > 0 && busy > 0 && invalid + busy + reset == 1500,
        "{invalid} refused as invalid, {busy} as busy, {reset} reset"
    );
    let peak = peak_rss(d.pid());
    eprintln!(
        "peak RSS with 1500 posts of 500 KB in flight: {} MiB ({invalid} parsed, {busy} turned away, {reset} reset)",
        peak >> 20
    );
    assert!(peak < RSS_BOUND, "peak RSS {} MiB", peak >> 20);
    assert_eq!(d.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn a_full_write_queue_answers_503_and_loses_nothing_it_accepted() {
    let d = Daemon::start_with(&[("CREWSHIP_WRITE_QUEUE", "1")]).await;
    let posts = (0..200).map(|i| {
        let d = &d;
        async move { (i, d.post("/api/v1/journal", json!({"entry_type": "note", "summary": format!("n{i}")})).await) }
    });
    let answers = futures::future::join_all(posts).await;
    let mut accepted = Vec::new();
    for (i, r) in &answers {
        match r.status.as_u16() {
            201 => accepted.push(format!("n{i}")),
            503 => assert!(r.headers.contains_key("retry-after"), "{}", r.text),
            other => panic!("{other}: {}", r.text),
        }
    }
    assert!(answers.iter().any(|(_, r)| r.status == 503), "a queue of one overflows under 200 posts at once");
    let stored = d.get("/api/v1/journal?type=note&limit=500").await.body;
    let mut stored: Vec<String> =
        stored["items"].as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap().to_string()).collect();
    stored.sort();
    accepted.sort();
    assert_eq!(stored, accepted);
}

#[tokio::test]
async fn websocket_sessions_are_bounded() {
    let d = Daemon::start_with(&[("CREWSHIP_WS_MAX_CHANNELS", "10"), ("CREWSHIP_WS_PING_INTERVAL", "200ms")]).await;
    let mut ws = d.ws().await;
    let channels: Vec<String> = (0..11).map(|i| format!("crew:c{i}")).collect();
    ws.send(json!({"type": "subscribe", "channels": channels})).await;
    let refused = ws.next_matching(|f| f["type"] == "error").await;
    assert!(refused["message"].as_str().unwrap().contains("CREWSHIP_WS_MAX_CHANNELS"), "{refused}");
    let ten: Vec<&str> = channels[..10].iter().map(String::as_str).collect();
    ws.subscribe(&ten).await;
    // Subscribing again to what it has costs nothing; one more is refused.
    ws.subscribe(&["crew:c0"]).await;
    ws.send(json!({"type": "subscribe", "channels": ["crew:c10"]})).await;
    assert_eq!(ws.next().await.unwrap()["type"], "error");

    // A client that reads (and so answers pings) stays; one that never
    // reads again is dropped as half-open.
    let reader = tokio::spawn(async move {
        // Only a close ends this: the server sends nothing else unasked.
        ws.next().await
    });
    let silent = d.ws().await;
    eventually("the silent client to be dropped", PATIENCE, || async {
        let page = d.metrics().await;
        (sample(&page, "crewshipd_ws_connections", None) == Some(1.0)).then_some(())
    })
    .await;
    assert!(!reader.is_finished(), "the reading client was dropped too");
    drop(silent);
    reader.abort();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_outbound_bound() {
    let d = Daemon::start_with(&[("CREWSHIP_WS_MAX_OUTBOUND_BYTES", "65536")]).await;
    let mut stuck = d.ws().await;
    stuck.subscribe(&["journal"]).await;
    // Entries of 32 KB each: the kernel's buffers fill, then the session's
    // own, which may hold 64 KiB; past that the session ends.
    let blob = "b".repeat(32 * 1024);
    for i in 0..400 {
        d.ok("/api/v1/journal", json!({"entry_type": "bulk", "summary": format!("e{i}"), "payload": {"b": blob}}), 201)
            .await;
    }
    eventually("the stuck client to be dropped", PATIENCE, || async {
        let page = d.metrics().await;
        (sample(&page, "crewshipd_ws_connections", None) == Some(0.0)).then_some(())
    })
    .await;
    drop(stuck);
    let _ = Client::try_connect(&d.base, &[("authorization", &d.bearer())]).await.expect("new sessions still open");
    let _ = d.request(Method::GET, "/healthz", None).await;
}
