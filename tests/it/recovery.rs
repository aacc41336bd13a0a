//! Restart recovery after `kill -9`, and graceful shutdown.

use serde_json::json;

use crate::common::{Daemon, PATIENCE, script};
use crate::tools::eventually;

/// An agent that hangs on its first attempt and succeeds on the next; it
/// records its pid so the test can see the old process die.
fn second_time_lucky(d: &Daemon) -> String {
    let marker = d.data_dir().join("attempted");
    let pidfile = d.data_dir().join("first.pid");
    script(
        d.data_dir(),
        "lucky.sh",
        &format!(
            "if [ -e {m} ]; then echo second-run; exit 0; fi; touch {m}; echo $$ > {p}; exec sleep 300",
            m = marker.display(),
            p = pidfile.display()
        ),
    )
}

/// The pid `second_time_lucky` writes once its first attempt has marked
/// itself: from then on, stopping it makes the next attempt the lucky one.
async fn first_run_pid(d: &Daemon) -> i32 {
    let path = d.data_dir().join("first.pid");
    eventually("the first attempt to start", PATIENCE, || async {
        std::fs::read_to_string(&path).ok().and_then(|p| p.trim().parse().ok())
    })
    .await
}

#[tokio::test]
async fn kill_nine_mid_run_requeues_and_reruns() {
    let d = Daemon::start().await;
    let agent = second_time_lucky(&d);
    d.ok("/api/v1/crews", json!({"slug": "rk", "name": "R", "max_concurrent_agents": 1}), 201).await;
    d.ok("/api/v1/crews/rk/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let first = d.ok("/api/v1/assignments", json!({"crew": "rk", "agent": "wk", "task": "a"}), 201).await;
    let waiting = d.ok("/api/v1/assignments", json!({"crew": "rk", "agent": "wk", "task": "b"}), 201).await;
    let id = first["id"].as_str().unwrap().to_string();
    let running = d.await_assignment(&mut ws, &id, &["running"]).await;
    d.await_assignment(&mut ws, waiting["id"].as_str().unwrap(), &["queued"]).await;
    let old_run = running["run_id"].as_str().unwrap().to_string();
    let old_pid = first_run_pid(&d).await;
    drop(ws);

    let d = d.restart_after_kill9().await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let done = d.await_assignment(&mut ws, &id, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["result_summary"], "second-run");
    assert_ne!(done["run_id"], old_run.as_str());
    // The interrupted run ended as cancelled, for the restart.
    let old = d.get(&format!("/api/v1/runs/{old_run}")).await.body;
    assert_eq!((old["status"].as_str(), old["error"].as_str()), (Some("cancelled"), Some("server_restart")));
    let journal = d.get(&format!("/api/v1/journal?trace_id={old_run}&type=run.cancelled")).await.body;
    assert_eq!(journal["items"].as_array().unwrap().len(), 1);
    // The old process did not survive its daemon.
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{old_pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    // Work queued behind it keeps its place and runs too.
    let b = d.await_assignment(&mut ws, waiting["id"].as_str().unwrap(), &["completed"]).await;
    assert_eq!(b["attempts"], 1);
    assert!(b["started_at"].as_str() > done["started_at"].as_str(), "FIFO kept across the restart");
}

#[tokio::test]
async fn attempts_run_out() {
    let d = Daemon::start_with(&[("CREWSHIP_MAX_ATTEMPTS", "1")]).await;
    let agent = script(d.data_dir(), "hang.sh", "exec sleep 300");
    d.ok("/api/v1/crews", json!({"slug": "rk", "name": "R"}), 201).await;
    d.ok("/api/v1/crews/rk/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": "rk", "agent": "wk", "task": "a"}), 201).await;
    let id = a["id"].as_str().unwrap();
    d.await_assignment(&mut ws, id, &["running"]).await;
    let d = d.restart_after_kill9().await;
    let after = d.get(&format!("/api/v1/assignments/{id}")).await.body;
    assert_eq!(after["status"], "failed");
    assert!(after["error_message"].as_str().unwrap().contains("gave up after 1 attempts"), "{after}");
}

/// A pipeline run outlives its driver: after a crash the restarted daemon
/// drives it from where it stands. The step in flight is not started
/// again (its assignment is requeued, at-least-once, and runs a second
/// time), and the queued run starts when the first one ends.
#[tokio::test]
async fn pipeline_runs_resume_after_a_crash() {
    let d = Daemon::start().await;
    let agent = second_time_lucky(&d);
    d.ok("/api/v1/crews", json!({"slug": "rk", "name": "R"}), 201).await;
    d.ok("/api/v1/crews/rk/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let steps = json!([{"id": "s", "crew": "rk", "agent": "wk", "task": "x"}, {"id": "t", "crew": "rk", "agent": "wk", "task": "after {{steps.s.output}}"}]);
    d.ok("/api/v1/pipelines", json!({"slug": "pipe", "name": "P", "steps": steps}), 201).await;
    let run = d.ok("/api/v1/pipelines/pipe/runs", json!({}), 201).await;
    let queued = d.ok("/api/v1/pipelines/pipe/runs", json!({}), 201).await;
    assert_eq!(queued["status"], "queued");
    first_run_pid(&d).await;

    let d = d.restart_after_kill9().await;
    let mut ws = d.ws().await;
    ws.subscribe(&["pipeline_runs"]).await;
    let mut ended = Vec::new();
    for id in [run["id"].as_str().unwrap(), queued["id"].as_str().unwrap()] {
        let current = d.get(&format!("/api/v1/pipeline-runs/{id}")).await.body;
        let r = if current["status"] == "completed" {
            current
        } else {
            ws.next_matching(|f| f["data"]["id"] == id && f["data"]["status"] == "completed").await;
            d.get(&format!("/api/v1/pipeline-runs/{id}")).await.body
        };
        assert_eq!(r["status"], "completed", "{r}");
        ended.push(r);
    }
    // Each step started once: one assignment per step; the interrupted
    // one ran twice.
    let first = &ended[0];
    let step_ids: Vec<&str> =
        first["steps"].as_array().unwrap().iter().map(|s| s["assignment_id"].as_str().unwrap()).collect();
    let a = d.get(&format!("/api/v1/assignments/{}", step_ids[0])).await.body;
    assert_eq!((a["status"].as_str(), a["attempts"].as_i64()), (Some("completed"), Some(2)), "{a}");
    assert_eq!(first["steps"][1]["task"], "after second-run", "{first}");
    let all = d.get("/api/v1/assignments?limit=100").await.body;
    assert_eq!(all["items"].as_array().unwrap().len(), 4, "two steps of two runs, no more: {all}");
    let page = d.metrics().await;
    assert!(page.contains("crewshipd_pipeline_runs{hostname=\"test-host\",status=\"completed\"} 2"), "{page}");
}

#[tokio::test]
async fn sigterm_stops_children_and_requeues_their_work() {
    let d = Daemon::start().await;
    let agent = second_time_lucky(&d);
    d.ok("/api/v1/crews", json!({"slug": "rk", "name": "R"}), 201).await;
    d.ok("/api/v1/crews/rk/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": "rk", "agent": "wk", "task": "a"}), 201).await;
    let id = a["id"].as_str().unwrap().to_string();
    let running = d.await_assignment(&mut ws, &id, &["running"]).await;
    first_run_pid(&d).await;
    drop(ws);
    let d = d.restart().await;
    let old = d.get(&format!("/api/v1/runs/{}", running["run_id"].as_str().unwrap())).await.body;
    assert_eq!((old["status"].as_str(), old["error"].as_str()), (Some("cancelled"), Some("server_shutdown")));
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let done = d.await_assignment(&mut ws, &id, &["completed", "failed"]).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_i64()), (Some("completed"), Some(2)));
}
