//! The process runner: timeouts reach grandchildren, output stays bounded,
//! the environment is what API.md says.

use serde_json::json;

use crate::common::{Daemon, script};
use crate::tools::gone;

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let d = Daemon::start().await;
    let pidfile = d.data_dir().join("grandchild.pid");
    let agent = script(d.data_dir(), "spawner.sh", &format!("sleep 300 & echo $! > {}; wait", pidfile.display()));
    d.ok("/api/v1/crews", json!({"slug": "tk", "name": "T"}), 201).await;
    d.ok("/api/v1/crews/tk/agents", json!({"slug": "wk", "name": "W", "command": [agent], "timeout_seconds": 1}), 201)
        .await;
    let done = d.run_to_end("tk", "wk", "x").await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error_message"], "timed out after 1s");
    let run = d.get(&format!("/api/v1/runs/{}", done["run_id"].as_str().unwrap())).await.body;
    assert_eq!(run["status"], "timeout");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(gone(pid).await, "grandchild {pid} survived the timeout");
    let page = d.metrics().await;
    assert!(page.contains("crewshipd_agent_run_events_total{event=\"timeout\",hostname=\"test-host\"} 1"), "{page}");
}

#[tokio::test]
async fn a_finished_run_leaves_no_stragglers() {
    let d = Daemon::start().await;
    let pidfile = d.data_dir().join("bg.pid");
    let agent = script(
        d.data_dir(),
        "bg.sh",
        &format!("sleep 300 >/dev/null 2>&1 & echo $! > {}; echo done", pidfile.display()),
    );
    d.ok("/api/v1/crews", json!({"slug": "tk", "name": "T"}), 201).await;
    d.ok("/api/v1/crews/tk/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let done = d.run_to_end("tk", "wk", "x").await;
    assert_eq!(done["status"], "completed");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(gone(pid).await, "background process {pid} outlived its run");
}

#[tokio::test]
async fn output_is_bounded_to_its_tail_and_env_is_set() {
    let d = Daemon::start_with(&[("CREWSHIP_RUN_OUTPUT_LIMIT", "2000"), ("CREWSHIP_API_TOKEN", "secret-token")]).await;
    let agent = script(
        d.data_dir(),
        "chatty.sh",
        "i=0; while [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done; \
         echo \"ids $CREWSHIP_ASSIGNMENT_ID $CREWSHIP_RUN_ID $CREWSHIP_CREW $CREWSHIP_AGENT $EXTRA token=${CREWSHIP_API_TOKEN:-none}\"",
    );
    d.ok("/api/v1/crews", json!({"slug": "tk", "name": "T"}), 201).await;
    d.ok(
        "/api/v1/crews/tk/agents",
        json!({"slug": "wk", "name": "W", "command": [agent], "env": {"EXTRA": "xtra"}}),
        201,
    )
    .await;
    let done = d.run_to_end("tk", "wk", "x").await;
    let run_id = done["run_id"].as_str().unwrap();
    let out = d.get(&format!("/api/v1/runs/{run_id}/output")).await.text;
    assert!(out.starts_with("[… "), "{out}");
    assert!(!out.contains("line 0\n"));
    assert!(out.contains("line 499"));
    let ids_line = format!("ids {} {run_id} tk wk xtra token=none", done["id"].as_str().unwrap());
    assert!(out.contains(&ids_line), "{out}");
    assert!(out.len() < 2100, "{}", out.len());
    let summary = done["result_summary"].as_str().unwrap();
    assert!(summary.ends_with(&ids_line) && summary.len() <= 4096, "{summary}");
}

#[tokio::test]
async fn live_output_while_running() {
    let d = Daemon::start().await;
    let agent = script(d.data_dir(), "slow.sh", "echo first-half; exec sleep 300");
    d.ok("/api/v1/crews", json!({"slug": "tk", "name": "T"}), 201).await;
    d.ok("/api/v1/crews/tk/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["runs"]).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": "tk", "agent": "wk", "task": "x"}), 201).await;
    let started = ws.next_matching(|f| f["type"] == "run.started").await;
    let run_id = started["data"]["id"].as_str().unwrap();
    // The line is written right after start, while the run goes on.
    d.await_output(run_id, "first-half").await;
    let c = d.post(&format!("/api/v1/assignments/{}/cancel", a["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(c.body["status"], "cancelled");
    assert!(d.get(&format!("/api/v1/runs/{run_id}/output")).await.text.contains("first-half"), "stored after the end");
}
