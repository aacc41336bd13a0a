//! A fleet of daemons on one PostgreSQL database (the suite's PostgreSQL
//! pass): exactly-once dispatch under budgets and FIFO across nodes, a
//! node killed mid-run and its work taken back once after its lease
//! expired, cross-node cancel and events, resync after a broken feed, and
//! the singletons. Leases are short so the whole story takes seconds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::db::{self, Database};
use crate::common::pg::Cluster;
use crate::common::{Daemon, PATIENCE, sample, script};
use crate::tools::{eventually, poll_for};

const HEARTBEAT: &str = "250ms";
const LEASE: &str = "2s";
const LEASE_MS: i64 = 2_000;

/// `n` daemons on one fresh database, each with its own data directory.
async fn fleet(n: usize, extra: &[(&str, &str)]) -> (Vec<Daemon>, String) {
    let first = tempfile::tempdir().unwrap();
    let Database::Postgres(url) = Database::of(first.path()).await else { unreachable!() };
    let mut env = vec![
        ("CREWSHIP_DATABASE_URL", url.as_str()),
        ("CREWSHIP_NODE_HEARTBEAT", HEARTBEAT),
        ("CREWSHIP_NODE_LEASE", LEASE),
        ("CREWSHIP_METRICS_CACHE_TTL", "100ms"),
    ];
    env.extend_from_slice(extra);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Daemon::start_with(&env).await);
    }
    (nodes, url)
}

fn node_id(d: &Daemon) -> String {
    std::fs::read_to_string(d.data_dir().join("node-id")).unwrap().trim().to_string()
}

/// Every item of a paged list.
async fn all(d: &Daemon, path: &str) -> Vec<Value> {
    let (mut items, mut cursor) = (Vec::new(), String::new());
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let page = d.get(&format!("{path}{sep}limit=500{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        items.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return items,
        }
    }
}

/// The numeric part of a public id (`jrn_42` → 42).
fn num(id: &Value) -> i64 {
    id.as_str().and_then(|s| s.rsplit('_').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{id}"))
}

/// A WebSocket client that records every assignment frame in the
/// background.
struct Watcher {
    frames: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    async fn start(d: &Daemon) -> Watcher {
        let mut client = d.ws().await;
        client.subscribe(&["assignments"]).await;
        let frames: Arc<Mutex<Vec<Value>>> = Arc::default();
        let into = frames.clone();
        let task = tokio::spawn(async move {
            while let Some(f) = client.next().await {
                if f.get("closed").is_some() {
                    break;
                }
                into.lock().unwrap().push(f);
            }
        });
        Watcher { frames, task }
    }

    fn completed(&self) -> usize {
        self.frames.lock().unwrap().iter().filter(|f| f["type"] == "assignment.completed").count()
    }
}

/// Per crew, the largest number of records' intervals open at once.
fn most_at_once(intervals: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = intervals.iter().flat_map(|(s, e)| [(*s, 1), (*e, -1)]).collect();
    // An end before a start at the same instant: back to back is not overlap.
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

#[tokio::test]
async fn a_fleet_runs_every_assignment_once_through_a_node_crash() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let started = Instant::now();
    let (mut nodes, url) = fleet(3, &[]).await;
    let records = tempfile::tempdir().unwrap();
    let log = records.path().join("records");
    // Each run holds its slot for 0.2 s (a load, not synchronisation), so
    // runs of a crew would overlap if a budget were broken.
    let agent = script(
        records.path(),
        "agent.sh",
        &format!(
            "echo \"start $CREWSHIP_ASSIGNMENT_ID $CREWSHIP_RUN_ID $CREWSHIP_CREW $(date +%s%3N)\" >> {log}\nsleep \
             0.2\necho \"end $CREWSHIP_ASSIGNMENT_ID $CREWSHIP_RUN_ID $CREWSHIP_CREW $(date +%s%3N)\" >> {log}",
            log = log.display()
        ),
    );
    let budgets: BTreeMap<String, usize> = (0..10).map(|i| (format!("crew-{i}"), 1 + i % 4)).collect();
    for (crew, budget) in &budgets {
        let a = &nodes[0];
        a.ok("/api/v1/crews", json!({"slug": crew, "name": crew, "max_concurrent_agents": budget}), 201).await;
        a.ok(&format!("/api/v1/crews/{crew}/agents"), json!({"slug": "ww", "name": "W", "command": [agent]}), 201)
            .await;
    }
    let watcher = Watcher::start(&nodes[0]).await;
    let crews: Vec<&String> = budgets.keys().collect();
    for i in 0..500 {
        let body = json!({"crew": crews[i % 10], "agent": "ww", "task": format!("t{i}")});
        nodes[i % 3].ok("/api/v1/assignments", body, 201).await;
    }

    // Kill the third node while it runs work.
    let victim = node_id(&nodes[2]);
    let v = victim.clone();
    eventually("the third node running work", PATIENCE, || {
        let a = &nodes[0];
        let v = v.clone();
        async move {
            let running = all(a, "/api/v1/assignments?status=running").await;
            running.iter().any(|r| r["node"] == v.as_str()).then_some(())
        }
    })
    .await;
    let killed_at = crewship::internals::domain::time::now_ms();
    let _ = nodes.pop().unwrap().kill9().await;

    let w = &watcher;
    eventually("all 500 assignments completed (seen on node 1's WebSocket)", Duration::from_secs(90), || async move {
        (w.completed() >= 500).then_some(())
    })
    .await;
    let assignments = all(&nodes[1], "/api/v1/assignments").await;
    assert_eq!(assignments.len(), 500);
    for a in &assignments {
        assert_eq!(a["status"], "completed", "{a}");
    }

    // From the records (one start and at most one end per run): the run
    // the fleet recorded completed is the only one of its assignment that
    // ran to completion, but for a run that finished in the instant its
    // node died, before the node could record it (at-least-once: the fleet
    // runs it again, and says the first ended with its node). A re-run
    // started only after the dead node's lease expired; no crew ran over
    // its budget.
    #[derive(Default)]
    struct Run {
        assignment: String,
        crew: String,
        start: i64,
        end: Option<i64>,
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut runs: HashMap<String, Run> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (t, r): (i64, &mut Run) = (f[4].parse().unwrap(), runs.entry(f[2].to_string()).or_default());
        (r.assignment, r.crew) = (f[1].to_string(), f[3].to_string());
        match f[0] {
            "start" => r.start = t,
            _ => {
                assert!(r.end.is_none(), "run {} ended twice", f[2]);
                r.end = Some(t);
            }
        }
    }
    let nodes_now = nodes[0].get("/api/v1/nodes").await.body;
    let dead = nodes_now["items"].as_array().unwrap().iter().find(|n| n["id"] == victim.as_str()).unwrap().clone();
    assert_eq!(dead["state"], "expired", "{nodes_now}");
    let lease_end = chrono_ms(dead["heartbeat_at"].as_str().unwrap()) + LEASE_MS;
    let (mut reruns, mut finished_unrecorded) = (0, 0);
    for a in &assignments {
        let id = a["id"].as_str().unwrap();
        let recorded = a["run_id"].as_str().unwrap();
        assert!(runs.get(recorded).is_some_and(|r| r.end.is_some()), "{id}: its completed run left no end record");
        for (run_id, r) in runs.iter().filter(|(rid, r)| r.assignment == id && rid.as_str() != recorded) {
            reruns += 1;
            let earlier = nodes[0].get(&format!("/api/v1/runs/{run_id}")).await.body;
            assert_eq!(
                (earlier["status"].as_str(), earlier["error"].as_str(), earlier["node"].as_str()),
                (Some("cancelled"), Some("node_lost"), Some(victim.as_str())),
                "{id} was run again after {run_id}"
            );
            if let Some(end) = r.end {
                assert!(end <= killed_at + 100, "{run_id} ended at {end}, after its node was killed at {killed_at}");
                finished_unrecorded += 1;
            }
            assert!(
                runs[recorded].start >= lease_end,
                "{id} ran again at {} before the lease ended at {lease_end}",
                runs[recorded].start
            );
        }
    }
    assert!(reruns > 0, "the killed node left nothing to run again");
    eprintln!("{reruns} runs taken back from the killed node, {finished_unrecorded} of them finished as it died");
    let mut intervals: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for r in runs.values() {
        // A run killed with its node ended then.
        let end = r.end.unwrap_or(killed_at);
        intervals.entry(r.crew.as_str()).or_default().push((r.start, end.max(r.start)));
    }
    for (crew, budget) in &budgets {
        let most = most_at_once(&intervals[crew.as_str()]);
        assert!(most <= *budget, "{crew} ran {most} at once, over its budget of {budget}");
    }

    // FIFO per crew: first claims (journaled in claim order) follow the
    // queue order.
    let claims = all(&nodes[0], "/api/v1/journal?type=assignment.running").await;
    let by_id: HashMap<&str, &Value> = assignments.iter().map(|a| (a["id"].as_str().unwrap(), a)).collect();
    let mut claims: Vec<(i64, &str)> =
        claims.iter().map(|e| (num(&e["id"]), e["payload"]["assignment_id"].as_str().unwrap())).collect();
    claims.sort();
    let mut seen = BTreeSet::new();
    let mut order: HashMap<&str, Vec<(String, i64)>> = HashMap::new();
    for (_, id) in claims {
        if seen.insert(id) {
            let a = by_id[id];
            order
                .entry(a["crew"].as_str().unwrap())
                .or_default()
                .push((a["queued_at"].as_str().unwrap().to_string(), num(&a["id"])));
        }
    }
    for (crew, claimed) in &order {
        let mut sorted = claimed.clone();
        sorted.sort();
        assert_eq!(claimed, &sorted, "{crew} was not served in queue order");
    }

    // The counters equal a recount: a new node's start-up check finds no drift.
    let checker = Daemon::start_with(&[("CREWSHIP_DATABASE_URL", &url)]).await;
    assert!(!checker.log().contains("counter drift repaired"), "{}", checker.log());

    // The survivors serve the same DB block.
    let db_block = |page: &str| -> Vec<String> {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                [
                    "crewshipd_assignments",
                    "crewshipd_assignment_queue",
                    "crewshipd_agent_run_events",
                    "crewshipd_fleet_nodes",
                    "crewshipd_db_migration_version",
                    "crewshipd_pipeline_runs",
                ]
                .iter()
                .any(|p| l.starts_with(p))
                    // A node's own histogram, not the shared database's.
                    && !l.starts_with("crewshipd_assignment_queue_wait")
            })
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    eventually("the survivors serving one DB block", PATIENCE, || async move {
        let (pa, pb) = (db_block(&a.metrics().await), db_block(&b.metrics().await));
        (pa == pb && pa.iter().any(|l| l.contains("status=\"completed\"} 500"))).then_some(())
    })
    .await;
    assert_eq!(sample(&a.metrics().await, "crewshipd_fleet_nodes", Some(("state", "expired"))), Some(1.0));

    // The WebSocket on node 1 saw every transition of the work the others
    // executed, in order: the journal's transitions of each assignment.
    let watching = node_id(&nodes[0]);
    let executed_elsewhere: Vec<&Value> = assignments.iter().filter(|a| a["node"] != watching.as_str()).collect();
    assert!(executed_elsewhere.len() > 100, "{}", executed_elsewhere.len());
    let frames = watcher.frames.lock().unwrap().clone();
    let mut seen_by: HashMap<&str, Vec<&str>> = HashMap::new();
    for f in &frames {
        seen_by.entry(f["data"]["id"].as_str().unwrap()).or_default().push(f["type"].as_str().unwrap());
    }
    let journal = all(&nodes[0], "/api/v1/journal?type=assignment.*").await;
    let mut journaled: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for e in &journal {
        let id = e["payload"]["assignment_id"].as_str().unwrap().to_string();
        journaled.entry(id).or_default().push((num(&e["id"]), e["entry_type"].as_str().unwrap().to_string()));
    }
    for a in executed_elsewhere {
        let id = a["id"].as_str().unwrap();
        let mut want = journaled.remove(id).unwrap();
        want.sort();
        let want: Vec<&str> = want.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(seen_by.get(id).cloned().unwrap_or_default(), want, "the transitions of {id}");
    }
    watcher.task.abort();
    eprintln!("the fleet story took {:.1} s", started.elapsed().as_secs_f64());
}

/// RFC 3339 with milliseconds (as the API writes it) to epoch ms.
/// One assignment of `agent`, submitted to the first node, once it runs:
/// its id, its `running` frame and the index of the node running it.
async fn run_one(nodes: &[Daemon], agent: &str) -> (String, Value, usize) {
    nodes[0].ok("/api/v1/crews", json!({"slug": "cc", "name": "C"}), 201).await;
    nodes[0].ok("/api/v1/crews/cc/agents", json!({"slug": "ww", "name": "W", "command": [agent]}), 201).await;
    let mut ws = nodes[0].ws().await;
    ws.subscribe(&["assignments"]).await;
    let a = nodes[0].ok("/api/v1/assignments", json!({"crew": "cc", "agent": "ww", "task": "t"}), 201).await;
    let id = a["id"].as_str().unwrap().to_string();
    let running = nodes[0].await_assignment(&mut ws, &id, &["running"]).await;
    let node = nodes.iter().position(|d| node_id(d) == running["node"].as_str().unwrap()).unwrap();
    (id, running, node)
}

fn chrono_ms(s: &str) -> i64 {
    crewship::internals::domain::time::parse_rfc3339(s).unwrap_or_else(|| panic!("not a time: {s}"))
}

#[tokio::test]
async fn a_cancel_through_one_node_stops_the_process_on_another() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let (nodes, _) = fleet(2, &[]).await;
    let pids = tempfile::tempdir().unwrap();
    let agent = script(pids.path(), "agent.sh", &format!("echo $$ > {}/pid\nexec sleep 60", pids.path().display()));
    let (id, running, runner) = run_one(&nodes, &agent).await;
    let other = &nodes[1 - runner];
    let pid_file = pids.path().join("pid");
    let pid: i32 = eventually("the agent's pid", PATIENCE, || async {
        std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse().ok())
    })
    .await;

    let t = Instant::now();
    let r = other.post(&format!("/api/v1/assignments/{id}/cancel"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "cancelled", "{}", r.text);
    // The process on the other node goes, within about a second.
    // SAFETY: signal 0 only asks whether the process exists.
    let gone = || unsafe { libc::kill(pid, 0) } != 0;
    let stopped = poll_for(Duration::from_secs(5).saturating_sub(t.elapsed()), || async {
        if gone() { Ok(()) } else { Err(()) }
    });
    assert!(stopped.await.is_ok(), "the agent still runs {:?} after the cancel", t.elapsed());
    eprintln!("cross-node cancel stopped the process in {:?}", t.elapsed());
    let run = nodes[runner].get(&format!("/api/v1/runs/{}", running["run_id"].as_str().unwrap())).await.body;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(!nodes[runner].log().contains("could not record the end of a run"), "{}", nodes[runner].log());
}

#[tokio::test]
async fn a_broken_event_feed_tells_clients_to_resync() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let cluster = Cluster::start().await.expect("PostgreSQL");
    let d = Daemon::start_with(&[("CREWSHIP_DATABASE_URL", &cluster.url())]).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["journal"]).await;
    cluster.restart_fast().await;
    let f = ws.next_matching(|f| f["type"] == "resync").await;
    assert!(f["ts"].is_string(), "{f}");
    // Events flow again afterwards.
    eventually("a write after the restart", PATIENCE, || async {
        (d.post("/api/v1/journal", json!({"entry_type": "note", "summary": "after"})).await.status == 201).then_some(())
    })
    .await;
    ws.next_matching(|f| f["type"] == "journal.entry" && f["data"]["summary"] == "after").await;
}

#[tokio::test]
async fn the_journal_sweep_runs_on_one_node_at_a_time() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let env = [
        ("CREWSHIP_JOURNAL_ARCHIVE_AFTER", "1ms"),
        ("CREWSHIP_JOURNAL_ARCHIVE_INTERVAL", "20ms"),
        ("CREWSHIP_JOURNAL_ARCHIVE_BATCH", "3"),
    ];
    let (nodes, _) = fleet(3, &env).await;
    for i in 0..150 {
        nodes[i % 3].ok("/api/v1/journal", json!({"entry_type": "note", "summary": format!("n{i}")}), 201).await;
    }
    let a = &nodes[0];
    eventually("every entry but the newest archived", PATIENCE, || async move {
        let items = all(a, "/api/v1/journal?type=note").await;
        (items.iter().filter(|e| e["archived"] == false).count() <= 1).then_some(())
    })
    .await;
    let items = all(a, "/api/v1/journal?type=note").await;
    let ids: BTreeSet<i64> = items.iter().map(|e| num(&e["id"])).collect();
    assert_eq!((items.len(), ids.len()), (150, 150), "each entry once");
    for d in &nodes {
        assert!(!d.log().contains("journal sweep failed"), "{}", d.log());
    }
}

#[tokio::test]
async fn a_pipeline_run_outlives_the_node_that_drove_it() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let (mut nodes, _) = fleet(2, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started-once");
    // The first run of a step, on whichever node, outlasts the driver's
    // lease; the others are quick.
    let agent = script(
        dir.path(),
        "agent.sh",
        &format!("if [ -e {m} ]; then echo done; exit 0; fi; touch {m}; sleep 4; echo slow", m = marker.display()),
    );
    let a = &nodes[0];
    a.ok("/api/v1/crews", json!({"slug": "cc", "name": "C"}), 201).await;
    a.ok("/api/v1/crews/cc/agents", json!({"slug": "ww", "name": "W", "command": [agent]}), 201).await;
    let steps = json!([{"id": "s", "crew": "cc", "agent": "ww", "task": "x"}, {"id": "t", "crew": "cc", "agent": "ww", "task": "y"}]);
    a.ok("/api/v1/pipelines", json!({"slug": "pp", "name": "P", "steps": steps}), 201).await;
    let run = a.ok("/api/v1/pipelines/pp/runs", json!({}), 201).await;
    let id = run["id"].as_str().unwrap().to_string();
    eventually("the first step running", PATIENCE, || async { marker.exists().then_some(()) }).await;
    // The node that drives the run dies (it took the run when it was
    // started): the other takes it over once its lease ended.
    let _ = nodes.remove(0).kill9().await;
    let b = &nodes[0];
    let mut ws = b.ws().await;
    ws.subscribe(&["pipeline_runs"]).await;
    let current = b.get(&format!("/api/v1/pipeline-runs/{id}")).await.body;
    if current["status"] != "completed" {
        ws.next_matching(|f| f["data"]["id"] == id.as_str() && f["data"]["status"] != "running").await;
    }
    let done = b.get(&format!("/api/v1/pipeline-runs/{id}")).await.body;
    assert_eq!(done["status"], "completed", "{done}");
    let assignments = all(b, "/api/v1/assignments").await;
    assert_eq!(assignments.len(), 2, "each step started once: {assignments:?}");
}

/// One container per crew per node that runs its work: a node that claims
/// work of a docker crew whose container lives on another node brings up
/// its own, named and labelled with it, and counts it in its own series.
#[tokio::test]
async fn each_node_runs_a_docker_crew_in_a_container_of_its_own() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let engine = crate::common::fake_docker::FakeDocker::start().await;
    let host = engine.host();
    let (mut nodes, _) = fleet(2, &[("DOCKER_HOST", &host), ("CREWSHIP_STATS_INTERVAL", "100ms")]).await;
    let a = &nodes[0];
    let crew = a
        .ok("/api/v1/crews", json!({"slug": "dock", "name": "D", "runtime": "docker", "image": "alpine:3.20"}), 201)
        .await;
    a.ok("/api/v1/crews/dock/agents", json!({"slug": "ww", "name": "W", "command": ["sh", "-c", "echo hi"]}), 201)
        .await;
    let first = node_id(a);
    assert_eq!(engine.containers().len(), 1, "the node that created the crew brings up its container");
    // With the first node gone, the other runs the crew's work.
    let _ = nodes.remove(0).kill9().await;
    let b = &nodes[0];
    let second = node_id(b);
    let done = b.run_to_end("dock", "ww", "t").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["node"], second.as_str());
    let crew_id = crew["id"].as_str().unwrap();
    let mut names: Vec<String> = engine.containers().into_iter().map(|c| c.name).collect();
    names.sort();
    let mut want = vec![format!("crewship-dock-{crew_id}-{first}"), format!("crewship-dock-{crew_id}-{second}")];
    want.sort();
    assert_eq!(names, want);
    let exec = engine
        .execs()
        .into_iter()
        .find(|e| e.env.iter().any(|v| v.ends_with(done["run_id"].as_str().unwrap())))
        .unwrap();
    let theirs = engine.containers().into_iter().find(|c| c.labels.get("crewship.node") == Some(&second)).unwrap();
    assert_eq!(exec.container_id, theirs.id);
    eventually("the container in this node's own series", PATIENCE, || async {
        (sample(&b.metrics().await, "crewshipd_containers_tracked", None) == Some(1.0)).then_some(())
    })
    .await;
}

/// A store without other daemons is a fleet of one node, whatever the
/// backend: this daemon, live, under the id its data dir keeps, also
/// after a restart; `crewship nodes` shows it.
#[tokio::test]
async fn a_lone_daemon_is_a_fleet_of_one_node() {
    let d = Daemon::start().await;
    let id = node_id(&d);
    let one = |body: &Value| {
        let items = body["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 1, "{body}");
        items[0].clone()
    };
    let n = one(&d.get("/api/v1/nodes").await.body);
    assert_eq!(
        (n["id"].as_str(), n["state"].as_str(), n["hostname"].as_str()),
        (Some(id.as_str()), Some("live"), Some("test-host"))
    );
    assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&d.metrics().await, "crewshipd_fleet_nodes", Some(("state", "live"))), Some(1.0));
    let d = d.restart_after_kill9().await;
    let again = one(&d.get("/api/v1/nodes").await.body);
    assert_eq!((again["id"].as_str(), again["state"].as_str()), (Some(id.as_str()), Some("live")));
    assert!(again["started_at"].as_str() > n["started_at"].as_str(), "{again} {n}");
    let out = std::process::Command::new(crate::common::cli_bin())
        .args(["--url", &d.base, "--token", &d.token, "nodes"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&id) && text.contains("live"), "{text}");
}

/// A node that comes back from a pause longer than its lease finds the
/// fleet took its run back: it cannot overwrite that (the run stays as the
/// fleet recorded it), it stops the process it still had, and it
/// registers afresh.
#[tokio::test]
async fn a_node_back_from_a_long_pause_is_fenced() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let (nodes, _) = fleet(2, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (marker, pidfile) = (dir.path().join("tried"), dir.path().join("pid"));
    let agent = script(
        dir.path(),
        "agent.sh",
        &format!(
            "if [ -e {m} ]; then echo done; exit 0; fi; touch {m}; echo $$ > {p}; exec sleep 300",
            m = marker.display(),
            p = pidfile.display()
        ),
    );
    let (id, first, paused) = run_one(&nodes, &agent).await;
    let (paused, live) = (&nodes[paused], &nodes[1 - paused]);
    let pid: i32 = eventually("the first run's pid", PATIENCE, || async {
        std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse().ok())
    })
    .await;

    paused.signal(libc::SIGSTOP);
    let mut live_ws = live.ws().await;
    live_ws.subscribe(&["assignments"]).await;
    let done = live.await_assignment(&mut live_ws, &id, &["completed"]).await;
    assert_eq!(done["node"], node_id(live).as_str(), "{done}");
    paused.signal(libc::SIGCONT);

    // SAFETY: signal 0 only asks whether the process exists.
    let alive = || unsafe { libc::kill(pid, 0) } == 0;
    eventually("the paused node stopping its run and registering again", PATIENCE, || async {
        (!alive() && paused.log().contains("registered again")).then_some(())
    })
    .await;
    let run = live.get(&format!("/api/v1/runs/{}", first["run_id"].as_str().unwrap())).await.body;
    assert_eq!((run["status"].as_str(), run["error"].as_str()), (Some("cancelled"), Some("node_lost")), "{run}");
    let now = live.get(&format!("/api/v1/assignments/{id}")).await.body;
    assert_eq!((now["status"].as_str(), now["run_id"].as_str()), (Some("completed"), done["run_id"].as_str()));
    let nodes_now = live.get("/api/v1/nodes").await.body;
    for n in nodes_now["items"].as_array().unwrap() {
        assert_eq!(n["state"], "live", "{nodes_now}");
    }
}

/// An expired node whose runs were taken back is forgotten after
/// `CREWSHIP_NODE_FORGET_AFTER`: the node list and `crewshipd_fleet_nodes`
/// stop counting it, so the expired count says what is recent.
#[tokio::test]
async fn an_expired_node_is_forgotten_once_its_runs_are_back() {
    if !db::postgres_only("a fleet shares one PostgreSQL database") {
        return;
    }
    let (mut nodes, _url) = fleet(2, &[("CREWSHIP_NODE_FORGET_AFTER", "1s")]).await;
    let lost = nodes.pop().unwrap();
    let lost_id = node_id(&lost);
    let _dir = lost.kill9().await;
    let survivor = &nodes[0];
    let me = node_id(survivor);
    eventually("the lost node forgotten", PATIENCE, || async {
        let listed = all(survivor, "/api/v1/nodes").await;
        let ids: Vec<&str> = listed.iter().filter_map(|n| n["id"].as_str()).collect();
        (ids == [me.as_str()]).then_some(())
    })
    .await;
    let log = survivor.log();
    assert!(log.contains("took back the runs of expired nodes"), "recovered first:\n{log}");
    assert!(log.contains("forgot expired nodes"), "{log}");
    assert!(!all(survivor, "/api/v1/nodes").await.iter().any(|n| n["id"] == lost_id.as_str()));
    let expired = eventually("no expired node counted", PATIENCE, || async {
        let page = survivor.metrics().await;
        sample(&page, "crewshipd_fleet_nodes", Some(("state", "expired"))).filter(|v| *v == 0.0)
    })
    .await;
    assert_eq!(expired, 0.0);
}
