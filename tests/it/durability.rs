//! Restarts keep everything; `kill -9` loses nothing acknowledged.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::common::{Daemon, PATIENCE};
use crate::tools::eventually;

/// Everything the API shows.
async fn snapshot(d: &Daemon) -> Vec<serde_json::Value> {
    let mut v = Vec::new();
    for p in [
        "/api/v1/crews",
        "/api/v1/crews/alpha/agents",
        "/api/v1/assignments",
        "/api/v1/journal?limit=500",
        "/api/v1/paymaster/spend",
    ] {
        v.push(d.get(p).await.body);
    }
    v
}

#[tokio::test]
async fn restart_keeps_all_data() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "echo out").await;
    let done = d.run_to_end("alpha", "worker", "t").await;
    d.ok(
        "/api/v1/llm-calls",
        json!({"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 2}),
        201,
    )
    .await;
    let before = snapshot(&d).await;
    let d = d.restart().await;
    assert_eq!(snapshot(&d).await, before);
    let out = d.get(&format!("/api/v1/runs/{}/output", done["run_id"].as_str().unwrap())).await.text;
    assert_eq!(out.trim(), "out");
}

#[tokio::test]
async fn kill_nine_loses_no_acknowledged_write() {
    let d = Daemon::start().await;
    d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "A"}), 201).await;
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let base = d.base.clone();
    let bearer = d.bearer();
    // Writers post journal entries and LLM calls as fast as they can.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let acked = acked.clone();
            let base = base.clone();
            let bearer = bearer.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().no_proxy().build().unwrap();
                for i in 0.. {
                    let (path, body) = if i % 2 == 0 {
                        ("/api/v1/journal", json!({"entry_type": "note", "summary": format!("w{w}-{i}"), "crew": "alpha"}))
                    } else {
                        ("/api/v1/llm-calls", json!({"provider": format!("p{w}"), "model": format!("w{w}-{i}"), "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.01}))
                    };
                    let post = client.post(format!("{base}{path}")).header("authorization", &bearer).json(&body);
                    let Ok(resp) = post.send().await else { return };
                    if resp.status() == 201 {
                        acked.lock().unwrap().insert(format!("w{w}-{i}"));
                    }
                }
            })
        })
        .collect();
    // Let a few hundred writes land, then pull the plug mid-stream.
    eventually("400 acknowledged writes", PATIENCE, || async { (acked.lock().unwrap().len() >= 400).then_some(()) })
        .await;
    let d = d.restart_after_kill9().await;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    let mut stored = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/journal?type=note&limit=500&cursor={c}"),
            None => "/api/v1/journal?type=note&limit=500".to_string(),
        };
        let page = d.get(&path).await.body;
        stored.extend(page["items"].as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let spend = d.get("/api/v1/paymaster/spend?group_by=model").await.body;
    stored.extend(spend["rows"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().to_string()));
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost: {lost:?}", lost.len());
    assert!(acked.len() >= 400);
}
