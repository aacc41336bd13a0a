//! /api/v1/journal.

use serde_json::json;

use crate::common::Daemon;

#[tokio::test]
async fn journal_filters_and_pages() {
    let d = Daemon::start().await;
    d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "A"}), 201).await;
    d.ok("/api/v1/crews", json!({"slug": "beta", "name": "B"}), 201).await;
    for i in 0..5 {
        let e = d
            .ok(
                "/api/v1/journal",
                json!({"entry_type": "note.deploy", "summary": format!("n{i}"), "crew": if i % 2 == 0 { "alpha" } else { "beta" },
                       "severity": "warning", "trace_id": "t-1", "payload": {"i": i}}),
                201,
            )
            .await;
        assert_eq!(e["payload"]["i"], i);
    }
    let alpha = d.get("/api/v1/journal?type=note.deploy&crew=alpha").await.body;
    let summaries: Vec<&str> =
        alpha["items"].as_array().unwrap().iter().map(|e| e["summary"].as_str().unwrap()).collect();
    assert_eq!(summaries, vec!["n4", "n2", "n0"], "newest first");
    let prefixed = d.get("/api/v1/journal?type=note.*").await.body;
    assert_eq!(prefixed["items"].as_array().unwrap().len(), 5);
    let page1 = d.get("/api/v1/journal?trace_id=t-1&limit=2").await.body;
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = d.get(&format!("/api/v1/journal?trace_id=t-1&limit=2&cursor={cursor}")).await.body;
    assert_eq!(page2["items"][0]["summary"], "n2");
    let future = d.get("/api/v1/journal?since=2999-01-01T00:00:00Z").await.body;
    assert!(future["items"].as_array().unwrap().is_empty());
    let past = d.get("/api/v1/journal?until=2000-01-01T00:00:00Z").await.body;
    assert!(past["items"].as_array().unwrap().is_empty());
}
