//! The API's auth model (API.md "Auth"), tried as a hostile web page, a
//! local user and an agent would: every client needs the token, cross-site
//! requests are refused, run tokens reach their own run only, every error
//! keeps the JSON shape, and no total can overflow.

use std::os::unix::fs::PermissionsExt;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::api::{Assignment, Crew, JournalEntry, Listing, Run};
use crate::common::ws::Client;
use crate::common::{Daemon, Reply, into_reply, sample};
use crate::tools;

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
}

/// What `fetch(url, {method: "POST", mode: "no-cors", body})` sends from a
/// page on another site: a text/plain body and the page's Origin.
async fn from_web_page(d: &Daemon, path: &str, body: &Value, auth: Option<&str>) -> Reply {
    let mut req = d
        .client()
        .post(d.url(path))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "http://evil.example")
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    into_reply(req.send().await.unwrap()).await
}

#[tokio::test]
async fn a_web_page_cannot_make_the_daemon_run_anything() {
    let d = Daemon::start_with(&[("CREWSHIP_API_TOKEN", "s3cret")]).await;
    let marker = d.data_dir().join("pwned");
    let steps = [
        ("/api/v1/crews", json!({"slug": "evil", "name": "Evil"})),
        (
            "/api/v1/crews/evil/agents",
            json!({"slug": "x", "name": "X", "command": ["sh", "-c", format!("id > {}", marker.display())]}),
        ),
        ("/api/v1/assignments", json!({"crew": "evil", "agent": "x", "task": "go"})),
    ];
    for (path, body) in &steps {
        // Without the token, with it, and without the Origin (a local
        // process): refused every time, for one reason or another.
        assert_error(&from_web_page(&d, path, body, None).await, 403, "forbidden");
        assert_error(&from_web_page(&d, path, body, Some("Bearer s3cret")).await, 403, "forbidden");
        let plain = d
            .client()
            .post(d.url(path))
            .header("content-type", "text/plain")
            .header("authorization", "Bearer s3cret")
            .body(body.to_string());
        assert_error(&into_reply(plain.send().await.unwrap()).await, 415, "unsupported_media_type");
        let anonymous = d.anonymous(Method::POST, path, Some(body.clone())).await;
        assert_error(&anonymous, 401, "unauthorized");
    }
    // Nothing was created, so nothing can run.
    let crews: Listing<Crew> = d.get_as("/api/v1/crews", 200).await;
    assert!(crews.items.is_empty(), "{crews:?}");
    let work: Listing<Assignment> = d.get_as("/api/v1/assignments", 200).await;
    assert!(work.items.is_empty(), "{work:?}");
    assert!(!marker.exists());
}

#[tokio::test]
async fn the_auth_matrix() {
    let d = Daemon::start_with(&[("CREWSHIP_ALLOWED_ORIGINS", "https://console.example.com/")]).await;
    // The daemon made its own token, readable by its user only.
    let token_file = d.data_dir().join("api-token");
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(d.token.len(), 64, "a 256-bit token in hex");

    // Loopback without a token: 401, naming where the token is.
    let r = d.anonymous(Method::GET, "/api/v1/crews", None).await;
    assert_error(&r, 401, "unauthorized");
    assert!(r.body["error"]["message"].as_str().unwrap().contains(&token_file.display().to_string()), "{}", r.text);
    // The token: 200.
    assert_eq!(d.get("/api/v1/crews").await.status, 200);
    // A body that is not JSON: 415, whatever the token.
    let r = d
        .client()
        .post(d.url("/api/v1/crews"))
        .header("authorization", d.bearer())
        .header("content-type", "text/plain")
        .body(r#"{"slug":"a","name":"A"}"#)
        .send()
        .await
        .unwrap();
    assert_error(&into_reply(r).await, 415, "unsupported_media_type");
    // Origins: a foreign one 403, the daemon's own and the listed one pass.
    let with_origin = |origin: String| {
        d.client().get(d.url("/api/v1/crews")).header("authorization", d.bearer()).header("origin", origin)
    };
    let foreign = into_reply(with_origin("http://evil.example".into()).send().await.unwrap()).await;
    assert_error(&foreign, 403, "forbidden");
    for origin in [
        format!("http://127.0.0.1:{}", d.port),
        format!("http://localhost:{}", d.port),
        "https://console.example.com".into(),
    ] {
        assert_eq!(with_origin(origin.clone()).send().await.unwrap().status(), 200, "{origin}");
    }
    // The WebSocket upgrade: the same Origin rule, and no token is no session.
    let bearer = d.bearer();
    let ws_foreign =
        Client::try_connect(&d.base, &[("authorization", &bearer), ("origin", "http://evil.example")]).await;
    assert!(ws_foreign.err().is_some_and(|e| e.contains("403")));
    let mut ws_listed =
        Client::connect(&d.base, &[("authorization", &bearer), ("origin", "https://console.example.com")]).await;
    ws_listed.subscribe(&["journal"]).await;
    let mut ws_anonymous = Client::connect(&d.base, &[]).await;
    ws_anonymous.send(json!({"type": "subscribe", "channels": ["journal"]})).await;
    assert_eq!(ws_anonymous.next().await.unwrap()["closed"], 1008);

    // The token outlives a restart.
    let before = d.token.clone();
    let d = d.restart().await;
    assert_eq!(d.token, before);
    assert_eq!(d.get("/api/v1/crews").await.status, 200);
}

#[tokio::test]
async fn loopback_may_be_let_in_where_the_host_wants_it() {
    let d = Daemon::start_with(&[("CREWSHIP_API_ALLOW_LOOPBACK", "true")]).await;
    assert_eq!(d.anonymous(Method::GET, "/api/v1/crews", None).await.status, 200);
    // A remote client still needs the token, and the cross-site rules hold.
    let remote = d.client().get(d.url("/api/v1/crews")).header("x-forwarded-for", "203.0.113.9");
    assert_error(&into_reply(remote.send().await.unwrap()).await, 401, "unauthorized");
    let page = from_web_page(&d, "/api/v1/crews", &json!({"slug": "a", "name": "A"}), None).await;
    assert_error(&page, 403, "forbidden");
    let mut ws = Client::connect(&d.base, &[]).await;
    ws.subscribe(&["journal"]).await;
}

#[tokio::test]
async fn configured_tokens_are_trimmed_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  from-a-file \n").unwrap();
    let d = Daemon::start_with(&[("CREWSHIP_API_TOKEN_FILE", file.to_str().unwrap())]).await;
    let r = d.client().get(d.url("/api/v1/crews")).bearer_auth("from-a-file").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(d.log().contains("surrounding whitespace"), "{}", d.log());
    assert!(!d.data_dir().join("api-token").exists(), "a configured token needs no file of the daemon's");
    let r = d.anonymous(Method::GET, "/api/v1/crews", None).await;
    assert!(r.body["error"]["message"].as_str().unwrap().contains("CREWSHIP_API_TOKEN_FILE"), "{}", r.text);

    let d = Daemon::start_with(&[("CREWSHIP_API_TOKEN", " padded\t")]).await;
    let r = d.client().get(d.url("/api/v1/crews")).bearer_auth("padded").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(d.log().contains("CREWSHIP_API_TOKEN: the token had surrounding whitespace"), "{}", d.log());
}

/// An agent that calls back with its run token, inside and outside its
/// scope, and prints what it got (and its token, for the test to reuse).
const CALLING_AGENT: &str = r#"
import json, os, urllib.request, urllib.error
base, tok = os.environ["CREWSHIP_API_URL"], os.environ["CREWSHIP_RUN_TOKEN"]
run, asg = os.environ["CREWSHIP_RUN_ID"], os.environ["CREWSHIP_ASSIGNMENT_ID"]
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
seen = {
    "journal": call("POST", "/api/v1/journal",
                    {"entry_type": "agent.note", "summary": "from the agent", "crew": "beta", "trace_id": "f" * 32}),
    "llm": call("POST", "/api/v1/llm-calls",
                {"provider": "acme", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5,
                 "crew": "beta", "run_id": "0" * 32}),
    "own_run": call("GET", "/api/v1/runs/" + run),
    "own_output": call("GET", "/api/v1/runs/" + run + "/output"),
    "own_assignment": call("GET", "/api/v1/assignments/" + asg),
    "other_run": call("GET", "/api/v1/runs/" + "0" * 32),
    "list_crews": call("GET", "/api/v1/crews"),
    "create_crew": call("POST", "/api/v1/crews", {"slug": "mine", "name": "Mine"}),
    "read_journal": call("GET", "/api/v1/journal"),
}
print(json.dumps(seen))
print(tok)
"#;

#[tokio::test]
async fn a_run_token_reaches_its_own_run_only() {
    let Some(python) = tools::python().await else { return };
    let d = Daemon::start().await;
    d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "Alpha"}), 201).await;
    d.ok("/api/v1/crews", json!({"slug": "beta", "name": "Beta"}), 201).await;
    let agent = json!({"slug": "caller", "name": "Caller", "command": [python, "-c", CALLING_AGENT]});
    d.ok("/api/v1/crews/alpha/agents", agent, 201).await;
    let done = d.run_to_end("alpha", "caller", "call back").await;
    assert_eq!(done["status"], "completed", "{done}");
    let summary = done["result_summary"].as_str().unwrap();
    let (seen, token) = summary.rsplit_once('\n').unwrap();
    let seen: Value = serde_json::from_str(seen).unwrap();
    assert_eq!(
        seen,
        json!({
            "journal": 201, "llm": 201, "own_run": 200, "own_output": 200, "own_assignment": 200,
            "other_run": 403, "list_crews": 403, "create_crew": 403, "read_journal": 403,
        })
    );
    // What it recorded is its run's, whatever its bodies said.
    let run_id = done["run_id"].as_str().unwrap();
    let run: Run = d.get_as(&format!("/api/v1/runs/{run_id}"), 200).await;
    assert_eq!((run.status.as_str(), run.exit_code), ("completed", Some(0)));
    let notes: Listing<JournalEntry> =
        d.get_as(&format!("/api/v1/journal?type=agent.note&trace_id={run_id}"), 200).await;
    let note = &notes.items[0];
    assert_eq!((note.crew.as_deref(), note.agent.as_deref()), (Some("alpha"), Some("caller")), "{notes:?}");
    let spend = d.get("/api/v1/paymaster/spend?group_by=crew").await.body;
    assert_eq!(
        spend["rows"],
        json!([{"key": "alpha", "calls": 1, "cost_usd": 0.5, "input_tokens": 1, "output_tokens": 1}])
    );
    assert_eq!(d.get("/api/v1/crews/beta").await.status, 200);
    assert_eq!(d.get("/api/v1/crews/mine").await.status, 404);
    // Once the run has ended its token is worthless.
    let after = d.client().get(d.url(&format!("/api/v1/runs/{run_id}"))).bearer_auth(token).send().await.unwrap();
    let after = into_reply(after).await;
    assert_error(&after, 401, "unauthorized");
    assert!(after.body["error"]["message"].as_str().unwrap().contains("ended"), "{}", after.text);
    // A forged secret for a live-looking token is just a wrong token.
    let forged = format!("crr.{run_id}.{}", "ab".repeat(32));
    let r = d.client().get(d.url("/api/v1/crews")).bearer_auth(forged).send().await.unwrap();
    assert_error(&into_reply(r).await, 401, "unauthorized");
}

#[tokio::test]
async fn every_error_keeps_the_json_shape() {
    let d = Daemon::start().await;
    // A path segment that is not UTF-8 once decoded.
    assert_error(&d.get("/api/v1/crews/%FF").await, 400, "bad_path");
    assert_error(&d.get("/api/v1/crews/%C3%28/agents").await, 400, "bad_path");
    // /ws without the upgrade headers, and with a method it does not take.
    let plain = d.client().get(d.url("/ws")).header("authorization", d.bearer()).send().await.unwrap();
    let plain = into_reply(plain).await;
    assert!(plain.status.is_client_error(), "{}", plain.text);
    assert_eq!(plain.code(), "websocket_upgrade_required", "{}", plain.text);
    assert_error(&d.request(Method::POST, "/ws", None).await, 405, "method_not_allowed");
    assert_error(&d.request(Method::DELETE, "/healthz", None).await, 405, "method_not_allowed");
    assert_error(&d.request(Method::PUT, "/api/v1/crews", None).await, 405, "method_not_allowed");
    // An unknown path, with and without the token.
    assert_error(&d.get("/api/v1/nothing-here").await, 404, "not_found");
    assert_error(&d.anonymous(Method::GET, "/nothing-here", None).await, 404, "not_found");
}

#[tokio::test]
async fn no_total_can_overflow() {
    let d = Daemon::start().await;
    let call =
        |usd: f64| json!({"provider": "acme", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": usd});
    // The report that used to overflow the running total: each call is over
    // the per-call bound now, and writes nothing.
    for _ in 0..10 {
        assert_error(&d.post("/api/v1/llm-calls", call(1e9)).await, 422, "invalid");
    }
    // At the bound of one provider's total (2^58 nano-USD): 28 calls of the
    // largest cost fit, the 29th would pass it and is refused.
    for i in 0..28 {
        let r = d.post("/api/v1/llm-calls", call(1e7)).await;
        assert_eq!(r.status, 201, "call {i}: {}", r.text);
    }
    let refused = d.post("/api/v1/llm-calls", call(1e7)).await;
    assert_error(&refused, 422, "invalid");
    assert!(refused.text.contains("bound"), "{}", refused.text);
    // Tokens have their per-call bound too.
    let many = json!({"provider": "acme", "model": "m", "input_tokens": 1_000_000_001i64, "output_tokens": 1});
    assert_error(&d.post("/api/v1/llm-calls", many).await, 422, "invalid");

    let expect = |spend: &Value| {
        assert_eq!(spend["rows"][0]["calls"], 28, "{spend}");
        assert_eq!(spend["rows"][0]["cost_usd"], 2.8e8, "{spend}");
    };
    expect(&d.get("/api/v1/paymaster/spend").await.body);
    let page = d.metrics().await;
    assert_eq!(sample(&page, "crewshipd_llm_calls_total", Some(("provider", "acme"))), Some(28.0));
    assert_eq!(sample(&page, "crewshipd_llm_cost_usd_total", Some(("provider", "acme"))), Some(2.8e8));
    // The daemon starts again on what it wrote, with nothing to repair.
    let d = d.restart().await;
    expect(&d.get("/api/v1/paymaster/spend").await.body);
    assert!(!d.log().contains("counter drift"), "{}", d.log());
}

#[tokio::test]
async fn rate_card_prices_are_bounded_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    std::fs::write(&card, r#"{"models": [{"provider": "acme", "model": "m", "input": 1e300, "output": 1}]}"#).unwrap();
    let (status, log) = Daemon::start_failure(&[("CREWSHIP_RATE_CARD", card.to_str().unwrap())]).await;
    assert!(!status.success());
    assert!(log.contains("rate card") && log.contains("10000"), "{log}");

    // At the bound a card loads, and a call it would price over the per-call
    // bound is refused rather than wrapped around to a negative cost.
    std::fs::write(&card, r#"{"models": [{"provider": "acme", "model": "m", "input": 10000, "output": 10000}]}"#)
        .unwrap();
    let d = Daemon::start_with(&[("CREWSHIP_RATE_CARD", card.to_str().unwrap())]).await;
    let most =
        json!({"provider": "acme", "model": "m", "input_tokens": 1_000_000_000i64, "output_tokens": 1_000_000_000i64});
    let r = d.post("/api/v1/llm-calls", most).await;
    assert_error(&r, 422, "invalid");
    let fine = json!({"provider": "acme", "model": "m", "input_tokens": 1000, "output_tokens": 0});
    assert_eq!(d.ok("/api/v1/llm-calls", fine, 201).await["cost_usd"], 10.0);
}
