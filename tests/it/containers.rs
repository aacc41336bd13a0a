//! Crew containers against a fake Docker Engine on a unix socket: the
//! daemon's real Engine API client creates, starts, stops, removes and
//! finds containers again, samples their stats, and runs agents inside
//! them.

use serde_json::{Value, json};

use crate::common::fake_docker::{self, FakeDocker};
use crate::common::{Daemon, PATIENCE, sample};
use crate::tools::{eventually, gone, poll_for};

/// A fast collector and an uncached /metrics, so changes show at once.
async fn daemon(engine: &FakeDocker) -> Daemon {
    Daemon::start_with(&[
        ("DOCKER_HOST", &engine.host()),
        ("CREWSHIP_STATS_INTERVAL", "100ms"),
        ("CREWSHIP_METRICS_CACHE_TTL", "1ms"),
        ("CREWSHIP_CANCEL_GRACE", "2s"),
    ])
    .await
}

async fn docker_crew(d: &Daemon, slug: &str) -> Value {
    d.ok("/api/v1/crews", json!({"slug": slug, "name": slug, "runtime": "docker", "image": "alpine:3.20"}), 201).await
}

/// (tracked, reporting) as /metrics prints them.
async fn container_gauges(d: &Daemon) -> (f64, f64) {
    let page = d.metrics().await;
    let tracked = sample(&page, "crewshipd_containers_tracked", None).expect("containers_tracked on /metrics");
    let reporting = sample(&page, "crewshipd_containers_reporting", None).expect("containers_reporting on /metrics");
    (tracked, reporting)
}

/// Polls /metrics until the container gauges read `want`: nothing sends an
/// event when a sample fails to arrive, so this is a bounded poll.
async fn await_gauges(d: &Daemon, want: (f64, f64)) {
    let reached = poll_for(PATIENCE, || async {
        let got = container_gauges(d).await;
        if got == want { Ok(()) } else { Err(got) }
    });
    if let Err(got) = reached.await {
        panic!("container gauges stayed {got:?}, wanted {want:?}");
    }
}

/// The next `container.sample` event about `container_id`.
async fn next_sample(ws: &mut crate::common::ws::Client, container_id: &str) -> Value {
    ws.next_matching(|f| f["type"] == "container.sample" && f["data"]["container_id"] == container_id).await
}

async fn journal(d: &Daemon, entry_type: &str, crew: &str) -> Vec<Value> {
    let r = d.get(&format!("/api/v1/journal?type={entry_type}&crew={crew}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

fn assert_fake_numbers(s: &Value) {
    assert!((s["cpu_percent"].as_f64().unwrap() - fake_docker::CPU_PERCENT).abs() < 1e-9, "{s}");
    assert_eq!(s["memory_used_bytes"], fake_docker::MEMORY_USED, "{s}");
    assert_eq!(s["memory_limit_bytes"], fake_docker::MEMORY_LIMIT, "{s}");
    assert_eq!(s["net_rx_bytes"], fake_docker::NET_RX, "{s}");
    assert_eq!(s["net_tx_bytes"], fake_docker::NET_TX, "{s}");
    assert_eq!(s["pids"], fake_docker::PIDS, "{s}");
}

#[tokio::test]
async fn a_docker_crew_gets_a_tracked_container_with_fresh_stats() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["containers"]).await;
    let mut crew_ws = d.ws().await;
    crew_ws.subscribe(&["crew:alpha"]).await;

    let crew = docker_crew(&d, "alpha").await;
    let crew_id = crew["id"].as_str().unwrap();
    let c = engine.container_of(crew_id).expect("a container labelled with the crew's id");
    // One container per crew per node: the node is in its name and labels.
    let node = std::fs::read_to_string(d.data_dir().join("node-id")).unwrap().trim().to_string();
    assert_eq!(c.name, format!("crewship-alpha-{crew_id}-{node}"));
    assert_eq!(c.labels.get("crewship.crew").map(String::as_str), Some("alpha"));
    assert_eq!(c.labels.get("crewship.node"), Some(&node));
    assert_eq!(c.image, "alpine:3.20");
    assert!(c.running, "the container was created but not started");
    assert_eq!([c.entrypoint.clone(), c.cmd.clone()].concat(), ["sleep", "infinity"]);
    assert!(c.init, "no init process to reap the agents' orphans");

    let event = next_sample(&mut ws, &c.id).await;
    assert_eq!(event["channel"], "containers");
    assert_eq!(event["data"]["crew"], "alpha");
    assert_fake_numbers(&event["data"]);
    let on_crew = next_sample(&mut crew_ws, &c.id).await;
    assert_eq!(on_crew["channel"], "crew:alpha");
    let stats = requests_matching(&engine, "/stats");
    assert!(
        !stats.is_empty() && stats.iter().all(|r| r.contains("stream=false") && r.contains("one-shot=true")),
        "{stats:?}"
    );

    let listed = d.get("/api/v1/containers").await;
    assert_eq!(listed.status, 200);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.text);
    assert_eq!(items[0]["container_id"], c.id.as_str());
    assert_eq!(items[0]["crew"], "alpha");
    assert_fake_numbers(&items[0]);
    let sampled_at = items[0]["sampled_at"].as_str().expect("sampled_at");
    assert!(humantime::parse_rfc3339(sampled_at).is_ok(), "{sampled_at}");

    await_gauges(&d, (1.0, 1.0)).await;
    let started = journal(&d, "container.started", "alpha").await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["payload"]["container_id"], c.id.as_str());
}

fn requests_matching(engine: &FakeDocker, part: &str) -> Vec<String> {
    engine.requests().into_iter().filter(|r| r.contains(part)).collect()
}

#[tokio::test]
async fn a_container_that_stops_answering_stops_reporting_but_stays_tracked() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["containers"]).await;
    let quiet = engine.container_of(docker_crew(&d, "quiet").await["id"].as_str().unwrap()).unwrap();
    let chatty = engine.container_of(docker_crew(&d, "chatty").await["id"].as_str().unwrap()).unwrap();
    next_sample(&mut ws, &quiet.id).await;
    next_sample(&mut ws, &chatty.id).await;
    await_gauges(&d, (2.0, 2.0)).await;

    engine.mute(&quiet.id);
    await_gauges(&d, (2.0, 1.0)).await;
    // The hung container holds up nobody: the other keeps reporting.
    let later = next_sample(&mut ws, &chatty.id).await;
    assert_fake_numbers(&later["data"]);
    assert_eq!(container_gauges(&d).await, (2.0, 1.0));
    let listed = d.get("/api/v1/containers").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");

    // A stopped container still answers stats, with an empty reading: that
    // is no sample either.
    engine.stop_behind_the_back(&chatty.id);
    await_gauges(&d, (2.0, 0.0)).await;
}

#[tokio::test]
async fn stop_and_start_endpoints() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["containers"]).await;
    let crew_id = docker_crew(&d, "beta").await["id"].as_str().unwrap().to_string();
    let id = engine.container_of(&crew_id).unwrap().id;
    next_sample(&mut ws, &id).await;

    let stopped = d.post("/api/v1/crews/beta/container/stop", json!({})).await;
    assert_eq!(stopped.status, 200, "{}", stopped.text);
    assert_eq!(stopped.body["container_id"], id.as_str());
    assert_eq!(stopped.body["running"], false);
    assert!(!engine.container_of(&crew_id).unwrap().running);
    // Stopped on purpose is not "not answering": it is no longer tracked.
    await_gauges(&d, (0.0, 0.0)).await;
    assert_eq!(d.get("/api/v1/containers").await.body["items"], json!([]));
    assert_eq!(journal(&d, "container.stopped", "beta").await.len(), 1);

    let started = d.post(&format!("/api/v1/crews/{crew_id}/container/start"), json!({})).await;
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(started.body["running"], true);
    assert_eq!(started.body["container_id"], id.as_str(), "the stopped container was not reused");
    assert!(engine.container_of(&crew_id).unwrap().running);
    next_sample(&mut ws, &id).await;
    await_gauges(&d, (1.0, 1.0)).await;
    assert_eq!(journal(&d, "container.started", "beta").await.len(), 2);

    let unknown = d.post("/api/v1/crews/nobody/container/start", json!({})).await;
    assert_eq!((unknown.status.as_u16(), unknown.code()), (404, "not_found"), "{}", unknown.text);
    d.ok("/api/v1/crews", json!({"slug": "home", "name": "Home"}), 201).await;
    for action in ["start", "stop"] {
        let local = d.post(&format!("/api/v1/crews/home/container/{action}"), json!({})).await;
        assert_eq!((local.status.as_u16(), local.code()), (409, "conflict"), "{}", local.text);
    }
}

#[tokio::test]
async fn deleting_a_docker_crew_removes_its_container() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let crew_id = docker_crew(&d, "gamma").await["id"].as_str().unwrap().to_string();
    assert!(engine.container_of(&crew_id).is_some());
    await_gauges(&d, (1.0, 1.0)).await;

    let r = d.delete("/api/v1/crews/gamma").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(engine.containers().is_empty(), "{:?}", engine.containers());
    assert_eq!(d.get("/api/v1/containers").await.body["items"], json!([]));
    await_gauges(&d, (0.0, 0.0)).await;
    let stopped = journal(&d, "container.stopped", &crew_id).await;
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(stopped[0]["payload"]["removed"], true);
}

#[tokio::test]
async fn a_restarted_daemon_finds_its_containers_again() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let crew_id = docker_crew(&d, "delta").await["id"].as_str().unwrap().to_string();
    let id = engine.container_of(&crew_id).unwrap().id;
    await_gauges(&d, (1.0, 1.0)).await;
    let (status, dir) = d.terminate().await;
    assert!(status.success());
    // While the daemon was down, the container stopped (a host reboot).
    engine.stop_behind_the_back(&id);

    let env = [
        ("DOCKER_HOST", engine.host()),
        ("CREWSHIP_STATS_INTERVAL", "100ms".to_string()),
        ("CREWSHIP_METRICS_CACHE_TTL", "1ms".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_in(dir, &env).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["containers"]).await;
    let event = next_sample(&mut ws, &id).await;
    assert_eq!(event["data"]["crew"], "delta");
    assert_eq!(engine.containers().len(), 1, "the container was created anew: {:?}", engine.containers());
    assert!(engine.container_of(&crew_id).unwrap().running, "the stopped container was not started");
    await_gauges(&d, (1.0, 1.0)).await;
    assert_eq!(journal(&d, "container.started", "delta").await.len(), 2);
}

/// The fake's exec of a run, found by the run id in its environment.
fn exec_of_run(engine: &FakeDocker, run_id: &str) -> fake_docker::Exec {
    let marker = format!("CREWSHIP_RUN_ID={run_id}");
    engine.execs().into_iter().find(|e| e.env.contains(&marker)).expect("an exec for the run")
}

#[tokio::test]
async fn agents_of_a_docker_crew_run_inside_its_container() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let crew_id = docker_crew(&d, "eps").await["id"].as_str().unwrap().to_string();
    let container = engine.container_of(&crew_id).unwrap();
    let script =
        "read task; echo \"did $task for $CREWSHIP_CREW/$CREWSHIP_AGENT ($MOOD)\"; echo warn >&2; exit ${CODE:-0}";
    for (slug, code) in [("ok", "0"), ("bad", "3")] {
        d.ok(
            "/api/v1/crews/eps/agents",
            json!({"slug": slug, "name": slug, "command": ["sh", "-c", script], "env": {"MOOD": "calm", "CODE": code}}),
            201,
        )
        .await;
    }

    let done = d.run_to_end("eps", "ok", "laundry").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result_summary"], "did laundry for eps/ok (calm)");
    let run_id = done["run_id"].as_str().unwrap();
    let output = d.get(&format!("/api/v1/runs/{run_id}/output")).await.text;
    assert!(output.contains("did laundry") && output.contains("warn"), "{output}");
    let exec = exec_of_run(&engine, run_id);
    assert_eq!(exec.container_id, container.id);
    assert_eq!(exec.cmd[exec.cmd.len() - 3..], ["sh", "-c", script], "{:?}", exec.cmd);
    for var in [format!("CREWSHIP_ASSIGNMENT_ID={}", done["id"].as_str().unwrap()), "CREWSHIP_CREW=eps".into()] {
        assert!(exec.env.contains(&var), "{var} missing from {:?}", exec.env);
    }

    let failed = d.run_to_end("eps", "bad", "dishes").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_message"], "exit status 3: warn", "the exec's last stderr line is quoted");
    let run = d.get(&format!("/api/v1/runs/{}", failed["run_id"].as_str().unwrap())).await.body;
    assert_eq!(run["status"], "failed");
    assert_eq!(exec_of_run(&engine, failed["run_id"].as_str().unwrap()).exit_code, Some(3));
}

/// Submits a task to `agent` of `crew` and waits until it runs; returns the
/// running assignment and the WebSocket watching assignments.
async fn start_running(d: &Daemon, crew: &str, agent: &str) -> (Value, crate::common::ws::Client) {
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": crew, "agent": agent, "task": "x"}), 201).await;
    let running = d.await_assignment(&mut ws, a["id"].as_str().unwrap(), &["running"]).await;
    (running, ws)
}

#[tokio::test]
async fn timeout_and_cancel_stop_processes_in_the_container() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    docker_crew(&d, "zeta").await;
    let sleeper = json!(["sh", "-c", "echo started; exec sleep 60"]);
    // The fake runs execs on this host, so the grandchild's pid is readable here.
    let pidfile = d.data_dir().join("grandchild.pid");
    let spawner = json!(["sh", "-c", format!("sleep 60 & echo $! > {}; echo started; wait", pidfile.display())]);
    d.ok(
        "/api/v1/crews/zeta/agents",
        json!({"slug": "slow", "name": "S", "command": spawner, "timeout_seconds": 1}),
        201,
    )
    .await;
    d.ok("/api/v1/crews/zeta/agents", json!({"slug": "long", "name": "L", "command": sleeper}), 201).await;

    let timed_out = d.run_to_end("zeta", "slow", "x").await;
    assert_eq!(timed_out["status"], "failed");
    assert_eq!(timed_out["error_message"], "timed out after 1s");
    let run = d.get(&format!("/api/v1/runs/{}", timed_out["run_id"].as_str().unwrap())).await.body;
    assert_eq!(run["status"], "timeout");
    let exec = exec_of_run(&engine, timed_out["run_id"].as_str().unwrap());
    assert!(!exec.running, "the timed-out process is still running");
    assert!(engine.execs().iter().any(|e| e.cmd.last().is_some_and(|c| c.contains("kill -KILL"))));
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(gone(grandchild).await, "grandchild {grandchild} survived the timeout");

    let (running, _ws) = start_running(&d, "zeta", "long").await;
    let id = running["id"].as_str().unwrap();
    let run_id = running["run_id"].as_str().unwrap();
    d.await_output(run_id, "started").await;
    let cancelled = d.post(&format!("/api/v1/assignments/{id}/cancel"), json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["status"], "cancelled");
    let exec = exec_of_run(&engine, run_id);
    assert!(!exec.running, "the cancelled process is still running");
    assert_eq!(exec.exit_code, Some(128 + 15), "not ended by SIGTERM: {exec:?}");
    let run = d.get(&format!("/api/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "cancelled");
}

#[tokio::test]
async fn a_container_that_cannot_start_is_journaled_and_the_crew_stays() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let crew = d
        .ok(
            "/api/v1/crews",
            json!({"slug": "eta", "name": "Eta", "runtime": "docker", "image": "no-such/image:1"}),
            201,
        )
        .await;
    assert_eq!(d.get("/api/v1/crews/eta").await.status, 200);
    assert!(engine.containers().is_empty());
    let errors = journal(&d, "container.error", "eta").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["severity"], "error");
    assert!(errors[0]["summary"].as_str().unwrap().contains("No such image"), "{}", errors[0]);
    assert_eq!(errors[0]["payload"]["action"], "start");
    assert_eq!(crew["runtime"], "docker");
    await_gauges(&d, (0.0, 0.0)).await;
}

#[tokio::test]
async fn without_an_engine_local_crews_work_and_container_endpoints_answer_503() {
    let nowhere = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", nowhere.path().join("docker.sock").display());
    let d = Daemon::start_with(&[("DOCKER_HOST", &host), ("CREWSHIP_STATS_INTERVAL", "100ms")]).await;
    assert!(d.log().contains("docker engine unreachable"), "{}", d.log());

    d.crew_with_agent("local", 1, "cat").await;
    let done = d.run_to_end("local", "worker", "still works").await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result_summary"], "still works");

    d.ok("/api/v1/crews", json!({"slug": "boxed", "name": "B", "runtime": "docker", "image": "alpine:3.20"}), 201)
        .await;
    let errors = journal(&d, "container.error", "boxed").await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    for action in ["start", "stop"] {
        let r = d.post(&format!("/api/v1/crews/boxed/container/{action}"), json!({})).await;
        assert_eq!((r.status.as_u16(), r.code()), (503, "unavailable"), "{}", r.text);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(&host), "{}", r.text);
    }
    let local = d.post("/api/v1/crews/local/container/start", json!({})).await;
    assert_eq!(local.status, 409);
    assert_eq!(d.get("/api/v1/containers").await.body["items"], json!([]));
}

/// A daemon killed with SIGKILL leaves its agent running in the container:
/// the next one kills it at start-up, before it requeues the work, so the
/// assignment never runs twice at once.
#[tokio::test]
async fn a_run_left_in_a_container_by_a_killed_daemon_is_killed_at_start_up() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    docker_crew(&d, "eta").await;
    let sleeper = json!(["sh", "-c", "echo started; exec sleep 60"]);
    d.ok("/api/v1/crews/eta/agents", json!({"slug": "long", "name": "L", "command": sleeper}), 201).await;
    let (running, ws) = start_running(&d, "eta", "long").await;
    let id = running["id"].as_str().unwrap().to_string();
    let old_run = running["run_id"].as_str().unwrap().to_string();
    d.await_output(&old_run, "started").await;
    drop(ws);

    let d = d.restart_after_kill9().await;
    let engine = &engine;
    let old_run = &old_run;
    let old = eventually("the old process to end", PATIENCE, move || async move {
        Some(exec_of_run(engine, old_run)).filter(|e| !e.running)
    })
    .await;
    assert_eq!(old.exit_code, Some(128 + 9), "not ended by SIGKILL: {old:?}");
    let dd = &d;
    let id = &id;
    let again = eventually("the second attempt to run", PATIENCE, move || async move {
        let a = dd.get(&format!("/api/v1/assignments/{id}")).await.body;
        (a["status"] == "running" && a["attempts"] == 2).then_some(a)
    })
    .await;
    assert_ne!(again["run_id"], old_run.as_str());
    let new_run = again["run_id"].as_str().unwrap();
    let new = eventually("the second attempt's process", PATIENCE, move || async move {
        let marker = format!("CREWSHIP_RUN_ID={new_run}");
        engine.execs().into_iter().find(|e| e.running && e.env.contains(&marker))
    })
    .await;
    let marker = format!("CREWSHIP_ASSIGNMENT_ID={id}");
    let live: Vec<_> = engine.execs().into_iter().filter(|e| e.running && e.env.contains(&marker)).collect();
    assert_eq!(live.iter().map(|e| &e.id).collect::<Vec<_>>(), [&new.id], "{live:?}");
    let run = d.get(&format!("/api/v1/runs/{old_run}")).await.body;
    assert_eq!((run["status"].as_str(), run["error"].as_str()), (Some("cancelled"), Some("server_restart")));
}

/// An image the engine does not have is pulled (one tag, `latest` when the
/// crew names none), then the container is created; an image that cannot
/// be pulled says so.
#[tokio::test]
async fn a_missing_image_is_pulled_before_the_container_is_created() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let crew = d
        .ok("/api/v1/crews", json!({"slug": "theta", "name": "T", "runtime": "docker", "image": "remote/tools"}), 201)
        .await;
    let container = engine.container_of(crew["id"].as_str().unwrap()).expect("a container after the pull");
    assert!(container.running);
    assert_eq!(container.image, "remote/tools");
    let pulls = requests_matching(&engine, "/images/create");
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].contains("fromImage=remote/tools") && pulls[0].contains("tag=latest"), "{pulls:?}");

    d.ok("/api/v1/crews", json!({"slug": "iota", "name": "I", "runtime": "docker", "image": "no-such/tool:2"}), 201)
        .await;
    let errors = journal(&d, "container.error", "iota").await;
    let summary = errors[0]["summary"].as_str().unwrap();
    assert!(summary.contains("No such image") && summary.contains("pull access denied"), "{summary}");
}

/// A new image replaces the crew's container; while agents run in it, the
/// change is refused (it would kill them) and nothing changes.
#[tokio::test]
async fn a_new_image_replaces_the_container_once_no_agent_runs() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    let crew_id = docker_crew(&d, "kappa").await["id"].as_str().unwrap().to_string();
    let old = engine.container_of(&crew_id).unwrap();
    d.ok("/api/v1/crews/kappa/agents", json!({"slug": "long", "name": "L", "command": ["sleep", "60"]}), 201).await;
    let (running, mut ws) = start_running(&d, "kappa", "long").await;
    let id = running["id"].as_str().unwrap();

    let refused = d.patch("/api/v1/crews/kappa", json!({"image": "alpine:3.21"})).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("1 running agent"), "{}", refused.text);
    assert_eq!(d.get("/api/v1/crews/kappa").await.body["image"], "alpine:3.20");
    let blank = d.patch("/api/v1/crews/kappa", json!({"image": " "})).await;
    assert_eq!(blank.status, 422, "{}", blank.text);

    d.post(&format!("/api/v1/assignments/{id}/cancel"), json!({})).await;
    d.await_assignment(&mut ws, id, &["cancelled"]).await;
    let patched = d.patch("/api/v1/crews/kappa", json!({"image": "alpine:3.21"})).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["image"], "alpine:3.21");
    let new = engine.container_of(&crew_id).unwrap();
    assert_ne!(new.id, old.id);
    assert_eq!(new.image, "alpine:3.21");
    assert!(new.running);
    assert_eq!(engine.containers().len(), 1, "the old container stayed: {:?}", engine.containers());
    assert_eq!(journal(&d, "container.started", "kappa").await.len(), 2);
}

/// The same crash, but the engine is gone when the daemon comes back:
/// start-up does not wait for it, says what it could not do, and settles
/// the run all the same.
#[tokio::test]
async fn recovery_without_the_engine_says_so_and_goes_on() {
    let engine = FakeDocker::start().await;
    let d = daemon(&engine).await;
    docker_crew(&d, "lambda").await;
    d.ok("/api/v1/crews/lambda/agents", json!({"slug": "long", "name": "L", "command": ["sleep", "60"]}), 201).await;
    let (running, ws) = start_running(&d, "lambda", "long").await;
    drop(ws);

    let dir = d.kill9().await;
    let nowhere = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", nowhere.path().join("docker.sock").display());
    let d = Daemon::start_in(dir, &[("DOCKER_HOST", &host)]).await;
    assert!(d.log().contains("cannot reach the container of a run an earlier daemon left"), "{}", d.log());
    let run = d.get(&format!("/api/v1/runs/{}", running["run_id"].as_str().unwrap())).await.body;
    assert_eq!((run["status"].as_str(), run["error"].as_str()), (Some("cancelled"), Some("server_restart")));
}
