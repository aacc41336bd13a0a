//! /api/v1/runs: runs their owners report.

use serde_json::json;

use crate::common::{Daemon, sample};

#[tokio::test]
async fn reported_runs_count_once() {
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "1ms")]).await;
    d.crew_with_agent("alpha", 1, "true").await;
    let run = d.ok("/api/v1/runs", json!({"crew": "alpha", "agent": "worker", "trigger": "cron"}), 201).await;
    assert_eq!(run["status"], "running");
    let id = run["id"].as_str().unwrap();

    let first = d.patch(&format!("/api/v1/runs/{id}"), json!({"status": "failed", "error": "boom"})).await;
    assert_eq!((first.status.as_u16(), first.body["status"].as_str()), (200, Some("failed")));
    // Retries, even with another outcome, return the first and write nothing.
    for status in ["failed", "completed", "timeout"] {
        let again = d.patch(&format!("/api/v1/runs/{id}"), json!({"status": status})).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body, first.body);
    }
    let bad = d.patch(&format!("/api/v1/runs/{id}"), json!({"status": "running"})).await;
    assert_eq!(bad.status, 422);

    let page = d.metrics().await;
    assert_eq!(sample(&page, "crewshipd_agent_run_events_total", Some(("event", "started"))), Some(1.0));
    assert_eq!(sample(&page, "crewshipd_agent_run_events_total", Some(("event", "failed"))), Some(1.0));
    assert_eq!(sample(&page, "crewshipd_agent_run_events_total", Some(("event", "completed"))), Some(0.0));
    let entries = d.get(&format!("/api/v1/journal?trace_id={id}")).await.body;
    let types: Vec<&str> =
        entries["items"].as_array().unwrap().iter().map(|e| e["entry_type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["run.failed", "run.started"]);

    // A run with neither crew nor agent is fine; an agent id implies its crew.
    d.ok("/api/v1/runs", json!({}), 201).await;
    let agent_id = d.get("/api/v1/crews/alpha/agents/worker").await.body["id"].as_str().unwrap().to_string();
    let r = d.ok("/api/v1/runs", json!({"agent": agent_id}), 201).await;
    assert_eq!(r["crew"], "alpha");

    // Runs crewshipd executes are its own to report.
    let done = d.run_to_end("alpha", "worker", "t").await;
    let managed =
        d.patch(&format!("/api/v1/runs/{}", done["run_id"].as_str().unwrap()), json!({"status": "failed"})).await;
    assert_eq!(managed.status, 200, "terminal already: the first outcome comes back");
    assert_eq!(managed.body["status"], "completed");
}
