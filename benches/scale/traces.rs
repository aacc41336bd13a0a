//! (h) What tracing costs: the real daemon with no endpoint against the
//! same daemon exporting every span to a local OTLP receiver, side by side
//! in one run, on three paths: run throughput (phase (g)'s dispatch on
//! SQLite), the write path (LLM calls recorded by concurrent clients) and
//! /metrics serving (wrk). Each pair is measured off, on, on, off, so a
//! drift of the shared machine falls on both sides alike.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use crate::Res;
use crate::daemon::{API_TOKEN, Server, client, cpu_seconds, metric, wrk_on};

const WRITERS: usize = 16;
const WRITE_SECS: f64 = 5.0;
const SCRAPE_SECS: u32 = 5;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sides {
    pub off: f64,
    pub on: f64,
    /// Server CPU per operation, µs.
    pub off_cpu_us: f64,
    pub on_cpu_us: f64,
}

impl Sides {
    pub fn ratio(&self) -> f64 {
        self.on / self.off.max(f64::MIN_POSITIVE)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Runs per second, agent `true`, budget 8.
    pub runs: Sides,
    /// LLM calls recorded per second.
    pub writes: Sides,
    /// /metrics requests per second.
    pub scrapes: Sides,
    /// What reached the receiver while tracing was on.
    pub exports: u64,
    pub exported_bytes: u64,
    /// Spans the daemons dropped while on (queue full or refused).
    pub dropped: f64,
}

/// A receiver that takes every export and answers 200 without decoding,
/// so it costs the shared CPUs as little as a collector's front door.
struct Receiver {
    url: String,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

async fn receiver() -> Res<Receiver> {
    let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, b) = (requests.clone(), bytes.clone());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            r.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(body.len() as u64, Ordering::Relaxed);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Receiver { url, requests, bytes })
}

/// LLM calls recorded by `WRITERS` clients for a few seconds: calls/s and
/// the daemon's CPU per call.
async fn writes(server: &Server) -> Res<(f64, f64)> {
    let c = client()?;
    let done = Arc::new(AtomicU64::new(0));
    let cpu = cpu_seconds(server.pid)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(WRITE_SECS);
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (c, done, url) = (c.clone(), done.clone(), server.url("/api/v1/llm-calls"));
        tasks.push(tokio::spawn(async move {
            let body = json!({"provider": "anthropic", "model": "claude-x", "input_tokens": 1200,
                "output_tokens": 300, "cost_usd": 0.01, "duration_ms": 900});
            while Instant::now() < deadline {
                let r = c.post(&url).bearer_auth(API_TOKEN).json(&body).send().await?;
                if !r.status().is_success() {
                    return Err(format!("llm-calls: {}", r.status()).into());
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, crate::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n = done.load(Ordering::Relaxed) as f64;
    Ok((n / started.elapsed().as_secs_f64(), (cpu_seconds(server.pid)? - cpu) * 1e6 / n.max(1.0)))
}

pub async fn run(bin: &Path, data: &Path) -> Res<Report> {
    let r = receiver().await?;
    let (mut runs, mut writes_, mut scrapes) = (Sides::default(), Sides::default(), Sides::default());
    let mut dropped = 0.0;
    let c = client()?;
    for (i, on) in [false, true, true, false].into_iter().enumerate() {
        let env: Vec<(&str, &str)> = if on { vec![("OTEL_EXPORTER_OTLP_ENDPOINT", r.url.as_str())] } else { vec![] };
        let label = if on { "on" } else { "off" };
        let store = data.join("traces.db");
        crate::datagen::remove_db(&store);
        let url = format!("sqlite://{}", store.display());
        let setup = crate::dispatch::setup(bin, data, &format!("traces-{label}-{i}"), &[url], None, &env).await?;
        crate::datagen::remove_db(&store);
        let home = data.join(format!("traces-{label}-{i}"));
        let _ = std::fs::remove_dir_all(&home);
        let mut server_env = vec![("CREWSHIP_METRICS_CACHE_TTL", "100ms")];
        server_env.extend_from_slice(&env);
        let server = Server::daemon_on(bin, &format!("sqlite://{}", store.display()), &home, &server_env).await?;
        let (w, w_cpu) = writes(&server).await?;
        let s = wrk_on(server.pid, &server.url("/metrics"), 2, 4, SCRAPE_SECS, false).await?;
        if on {
            dropped += metric(&c, &server.base, "crewshipd_otlp_spans_dropped_total").await?;
        }
        server.stop().await?;
        crate::datagen::remove_db(&store);
        println!(
            "  tracing {label}: {:.0} runs/s, {w:.0} LLM calls/s ({w_cpu:.0} µs CPU each), {:.0} scrapes/s ({:.0} µs \
             CPU each)",
            setup.runs_per_sec, s.requests_per_sec, s.server_cpu_us_per_req
        );
        // Means of the two measurements of each side.
        let add = |p: &mut Sides, v: f64, cpu: f64| {
            if on {
                p.on += v / 2.0;
                p.on_cpu_us += cpu / 2.0;
            } else {
                p.off += v / 2.0;
                p.off_cpu_us += cpu / 2.0;
            }
        };
        add(&mut runs, setup.runs_per_sec, 0.0);
        add(&mut writes_, w, w_cpu);
        add(&mut scrapes, s.requests_per_sec, s.server_cpu_us_per_req);
    }
    Ok(Report {
        runs,
        writes: writes_,
        scrapes,
        exports: r.requests.load(Ordering::Relaxed),
        exported_bytes: r.bytes.load(Ordering::Relaxed),
        dropped,
    })
}
