//! Crews and agents over HTTP.

use serde_json::json;

use crate::common::Daemon;

#[tokio::test]
async fn crew_and_agent_lifecycle() {
    let d = Daemon::start().await;
    let crew = d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "Alpha"}), 201).await;
    assert_eq!(crew["max_concurrent_agents"], 2);
    assert_eq!(crew["runtime"], "local");
    let id = crew["id"].as_str().unwrap();

    // By id or slug.
    assert_eq!(d.get(&format!("/api/v1/crews/{id}")).await.body["slug"], "alpha");
    assert_eq!(d.get("/api/v1/crews/alpha").await.body["id"], id);

    let patched = d.patch("/api/v1/crews/alpha", json!({"max_concurrent_agents": 5, "name": "A"})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["max_concurrent_agents"], 5);

    let agent = d
        .ok(
            "/api/v1/crews/alpha/agents",
            json!({"slug": "lead", "name": "Lead", "role": "lead", "command": ["true"], "env": {"K": "v"}}),
            201,
        )
        .await;
    assert_eq!(agent["timeout_seconds"], 1800);
    assert_eq!(agent["env"]["K"], "v");
    // One live lead per crew.
    let second = d
        .post("/api/v1/crews/alpha/agents", json!({"slug": "lead2", "name": "L", "role": "lead", "command": ["true"]}))
        .await;
    assert_eq!((second.status.as_u16(), second.code()), (409, "conflict"), "{}", second.text);
    let agents = d.get(&format!("/api/v1/crews/{id}/agents")).await;
    assert_eq!(agents.body["items"].as_array().unwrap().len(), 1);
    let aid = agent["id"].as_str().unwrap();
    assert_eq!(d.get(&format!("/api/v1/crews/alpha/agents/{aid}")).await.body["slug"], "lead");
    let renamed = d.patch("/api/v1/crews/alpha/agents/lead", json!({"name": "Boss", "timeout_seconds": 5})).await;
    assert_eq!(renamed.body["timeout_seconds"], 5, "{}", renamed.text);

    // Deleting frees the lead slot.
    assert_eq!(d.delete("/api/v1/crews/alpha/agents/lead").await.status, 200);
    assert_eq!(d.get("/api/v1/crews/alpha/agents/lead").await.status, 404);
    d.ok("/api/v1/crews/alpha/agents", json!({"slug": "lead2", "name": "L", "role": "lead", "command": ["true"]}), 201)
        .await;

    // Soft delete: gone by slug, still readable by id, slug reusable.
    let deleted = d.delete("/api/v1/crews/alpha").await;
    assert_eq!(deleted.status, 200);
    assert!(deleted.body["deleted_at"].is_string());
    assert_eq!(d.get("/api/v1/crews/alpha").await.status, 404);
    assert!(d.get(&format!("/api/v1/crews/{id}")).await.body["deleted_at"].is_string());
    assert_eq!(d.delete(&format!("/api/v1/crews/{id}")).await.status, 404);
    let again = d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "Alpha again"}), 201).await;
    assert_ne!(again["id"], id);
    let list = d.get("/api/v1/crews").await.body;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let all = d.get("/api/v1/crews?include_deleted=true").await.body;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn pagination_walks_every_crew_once() {
    let d = Daemon::start().await;
    for i in 0..7 {
        d.ok("/api/v1/crews", json!({"slug": format!("crew-{i}"), "name": "c"}), 201).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/crews?limit=3&cursor={c}"),
            None => "/api/v1/crews?limit=3".to_string(),
        };
        let page = d.get(&path).await.body;
        for c in page["items"].as_array().unwrap() {
            seen.push(c["slug"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).map(|i| format!("crew-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn crew_and_agent_changes_are_journaled_under_their_event_names() {
    let d = Daemon::start().await;
    let id =
        d.ok("/api/v1/crews", json!({"slug": "beta", "name": "Beta"}), 201).await["id"].as_str().unwrap().to_string();
    d.ok("/api/v1/crews/beta/agents", json!({"slug": "worker", "name": "W", "command": ["true"]}), 201).await;
    assert_eq!(d.patch("/api/v1/crews/beta/agents/worker", json!({"name": "Worker"})).await.status, 200);
    assert_eq!(d.patch("/api/v1/crews/beta", json!({"name": "B"})).await.status, 200);
    assert_eq!(d.delete("/api/v1/crews/beta/agents/worker").await.status, 200);
    assert_eq!(d.delete("/api/v1/crews/beta").await.status, 200);
    let entries = d.get(&format!("/api/v1/journal?crew={id}")).await.body;
    let seen: Vec<(&str, &str)> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["entry_type"].as_str().unwrap(), e["summary"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("crew.deleted", "crew.deleted: beta"),
            ("agent.deleted", "agent.deleted: beta"),
            ("crew.updated", "crew.updated: beta"),
            ("agent.updated", "agent.updated: beta"),
            ("agent.created", "agent.created: beta"),
            ("crew.created", "crew.created: beta"),
        ]
    );
}
