//! The error contract of API.md: status, JSON shape, and nothing written.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::Daemon;

fn assert_error(r: &crate::common::Reply, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    assert!(!r.body["error"]["message"].as_str().unwrap_or_default().is_empty(), "{}", r.text);
}

/// Everything the store holds, as the API lists it.
async fn everything(d: &Daemon) -> Value {
    let mut all = serde_json::Map::new();
    for path in [
        "/api/v1/crews?include_deleted=true",
        "/api/v1/assignments",
        "/api/v1/journal",
        "/api/v1/pipelines",
        "/api/v1/pipeline-runs",
        "/api/v1/paymaster/spend",
    ] {
        all.insert(path.to_string(), d.get(path).await.body);
    }
    Value::Object(all)
}

#[tokio::test]
async fn bad_input_gets_4xx_and_writes_nothing() {
    let d = Daemon::start_with(&[("CREWSHIP_BODY_LIMIT", "4096")]).await;
    d.crew_with_agent("alpha", 1, "cat").await;
    let before = everything(&d).await;

    // 400: malformed JSON, wrong types, not an object.
    assert_error(&d.post_raw("/api/v1/crews", "{\"slug\":").await, 400, "malformed_json");
    assert_error(&d.post_raw("/api/v1/crews", "[1,2]").await, 400, "invalid_type");
    assert_error(&d.post("/api/v1/crews", json!({"slug": 7, "name": "x"})).await, 400, "invalid_type");
    assert_error(
        &d.post("/api/v1/crews", json!({"slug": "ok-slug", "name": "x", "max_concurrent_agents": "two"})).await,
        400,
        "invalid_type",
    );
    assert_error(
        &d.post("/api/v1/llm-calls", json!({"provider": "a", "model": "m", "input_tokens": 1.5, "output_tokens": 1}))
            .await,
        400,
        "invalid_type",
    );
    // 413: over the body limit.
    let big = format!("{{\"slug\":\"x\",\"name\":\"{}\"}}", "x".repeat(8192));
    assert_error(&d.post_raw("/api/v1/crews", big).await, 413, "payload_too_large");
    // 422: well-formed but invalid.
    for body in [
        json!({"slug": "", "name": "x"}),
        json!({"slug": "UPPER", "name": "x"}),
        json!({"slug": "a", "name": "x"}),
        json!({"slug": "crw_9", "name": "x"}),
        json!({"slug": "fine", "name": "  "}),
        json!({"slug": "fine", "name": "x", "max_concurrent_agents": 0}),
        json!({"slug": "fine", "name": "x", "runtime": "vm"}),
        json!({"slug": "fine", "name": "x", "runtime": "docker"}),
        json!({"name": "missing slug"}),
    ] {
        assert_error(&d.post("/api/v1/crews", body.clone()).await, 422, "invalid");
    }
    for body in [
        json!({"slug": "w2", "name": "W", "command": []}),
        json!({"slug": "w2", "name": "W", "command": [""]}),
        json!({"slug": "w2", "name": "W", "command": ["x"], "timeout_seconds": 0}),
        json!({"slug": "w2", "name": "W", "command": ["x"], "role": "boss"}),
        json!({"slug": "w2", "name": "W", "command": ["x"], "env": {"A=B": "v"}}),
        json!({"slug": "w2", "name": "W", "command": ["x"], "env": {"CREWSHIP_RUN_ID": "v"}}),
    ] {
        assert_error(&d.post("/api/v1/crews/alpha/agents", body.clone()).await, 422, "invalid");
    }
    for body in [
        json!({"crew": "alpha", "agent": "nobody", "task": "t"}),
        json!({"crew": "nowhere", "agent": "worker", "task": "t"}),
        json!({"crew": "alpha", "agent": "worker", "task": "  "}),
        json!({"crew": "alpha", "agent": "worker", "task": "t", "assigned_by": "ghost"}),
    ] {
        assert_error(&d.post("/api/v1/assignments", body.clone()).await, 422, "invalid");
    }
    for body in [
        json!({"provider": "a", "model": "m", "input_tokens": -1, "output_tokens": 1}),
        json!({"provider": " ", "model": "m", "input_tokens": 1, "output_tokens": 1}),
        json!({"provider": "a", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": -0.5}),
        json!({"provider": "a", "model": "m", "input_tokens": 1, "output_tokens": 1, "billing_mode": "free"}),
        json!({"provider": "a", "model": "m", "input_tokens": 1, "output_tokens": 1, "run_id": "nope"}),
        json!({"provider": "a", "model": "m", "input_tokens": 1, "output_tokens": 1, "crew": "nowhere"}),
    ] {
        assert_error(&d.post("/api/v1/llm-calls", body.clone()).await, 422, "invalid");
    }
    assert_error(
        &d.post("/api/v1/journal", json!({"entry_type": "run.completed", "summary": "x"})).await,
        422,
        "invalid",
    );
    assert_error(
        &d.post("/api/v1/journal", json!({"entry_type": "note", "summary": "x", "severity": "loud"})).await,
        422,
        "invalid",
    );
    assert_error(&d.post("/api/v1/runs", json!({"agent": "worker"})).await, 422, "invalid");
    for q in ["limit=0", "limit=501", "limit=x", "cursor=%21%21", "status=sleeping", "crew=nowhere"] {
        assert_error(&d.get(&format!("/api/v1/assignments?{q}")).await, 422, "invalid");
    }
    assert_error(&d.get("/api/v1/journal?since=yesterday").await, 422, "invalid");
    assert_error(&d.get("/api/v1/paymaster/spend?group_by=planet").await, 422, "invalid");
    // 404: unknown ids and slugs, unknown routes.
    for path in [
        "/api/v1/crews/nowhere",
        "/api/v1/crews/crw_999",
        "/api/v1/crews/alpha/agents/ghost",
        "/api/v1/assignments/asg_999",
        "/api/v1/assignments/garbage",
        "/api/v1/runs/0123456789abcdef0123456789abcdef",
        "/api/v1/pipelines/none",
        "/api/v1/pipeline-runs/plr_1",
        "/api/v1/no-such-thing",
        "/no-such-thing",
    ] {
        assert_error(&d.get(path).await, 404, "not_found");
    }
    assert_error(&d.post("/api/v1/assignments/asg_999/cancel", json!({})).await, 404, "not_found");
    assert_error(&d.patch("/api/v1/runs/feed", json!({"status": "completed"})).await, 404, "not_found");
    // 405 keeps the JSON shape.
    assert_error(&d.request(Method::PUT, "/api/v1/crews", None).await, 405, "method_not_allowed");
    // 409: duplicates.
    assert_error(&d.post("/api/v1/crews", json!({"slug": "alpha", "name": "again"})).await, 409, "conflict");
    assert_error(
        &d.post("/api/v1/crews/alpha/agents", json!({"slug": "worker", "name": "W", "command": ["x"]})).await,
        409,
        "conflict",
    );

    assert_eq!(everything(&d).await, before, "a rejected request wrote something");
}

#[tokio::test]
async fn every_client_needs_the_api_token() {
    let d = Daemon::start_with(&[("CREWSHIP_API_TOKEN", "t0ken")]).await;
    let request = |auth: Option<&str>, remote: bool| {
        let mut req = d.client().get(d.url("/api/v1/crews"));
        if remote {
            req = req.header("x-forwarded-for", "203.0.113.9");
        }
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req
    };
    for remote in [false, true] {
        for auth in [None, Some("Bearer wrong"), Some("Basic t0ken"), Some("Bearer t0ken2")] {
            let r = crate::common::into_reply(request(auth, remote).send().await.unwrap()).await;
            assert_error(&r, 401, "unauthorized");
            assert!(r.body["error"]["message"].as_str().unwrap().contains("CREWSHIP_API_TOKEN"), "{}", r.text);
        }
        for auth in ["Bearer t0ken", "bearer t0ken"] {
            let r = request(Some(auth), remote).send().await.unwrap();
            assert_eq!(r.status(), 200, "{auth}");
        }
    }
}

/// PostgreSQL text cannot hold U+0000, so no backend stores it: a body
/// holding one is refused, a path or query holding one is never a 500, and an
/// agent's NUL bytes read back as U+FFFD.
#[tokio::test]
async fn the_nul_character_is_refused_alike_on_both_backends() {
    let d = Daemon::start().await;
    let before = everything(&d).await;
    let r = d.post("/api/v1/crews", json!({"slug": "a", "name": "nul\u{0}here"})).await;
    assert_error(&r, 422, "invalid");
    let r = d
        .post(
            "/api/v1/llm-calls",
            json!({"provider": "p\u{0}", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 1.0}),
        )
        .await;
    assert_error(&r, 422, "invalid");
    let r = d.post("/api/v1/journal", json!({"entry_type": "agent.note", "summary": "s", "data": {"k\u{0}": 1}})).await;
    assert_error(&r, 422, "invalid");
    assert_eq!(everything(&d).await, before, "a refused request wrote something");
    for path in ["/api/v1/crews/a%00b", "/api/v1/journal?entry_type=x%00", "/api/v1/assignments?crew=a%00b"] {
        let r = d.get(path).await;
        assert!(r.status.is_success() || r.status.is_client_error(), "GET {path}: {} {}", r.status, r.text);
        assert!(r.status.is_success() || r.body["error"]["code"].is_string(), "GET {path}: {}", r.text);
    }
    d.crew_with_agent("alpha", 1, "printf 'a\\000b'").await;
    let done = d.run_to_end("alpha", "worker", "t").await;
    assert_eq!(done["status"], "completed", "{done}");
    let out = d.get(&format!("/api/v1/runs/{}/output", done["run_id"].as_str().unwrap())).await;
    assert_eq!(out.status, 200, "{}", out.text);
    assert!(out.text.contains("a\u{fffd}b"), "{:?}", out.text);
}
