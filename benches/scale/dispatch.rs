//! (g) End-to-end dispatch through the real daemon (release build):
//! assignments whose agent is `true`, for one crew with a budget of 8, from
//! submission to completion, on SQLite with one node and on PostgreSQL with
//! one, two and three nodes on this machine, beside the machine's raw
//! spawn rate of `true` at the same concurrency, measured in the same run.
//! Claim latency: from a submission's answer to its `assignment.running`
//! frame on a WebSocket, one at a time on an idle fleet.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::Res;
use crate::daemon::{API_TOKEN, Server, client};
use crate::stats::{Timing, median};

/// The crew's budget, and the raw baseline's concurrency.
const BUDGET: usize = 8;
/// Assignments queued before the throughput window opens.
const BACKLOG: usize = 3_000;
/// Submissions in flight while the backlog is queued.
const SUBMITTERS: usize = 32;
const LATENCY_SAMPLES: usize = 200;
const RAW_SECS: f64 = 3.0;

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub name: String,
    pub nodes: usize,
    /// Runs completed per second once the backlog was queued.
    pub runs_per_sec: f64,
    /// Against the raw spawn rate measured just before.
    pub vs_raw: f64,
    pub raw_spawns_per_sec: f64,
    pub claim: Timing,
    /// PostgreSQL transactions committed per run (pg_stat_database), the
    /// read-only ones (which flush nothing) included.
    pub commits_per_run: Option<f64>,
    /// WAL flushes to disk per run (pg_stat_wal): what the disk pays, a
    /// flush serving every commit waiting at once.
    pub wal_syncs_per_run: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub budget: usize,
    pub backlog: usize,
    pub submitters: usize,
    pub setups: Vec<Setup>,
    pub raw_spawns_per_sec: f64,
}

/// `true` spawned and reaped by `BUDGET` tasks for a few seconds: what
/// the machine can do without any daemon.
async fn raw_spawn_rate() -> Res<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(RAW_SECS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..BUDGET {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let status = tokio::process::Command::new("true").status().await;
                if status.is_ok_and(|s| s.success()) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn post(c: &reqwest::Client, base: &str, path: &str, body: Value) -> Res<Value> {
    let r = c.post(format!("{base}{path}")).bearer_auth(API_TOKEN).json(&body).send().await?;
    let status = r.status();
    let body: Value = r.json().await?;
    if !status.is_success() {
        return Err(format!("POST {path}: {status} {body}").into());
    }
    Ok(body)
}

/// Every assignment of the fleet (paged).
async fn assignments(c: &reqwest::Client, base: &str) -> Res<Vec<Value>> {
    let (mut out, mut cursor) = (Vec::new(), String::new());
    loop {
        let r: Value = c
            .get(format!("{base}/api/v1/assignments?limit=500{cursor}"))
            .bearer_auth(API_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        out.extend(r["items"].as_array().cloned().unwrap_or_default());
        match r["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(out),
        }
    }
}

/// `crewshipd_assignments{status="completed"}` on a node's page.
async fn completed(c: &reqwest::Client, base: &str) -> Res<f64> {
    let page = c.get(format!("{base}/metrics")).send().await?.text().await?;
    let line = page
        .lines()
        .find(|l| l.starts_with("crewshipd_assignments{") && l.contains("status=\"completed\""))
        .ok_or("no completed assignments series")?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

fn ms(rfc3339: &Value) -> Option<i64> {
    rfc3339.as_str().and_then(crewship::internals::domain::time::parse_rfc3339)
}

/// Submissions, one at a time, to an idle fleet: each answer to its
/// `assignment.running` frame.
async fn claim_latency(c: &reqwest::Client, bases: &[String], crew: &str) -> Res<Timing> {
    let url = format!("{}/ws", bases[0].replacen("http://", "ws://", 1));
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {API_TOKEN}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::text(json!({"type": "subscribe", "channels": ["assignments"]}).to_string())).await?;
    let mut samples = Vec::new();
    for i in 0..LATENCY_SAMPLES {
        let body = json!({"crew": crew, "agent": "nop", "task": format!("l{i}")});
        let a = post(c, &bases[i % bases.len()], "/api/v1/assignments", body).await?;
        let answered = Instant::now();
        let id = a["id"].as_str().unwrap_or_default().to_string();
        let mut running = None;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), ws.next()).await?.ok_or("ws closed")??;
            let Message::Text(t) = frame else { continue };
            let f: Value = serde_json::from_str(&t)?;
            if f["data"]["id"] == id.as_str() {
                if f["type"] == "assignment.running" && running.is_none() {
                    running = Some(answered.elapsed());
                }
                if f["type"] == "assignment.completed" || f["type"] == "assignment.failed" {
                    break;
                }
            }
        }
        samples.push(running.ok_or("no running frame")?);
    }
    Ok(Timing::of(&samples))
}

/// Commits so far in the database `db`, and WAL flushes so far in the
/// cluster (where nothing else runs meanwhile).
async fn commits(admin: &str, db: &str) -> Res<(i64, i64)> {
    let (admin, db) = (admin.to_string(), db.to_string());
    crate::postgres::blocking(move || {
        let mut c = crate::postgres::connect(&admin)?;
        let commits = c.query_one("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", &[&db])?.get(0);
        let syncs = c.query_one("SELECT wal_sync FROM pg_stat_wal", &[])?.get(0);
        Ok((commits, syncs))
    })
    .await
}

/// One setup's figures: a node per URL, each started with `extra` in its
/// environment.
pub async fn setup(
    bin: &Path,
    data: &Path,
    name: &str,
    urls: &[String],
    pg: Option<(&str, &str)>,
    extra: &[(&str, &str)],
) -> Res<Setup> {
    let mut env = vec![("CREWSHIP_METRICS_CACHE_TTL", "100ms")];
    env.extend_from_slice(extra);
    let mut nodes = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let home: PathBuf = data.join(format!("dispatch-{name}-{i}"));
        let _ = std::fs::remove_dir_all(&home);
        nodes.push(Server::daemon_on(bin, url, &home, &env).await?);
    }
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let c = client()?;
    let crew = "bench";
    post(&c, &bases[0], "/api/v1/crews", json!({"slug": crew, "name": "Bench", "max_concurrent_agents": BUDGET}))
        .await?;
    post(
        &c,
        &bases[0],
        &format!("/api/v1/crews/{crew}/agents"),
        json!({"slug": "nop", "name": "Nop", "command": ["true"]}),
    )
    .await?;
    // A warm-up: caches, first cgroups, connections.
    for i in 0..50 {
        post(&c, &bases[i % bases.len()], "/api/v1/assignments", json!({"crew": crew, "agent": "nop", "task": "w"}))
            .await?;
    }
    let claim = claim_latency(&c, &bases, crew).await?;

    let raw = raw_spawn_rate().await?;
    let before = match pg {
        Some((admin, db)) => Some(commits(admin, db).await?),
        None => None,
    };
    let warm = LATENCY_SAMPLES + 50;
    let submitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let (c, bases, submitted) = (c.clone(), bases.clone(), submitted.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = s;
            while i < BACKLOG {
                let body = json!({"crew": crew, "agent": "nop", "task": format!("b{i}")});
                post(&c, &bases[i % bases.len()], "/api/v1/assignments", body).await?;
                submitted.fetch_add(1, Ordering::Relaxed);
                i += SUBMITTERS;
            }
            Ok::<_, crate::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let queued_by = crewship::internals::domain::time::now_ms();
    // Until every run has ended, watched on the cheap page (a tiny cached
    // read), so that watching costs the daemon nearly nothing.
    let total = (BACKLOG + warm) as f64;
    while completed(&c, &bases[0]).await? < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = assignments(&c, &bases[0]).await?;
    let after = match pg {
        Some((admin, db)) => Some(commits(admin, db).await?),
        None => None,
    };
    let finished: Vec<i64> = all.iter().filter_map(|a| ms(&a["finished_at"])).collect();
    let last = finished.iter().copied().max().unwrap_or(queued_by);
    let in_window = finished.iter().filter(|f| **f > queued_by).count();
    let runs_per_sec = in_window as f64 / ((last - queued_by).max(1) as f64 / 1e3);
    let per_run = |n: i64| n as f64 / BACKLOG as f64;
    let commits_per_run = before.zip(after).map(|(b, a)| per_run(a.0 - b.0));
    let wal_syncs_per_run = before.zip(after).map(|(b, a)| per_run(a.1 - b.1));
    for n in nodes {
        n.stop().await?;
    }
    println!(
        "  {name}: {runs_per_sec:.0} runs/s ({in_window} in the window) against {raw:.0} raw spawns/s ({:.2}); claim \
         p50 {:.2} ms, p99 {:.2} ms{}",
        runs_per_sec / raw,
        claim.median_us / 1e3,
        claim.p99_us / 1e3,
        commits_per_run
            .zip(wal_syncs_per_run)
            .map(|(c, w)| format!("; {c:.1} commits, {w:.2} WAL flushes per run"))
            .unwrap_or_default()
    );
    Ok(Setup {
        name: name.to_string(),
        nodes: urls.len(),
        runs_per_sec,
        vs_raw: runs_per_sec / raw,
        raw_spawns_per_sec: raw,
        claim,
        commits_per_run,
        wal_syncs_per_run,
    })
}

pub async fn run(bin: &Path, data: &Path, admin: Option<&str>) -> Res<Report> {
    let mut setups = Vec::new();
    let store = data.join("dispatch.db");
    crate::datagen::remove_db(&store);
    setups.push(setup(bin, data, "sqlite-1", &[format!("sqlite://{}", store.display())], None, &[]).await?);
    crate::datagen::remove_db(&store);
    if let Some(admin) = admin {
        for n in 1..=3 {
            let db = format!("bench_dispatch_{n}");
            let url = crate::postgres::fresh(admin, &db).await?;
            let urls = vec![url; n];
            setups.push(setup(bin, data, &format!("postgres-{n}"), &urls, Some((admin, &db)), &[]).await?);
        }
    }
    let raw_spawns_per_sec = median(&setups.iter().map(|s| s.raw_spawns_per_sec).collect::<Vec<_>>());
    Ok(Report { budget: BUDGET, backlog: BACKLOG, submitters: SUBMITTERS, setups, raw_spawns_per_sec })
}
