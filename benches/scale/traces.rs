//! (h) What tracing costs: the real daemon with no endpoint against the
//! same daemon exporting every span to a local OTLP receiver, side by side
//! in one run, on three paths: run throughput (phase (g)'s dispatch on
//! SQLite), the write path (LLM calls recorded by concurrent clients) and
//! /metrics serving (wrk). Each pair is measured off, on, on, off, so a
//! drift of the shared machine falls on both sides alike. The load comes
//! from wrk (a process of its own); the receiver runs in this process and
//! shares the machine's two cores with the daemon, as a collector on the
//! same host would.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::json;

use crate::Res;
use crate::daemon::{API_TOKEN, Server, client, metric, wrk_on, wrk_with};

const WRITERS: u32 = 16;
const WRITE_SECS: u32 = 5;
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
    /// The same against the raw spawn rate measured just before each
    /// setup: steadier on a noisy machine.
    pub runs_over_raw: Sides,
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

/// LLM calls recorded through wrk (a Lua script posts the body) for a few
/// seconds: calls/s and the daemon's CPU per call.
async fn writes(server: &Server, script: &Path) -> Res<(f64, f64)> {
    let script = script.to_str().ok_or("script path")?;
    let w =
        wrk_with(Some(server.pid), &server.url("/api/v1/llm-calls"), 2, WRITERS, WRITE_SECS, &["-s", script]).await?;
    if w.non_2xx > 0 || w.socket_errors > 0 {
        return Err(format!("llm-calls under wrk: {} non-2xx, {} socket errors", w.non_2xx, w.socket_errors).into());
    }
    Ok((w.requests_per_sec, w.server_cpu_us_per_req))
}

/// What wrk posts: one LLM call, with the API token.
fn post_script(data: &Path) -> Res<std::path::PathBuf> {
    let body = json!({"provider": "anthropic", "model": "claude-x", "input_tokens": 1200, "output_tokens": 300,
        "cost_usd": 0.01, "duration_ms": 900});
    let path = data.join("llm-call.lua");
    std::fs::write(
        &path,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {API_TOKEN}\"\n"
        ),
    )?;
    Ok(path)
}

pub async fn run(bin: &Path, data: &Path) -> Res<Report> {
    let r = receiver().await?;
    let script = post_script(data)?;
    let (mut runs, mut over_raw) = (Sides::default(), Sides::default());
    let (mut writes_, mut scrapes) = (Sides::default(), Sides::default());
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
        let (w, w_cpu) = writes(&server, &script).await?;
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
        add(&mut over_raw, setup.vs_raw, 0.0);
        add(&mut writes_, w, w_cpu);
        add(&mut scrapes, s.requests_per_sec, s.server_cpu_us_per_req);
    }
    Ok(Report {
        runs,
        runs_over_raw: over_raw,
        writes: writes_,
        scrapes,
        exports: r.requests.load(Ordering::Relaxed),
        exported_bytes: r.bytes.load(Ordering::Relaxed),
        dropped,
    })
}
