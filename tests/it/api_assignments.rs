//! Assignments: creation, listing, cancel semantics.

use serde_json::json;

use crate::common::Daemon;

#[tokio::test]
async fn assignment_runs_to_completion_with_its_output() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "echo \"got: $(cat)\"; echo \"$CREWSHIP_CREW/$CREWSHIP_AGENT\" >&2; echo tail-line")
        .await;
    let done = d.run_to_end("alpha", "worker", "the task").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["result_summary"], "got: the task\ntail-line");
    for field in ["created_at", "queued_at", "started_at", "finished_at"] {
        assert!(done[field].is_string(), "{field} missing: {done}");
    }
    let run_id = done["run_id"].as_str().unwrap();
    assert_eq!(run_id.len(), 32);
    let run = d.get(&format!("/api/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["assignment_id"], done["id"]);
    let out = d.get(&format!("/api/v1/runs/{run_id}/output")).await;
    assert!(out.text.contains("got: the task"), "{}", out.text);
    assert!(out.text.contains("alpha/worker"), "stderr captured too: {}", out.text);
    // The journal tells the run's story under its trace id.
    let j = d.get(&format!("/api/v1/journal?trace_id={run_id}")).await.body;
    let types: Vec<&str> = j["items"].as_array().unwrap().iter().map(|e| e["entry_type"].as_str().unwrap()).collect();
    assert!(types.contains(&"run.started") && types.contains(&"run.completed"), "{types:?}");
}

/// A failed run's message quotes the last line its agent wrote to stderr
/// (agents say why there), bounded.
#[tokio::test]
async fn a_failure_quotes_the_agents_last_stderr_line() {
    let d = Daemon::start().await;
    d.crew_with_agent("beta", 1, "echo working >&2; echo 'Error: OPENAI_API_KEY is not set' >&2; echo; exit 2").await;
    let done = d.run_to_end("beta", "worker", "t").await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error_message"], "exit status 2: Error: OPENAI_API_KEY is not set");
    d.crew_with_agent("gamma", 1, "head -c 5000 /dev/zero | tr '\\0' x >&2; kill -9 $$").await;
    let done = d.run_to_end("gamma", "worker", "t").await;
    let msg = done["error_message"].as_str().unwrap();
    assert!(msg.starts_with("killed by signal 9: xxx") && msg.ends_with('…'), "{msg}");
    assert!(msg.chars().count() < 400, "bounded: {} characters", msg.chars().count());
}

#[tokio::test]
async fn failing_command_fails_the_assignment() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "echo partial; exit 3").await;
    let done = d.run_to_end("alpha", "worker", "t").await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error_message"], "exit status 3", "nothing on stderr, nothing quoted");
    assert_eq!(done["result_summary"], "partial");
    let run = d.get(&format!("/api/v1/runs/{}", done["run_id"].as_str().unwrap())).await.body;
    assert_eq!((run["status"].as_str(), run["exit_code"].as_i64()), (Some("failed"), Some(3)));
}

#[tokio::test]
async fn missing_program_fails_cleanly() {
    let d = Daemon::start().await;
    d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "A"}), 201).await;
    d.ok("/api/v1/crews/alpha/agents", json!({"slug": "ghost", "name": "G", "command": ["/definitely/not/here"]}), 201)
        .await;
    let done = d.run_to_end("alpha", "ghost", "t").await;
    assert_eq!(done["status"], "failed");
    assert!(done["error_message"].as_str().unwrap().contains("cannot start"), "{done}");
}

#[tokio::test]
async fn list_filters_and_cancel_rules() {
    let d = Daemon::start().await;
    // A crew whose only slot is held by a long runner: later work waits queued.
    d.crew_with_agent("alpha", 1, "read line; exec sleep 60").await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let first = d.ok("/api/v1/assignments", json!({"crew": "alpha", "agent": "worker", "task": "x\n"}), 201).await;
    assert_eq!(first["status"], "pending");
    let first_id = first["id"].as_str().unwrap();
    d.await_assignment(&mut ws, first_id, &["running"]).await;
    let second = d.ok("/api/v1/assignments", json!({"crew": "alpha", "agent": "worker", "task": "y"}), 201).await;
    let second_id = second["id"].as_str().unwrap();
    d.await_assignment(&mut ws, second_id, &["queued"]).await;

    let queued = d.get("/api/v1/assignments?status=queued&crew=alpha").await.body;
    let ids: Vec<&str> = queued["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![second_id]);

    // Queued → cancelled; again → no-op 200.
    let c = d.post(&format!("/api/v1/assignments/{second_id}/cancel"), json!({})).await;
    assert_eq!((c.status.as_u16(), c.body["status"].as_str()), (200, Some("cancelled")), "{}", c.text);
    let again = d.post(&format!("/api/v1/assignments/{second_id}/cancel"), json!({})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["finished_at"], c.body["finished_at"]);

    // Running → the process is stopped, then cancelled.
    let c = d.post(&format!("/api/v1/assignments/{first_id}/cancel"), json!({})).await;
    assert_eq!(c.body["status"], "cancelled", "{}", c.text);
    let run = d.get(&format!("/api/v1/runs/{}", c.body["run_id"].as_str().unwrap())).await.body;
    assert_eq!(run["status"], "cancelled");

    // Completed → 409.
    d.patch("/api/v1/crews/alpha/agents/worker", json!({"command": ["true"]})).await;
    let done = d.run_to_end("alpha", "worker", "z").await;
    assert_eq!(done["status"], "completed");
    let c = d.post(&format!("/api/v1/assignments/{}/cancel", done["id"].as_str().unwrap()), json!({})).await;
    assert_eq!((c.status.as_u16(), c.code()), (409, "conflict"));
}
