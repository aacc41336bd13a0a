//! Pipelines: validation, dry runs, templated steps, queueing, failure.

use serde_json::{Value, json};

use crate::common::Daemon;

async fn await_pipeline_run(d: &Daemon, ws: &mut crate::common::ws::Client, id: &str, statuses: &[&str]) -> Value {
    let current = d.get(&format!("/api/v1/pipeline-runs/{id}")).await.body;
    if statuses.contains(&current["status"].as_str().unwrap_or_default()) {
        return current;
    }
    ws.next_matching(|f| {
        f["channel"] == "pipeline_runs"
            && f["data"]["id"] == id
            && statuses.contains(&f["data"]["status"].as_str().unwrap_or_default())
    })
    .await;
    d.get(&format!("/api/v1/pipeline-runs/{id}")).await.body
}

async fn setup(d: &Daemon) {
    d.ok("/api/v1/crews", json!({"slug": "writers", "name": "W", "max_concurrent_agents": 4}), 201).await;
    // Echoes its task in upper case.
    d.ok(
        "/api/v1/crews/writers/agents",
        json!({"slug": "shout", "name": "S", "command": ["sh", "-c", "tr a-z A-Z"]}),
        201,
    )
    .await;
    d.ok(
        "/api/v1/crews/writers/agents",
        json!({"slug": "broken", "name": "B", "command": ["sh", "-c", "echo nope >&2; exit 9"]}),
        201,
    )
    .await;
    d.ok(
        "/api/v1/crews/writers/agents",
        json!({"slug": "slow", "name": "Z", "command": ["sh", "-c", "cat; exec sleep 60"]}),
        201,
    )
    .await;
}

#[tokio::test]
async fn pipeline_validation() {
    let d = Daemon::start().await;
    setup(&d).await;
    let step = |id: &str, task: &str| json!({"id": id, "crew": "writers", "agent": "shout", "task": task});
    for steps in [
        json!([]),
        json!([step("a", "x"), step("a", "y")]),
        json!([step("a", "{{steps.b.output}}"), step("b", "y")]),
        json!([step("a", "{{nonsense}}")]),
        json!([step("a", "{{inputs.x")]),
        json!([{"id": "a", "crew": "writers", "agent": "ghost", "task": "x"}]),
        json!([{"id": "a", "crew": "nowhere", "agent": "shout", "task": "x"}]),
    ] {
        let r = d.post("/api/v1/pipelines", json!({"slug": "pp", "name": "P", "steps": steps})).await;
        assert_eq!(r.status, 422, "{steps}: {}", r.text);
    }
    d.ok("/api/v1/pipelines", json!({"slug": "pp", "name": "P", "steps": [step("a", "x")]}), 201).await;
    assert_eq!(
        d.post("/api/v1/pipelines", json!({"slug": "pp", "name": "P", "steps": [step("a", "x")]})).await.status,
        409
    );
    let missing_input = d.post("/api/v1/pipelines/pp/runs", json!({"inputs": {}})).await;
    assert_eq!(missing_input.status, 201, "the step uses no inputs");
    let p2 = json!({"slug": "p2", "name": "P", "steps": [step("a", "{{inputs.topic}}")]});
    d.ok("/api/v1/pipelines", p2, 201).await;
    let r = d.post("/api/v1/pipelines/p2/runs", json!({"inputs": {}})).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(d.get("/api/v1/pipelines").await.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn steps_chain_outputs_through_templates() {
    let d = Daemon::start().await;
    setup(&d).await;
    d.ok(
        "/api/v1/pipelines",
        json!({"slug": "relay", "name": "Relay", "steps": [
            {"id": "first", "crew": "writers", "agent": "shout", "task": "hello {{inputs.who}}"},
            {"id": "second", "crew": "writers", "agent": "shout", "task": "[{{steps.first.output}}] and {{ inputs.who }}"}
        ]}),
        201,
    )
    .await;
    // Dry run: rendered, nothing runs.
    let dry = d.ok("/api/v1/pipelines/relay/runs", json!({"inputs": {"who": "bob"}, "dry_run": true}), 201).await;
    assert_eq!(dry["status"], "dry_run");
    assert_eq!(dry["steps"][0]["task"], "hello bob");
    assert_eq!(dry["steps"][1]["task"], "[<steps.first.output>] and bob");
    assert!(d.get("/api/v1/assignments").await.body["items"].as_array().unwrap().is_empty());

    let mut ws = d.ws().await;
    ws.subscribe(&["pipeline_runs"]).await;
    let run = d.ok("/api/v1/pipelines/relay/runs", json!({"inputs": {"who": "bob"}}), 201).await;
    assert_eq!(run["status"], "running");
    let id = run["id"].as_str().unwrap();
    let done = await_pipeline_run(&d, &mut ws, id, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["steps"][0]["output"], "HELLO BOB");
    assert_eq!(done["steps"][1]["task"], "[HELLO BOB] and bob");
    assert_eq!(done["steps"][1]["output"], "[HELLO BOB] AND BOB");
    let a = d.get(&format!("/api/v1/assignments/{}", done["steps"][1]["assignment_id"].as_str().unwrap())).await.body;
    assert_eq!(a["pipeline_run_id"], id);
    // Journaled under the names of their events.
    let entries = d.get("/api/v1/journal?type=pipeline_run.*").await.body;
    let types: Vec<&str> =
        entries["items"].as_array().unwrap().iter().map(|e| e["entry_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["pipeline_run.completed", "pipeline_run.running", "pipeline_run.dry_run"]);
}

#[tokio::test]
async fn failed_step_fails_the_run_and_queued_runs_wait_their_turn() {
    let d = Daemon::start().await;
    setup(&d).await;
    d.ok(
        "/api/v1/pipelines",
        json!({"slug": "fragile", "name": "F", "max_concurrent_runs": 1, "steps": [
            {"id": "ok", "crew": "writers", "agent": "shout", "task": "a"},
            {"id": "bad", "crew": "writers", "agent": "broken", "task": "b"},
            {"id": "never", "crew": "writers", "agent": "shout", "task": "c"}
        ]}),
        201,
    )
    .await;
    let mut ws = d.ws().await;
    ws.subscribe(&["pipeline_runs"]).await;
    let first = d.ok("/api/v1/pipelines/fragile/runs", json!({}), 201).await;
    let second = d.ok("/api/v1/pipelines/fragile/runs", json!({}), 201).await;
    assert_eq!(first["status"], "running");
    assert_eq!(second["status"], "queued", "max_concurrent_runs = 1");
    let failed = await_pipeline_run(&d, &mut ws, first["id"].as_str().unwrap(), &["failed", "completed"]).await;
    assert_eq!(failed["status"], "failed");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("\"bad\"") && reason.contains("exit status 9"), "{reason}");
    assert_eq!(failed["steps"][2]["status"], "skipped");
    // The queued run starts once the slot frees, and fails the same way.
    let second = await_pipeline_run(&d, &mut ws, second["id"].as_str().unwrap(), &["failed", "completed"]).await;
    assert_eq!(second["status"], "failed");
    let listed = d.get("/api/v1/pipeline-runs?status=failed&pipeline=fragile").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn cancel_stops_the_step_in_flight() {
    let d = Daemon::start().await;
    setup(&d).await;
    d.ok(
        "/api/v1/pipelines",
        json!({"slug": "long", "name": "L", "steps": [{"id": "wait", "crew": "writers", "agent": "slow", "task": "x"}]}),
        201,
    )
    .await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let run = d.ok("/api/v1/pipelines/long/runs", json!({}), 201).await;
    let running = ws.next_matching(|f| f["data"]["status"] == "running").await;
    let assignment = running["data"]["id"].as_str().unwrap().to_string();
    let cancelled = d.post(&format!("/api/v1/pipeline-runs/{}/cancel", run["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["steps"][0]["status"], "cancelled");
    let a = d.await_assignment(&mut ws, &assignment, &["cancelled"]).await;
    assert_eq!(a["status"], "cancelled");
    // Deleting the pipeline leaves history readable.
    assert_eq!(d.delete("/api/v1/pipelines/long").await.status, 200);
    assert_eq!(d.get("/api/v1/pipelines/long").await.status, 404);
    assert_eq!(d.get(&format!("/api/v1/pipeline-runs/{}", run["id"].as_str().unwrap())).await.status, 200);
}
