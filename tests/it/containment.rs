//! Every process a run starts ends with the run: stragglers that called
//! setsid die at its end, and an agent never outlives a daemon killed with
//! -9 (its first process by the parent-death signal, the rest of its cgroup
//! at the next start).

use serde_json::json;

use crate::common::api::Assignment;
use crate::common::{Daemon, PATIENCE};
use crate::tools::{ci, eventually};

/// Pids of processes whose command line is exactly `argv`.
fn running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain(std::iter::once(0))).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'));
            !zombie && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want)
        })
        .collect()
}

async fn none_left(argv: &[&str]) {
    eventually(&format!("{argv:?} to be gone"), PATIENCE, || async { running(argv).is_empty().then_some(()) }).await;
}

async fn appears(argv: &[&str]) {
    eventually(&format!("{argv:?} to run"), PATIENCE, || async { (!running(argv).is_empty()).then_some(()) }).await;
}

/// A daemon whose runs get cgroups, or None (a skip outside CI) where this
/// machine has no writable cgroup v2.
async fn with_cgroups(env: &[(&str, &str)]) -> Option<Daemon> {
    let d = Daemon::start_with(env).await;
    if d.log().contains("a cgroup per run") {
        return Some(d);
    }
    assert!(!ci(), "cgroup v2 must be writable under CI=true (STACK.md): {}", d.log());
    eprintln!("!!! SKIPPING: no writable cgroup v2 here; runs are contained by process groups");
    None
}

/// A run whose agent leaves a process behind in a session of its own:
/// once the run has completed, that process is gone.
async fn straggler_dies_with_its_run(d: Daemon, seconds: &str) {
    d.crew_with_agent("alpha", 1, &format!("setsid sleep {seconds} & echo left one behind")).await;
    let done = d.run_to_end("alpha", "worker", "t").await;
    assert_eq!(done["status"], "completed");
    none_left(&["sleep", seconds]).await;
}

#[tokio::test]
async fn a_straggler_that_called_setsid_dies_with_its_run_in_a_cgroup() {
    let Some(d) = with_cgroups(&[]).await else { return };
    straggler_dies_with_its_run(d, "3001").await;
}

#[tokio::test]
async fn a_straggler_that_called_setsid_dies_with_its_run_in_a_process_group() {
    let d = Daemon::start_with(&[("CREWSHIP_RUN_CONTAINMENT", "process-group")]).await;
    assert!(d.log().contains("a process group per run"), "{}", d.log());
    straggler_dies_with_its_run(d, "3002").await;
}

#[tokio::test]
async fn an_agent_never_outlives_a_daemon_killed_with_9() {
    let Some(d) = with_cgroups(&[]).await else { return };
    // The first attempt execs into a process with an empty environment and
    // leaves a grandchild that also left the process group; the retry (in
    // the same working directory) just finishes.
    let script = "if [ -e first-done ]; then echo retried; exit 0; fi; touch first-done; \
                  setsid sh -c 'exec env -i sleep 3010' & exec env -i sleep 3009";
    d.crew_with_agent("alpha", 1, script).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": "alpha", "agent": "worker", "task": "t"}), 201).await;
    appears(&["sleep", "3009"]).await;
    appears(&["sleep", "3010"]).await;
    let dir = d.kill9().await;
    // The agent's own process went with the daemon.
    none_left(&["sleep", "3009"]).await;
    let d = Daemon::start_in(dir, &[]).await;
    // The grandchild went at the next start, before the retry began.
    none_left(&["sleep", "3010"]).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let id = a["id"].as_str().unwrap();
    d.await_assignment(&mut ws, id, &["completed", "failed", "cancelled"]).await;
    let row: Assignment = d.get_as(&format!("/api/v1/assignments/{id}"), 200).await;
    assert_eq!((row.status.as_str(), row.attempts), ("completed", 2), "{row:?}");
    assert_eq!(row.result_summary.as_deref(), Some("retried"));
}

#[tokio::test]
async fn a_run_timeout_ends_its_whole_cgroup() {
    let Some(d) = with_cgroups(&[]).await else { return };
    let (_, _) = d.crew_with_agent("alpha", 1, "setsid sh -c 'exec env -i sleep 3020' & exec sleep 3021").await;
    d.patch("/api/v1/crews/alpha/agents/worker", json!({"timeout_seconds": 1})).await;
    let done = d.run_to_end("alpha", "worker", "t").await;
    assert_eq!(done["status"], "failed");
    assert!(done["error_message"].as_str().unwrap().contains("timed out"), "{done}");
    none_left(&["sleep", "3020"]).await;
    none_left(&["sleep", "3021"]).await;
}
