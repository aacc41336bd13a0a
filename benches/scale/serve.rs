//! (c) /metrics serving with a warm cache, next to a baseline server that
//! returns the same bytes with the same headers; (d) the retry storm
//! against an expiring cache; (e) memory idle and with 1 000 WebSockets.
//! Every load targets loopback and is bounded in time and count.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

use crate::Res;
use crate::daemon::{self, Memory, Server, Wrk};
use crate::stats::median;

const ROUNDS: usize = 5;
const SECS: u32 = 4;
const THREADS: u32 = 1;
const CONNECTIONS: u32 = 32;
const STORM_CONNECTIONS: u32 = 1_000;
const STORM_SECS: u32 = 10;
const STORM_TTL: Duration = Duration::from_secs(1);
const WEBSOCKETS: usize = 1_000;
const COMPUTATIONS: &str = "crewshipd_metrics_snapshot_computations_total";

/// What the baseline server serves: the daemon's own bytes and headers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Canned {
    pub plain: Response,
    pub gzip: Response,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Headers to copy (hop-by-hop and per-response ones are left to hyper).
    pub headers: Vec<(String, String)>,
    /// Sent chunked (no content-length), as the daemon did.
    pub chunked: bool,
    pub body_file: String,
}

/// Headers hyper writes itself for every response.
fn copied(name: &str) -> bool {
    !matches!(name, "date" | "content-length" | "transfer-encoding" | "connection")
}

fn canned(s: &daemon::Scraped, file: &Path) -> Res<Response> {
    std::fs::write(file, &s.body)?;
    Ok(Response {
        headers: s.headers.iter().filter(|(k, _)| copied(k)).cloned().collect(),
        chunked: !s.headers.iter().any(|(k, _)| k == "content-length"),
        body_file: file.display().to_string(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub runs: Vec<Wrk>,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Server CPU per request, µs (median over the runs).
    pub cpu_us_per_req: f64,
}

impl Side {
    fn of(runs: Vec<Wrk>) -> Side {
        let pick = |f: fn(&Wrk) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        Side {
            rps: pick(|w| w.requests_per_sec),
            p50_us: pick(|w| w.p50_us),
            p99_us: pick(|w| w.p99_us),
            cpu_us_per_req: pick(|w| w.server_cpu_us_per_req),
            runs,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Encoding {
    pub name: String,
    pub daemon: Side,
    pub baseline: Side,
    /// Daemon req/s over baseline req/s, medians (target ≥ 0.8).
    pub ratio: f64,
    /// Median of the per-round ratios (each daemon run against the
    /// baseline run next to it).
    pub paired_ratio: f64,
    pub body_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServeReport {
    pub wrk: String,
    pub encodings: Vec<Encoding>,
    pub daemon_headers_plain: Vec<(String, String)>,
    pub daemon_headers_gzip: Vec<(String, String)>,
    pub rss_after_load: Memory,
}

#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub connections: u32,
    pub secs: u32,
    pub ttl_secs: f64,
    pub wrk: Wrk,
    pub before: f64,
    pub after: f64,
    pub computations: f64,
    /// Seconds between the two reads of the counter.
    pub window_secs: f64,
    /// TTL windows in that time, +1 for the boundary.
    pub bound: f64,
    pub within_bound: bool,
    pub memory: Memory,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub idle: Memory,
    pub with_websockets: Memory,
    pub after_close: Memory,
    pub websockets: usize,
    pub ws_gauge: f64,
    pub connect_secs: f64,
    pub per_connection_kib: f64,
    /// procfs `fd_count()` of this process while it holds the client ends
    /// (what every scrape of a daemon with that many sockets pays).
    pub fd_count_us_with_sockets: f64,
    pub fd_count_us_without: f64,
}

/// One step of rendering /metrics, timed in this process on the big store.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub median_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub render: Vec<Step>,
    pub startups_secs: Vec<f64>,
    pub serve: ServeReport,
    pub storm: StormReport,
    pub memory: MemoryReport,
}

async fn serve(bin: &Path, store: &Path, data: &Path, startups: &mut Vec<f64>) -> Res<ServeReport> {
    let home = data.join("daemon-serve");
    let d = Server::daemon(bin, store, &home, "1h").await?;
    startups.push(d.startup.as_secs_f64());
    println!("  daemon up in {:.1} s (TTL 1h: warm cache)", d.startup.as_secs_f64());
    let client = daemon::client()?;
    let url = d.url("/metrics");
    for _ in 0..3 {
        daemon::scrape(&client, &url, false).await?;
    }
    let plain = daemon::scrape(&client, &url, false).await?;
    let gzip = daemon::scrape(&client, &url, true).await?;
    if !gzip.headers.iter().any(|(k, v)| k == "content-encoding" && v == "gzip") {
        return Err("the daemon did not gzip /metrics for Accept-Encoding: gzip".into());
    }
    let dir = data.join("baseline");
    std::fs::create_dir_all(&dir)?;
    let c = Canned { plain: canned(&plain, &dir.join("plain.body"))?, gzip: canned(&gzip, &dir.join("gzip.body"))? };
    let canned_path = dir.join("canned.json");
    std::fs::write(&canned_path, serde_json::to_string_pretty(&c)?)?;
    let b = Server::baseline(&canned_path, dir.join("baseline.log")).await?;
    // The baseline must answer with the same bytes.
    for (gz, expected) in [(false, &plain.body), (true, &gzip.body)] {
        let got = daemon::scrape(&client, &b.url("/metrics"), gz).await?;
        if got.body != *expected {
            return Err("the baseline server does not return the daemon's bytes".into());
        }
    }
    let mut encodings = Vec::new();
    for (name, gz, bytes) in [("identity", false, plain.body.len()), ("gzip", true, gzip.body.len())] {
        // Warm-up, then alternate which server goes first.
        daemon::wrk(&url, THREADS, CONNECTIONS, 1, gz).await?;
        daemon::wrk(&b.url("/metrics"), THREADS, CONNECTIONS, 1, gz).await?;
        let (mut dr, mut br) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let burl = b.url("/metrics");
            if round % 2 == 0 {
                dr.push(daemon::wrk_on(d.pid, &url, THREADS, CONNECTIONS, SECS, gz).await?);
                br.push(daemon::wrk_on(b.pid, &burl, THREADS, CONNECTIONS, SECS, gz).await?);
            } else {
                br.push(daemon::wrk_on(b.pid, &burl, THREADS, CONNECTIONS, SECS, gz).await?);
                dr.push(daemon::wrk_on(d.pid, &url, THREADS, CONNECTIONS, SECS, gz).await?);
            }
        }
        let paired_ratio =
            median(&dr.iter().zip(&br).map(|(x, y)| x.requests_per_sec / y.requests_per_sec).collect::<Vec<_>>());
        let (daemon_side, baseline_side) = (Side::of(dr), Side::of(br));
        let ratio = daemon_side.rps / baseline_side.rps;
        println!(
            "  /metrics {name}: daemon {:.0} req/s, baseline {:.0} req/s, ratio {ratio:.2}",
            daemon_side.rps, baseline_side.rps
        );
        encodings.push(Encoding {
            name: name.to_string(),
            daemon: daemon_side,
            baseline: baseline_side,
            ratio,
            paired_ratio,
            body_bytes: bytes,
        });
    }
    let rss_after_load = daemon::memory(d.pid)?;
    b.stop().await?;
    d.stop().await?;
    Ok(ServeReport {
        wrk: format!("wrk -t{THREADS} -c{CONNECTIONS} -d{SECS}s --latency, {ROUNDS} runs per side"),
        encodings,
        daemon_headers_plain: plain.headers,
        daemon_headers_gzip: gzip.headers,
        rss_after_load,
    })
}

async fn storm(bin: &Path, store: &Path, data: &Path, startups: &mut Vec<f64>) -> Res<StormReport> {
    let home = data.join("daemon-storm");
    let ttl = format!("{}s", STORM_TTL.as_secs());
    let d = Server::daemon(bin, store, &home, &ttl).await?;
    startups.push(d.startup.as_secs_f64());
    let client = daemon::client()?;
    let before = daemon::metric(&client, &d.base, COMPUTATIONS).await?;
    let t0 = Instant::now();
    let wrk = daemon::wrk(&d.url("/metrics"), 2, STORM_CONNECTIONS, STORM_SECS, false).await?;
    let memory = daemon::memory(d.pid)?;
    let after = daemon::metric(&client, &d.base, COMPUTATIONS).await?;
    let window = t0.elapsed().as_secs_f64();
    d.stop().await?;
    let computations = after - before;
    let bound = (window / STORM_TTL.as_secs_f64()).ceil() + 1.0;
    println!(
        "  storm: {computations} computations in {window:.1} s (bound {bound}), {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms",
        wrk.requests_per_sec,
        wrk.p50_us / 1e3,
        wrk.p99_us / 1e3
    );
    Ok(StormReport {
        connections: STORM_CONNECTIONS,
        secs: STORM_SECS,
        ttl_secs: STORM_TTL.as_secs_f64(),
        within_bound: computations <= bound,
        wrk,
        before,
        after,
        computations,
        window_secs: window,
        bound,
        memory,
    })
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and subscribes to the journal channel; returns once the daemon
/// has acknowledged the subscription.
async fn subscribed(url: String) -> Res<Socket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {}", daemon::API_TOKEN).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::text(r#"{"type":"subscribe","channels":["journal"]}"#)).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await? {
            Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => return Ok(ws),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("closed before the subscription was acknowledged".into()),
        }
    }
}

async fn memory(bin: &Path, store: &Path, data: &Path, startups: &mut Vec<f64>) -> Res<MemoryReport> {
    let home = data.join("daemon-memory");
    let d = Server::daemon(bin, store, &home, "15s").await?;
    startups.push(d.startup.as_secs_f64());
    let client = daemon::client()?;
    daemon::scrape(&client, &d.url("/metrics"), false).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = daemon::memory(d.pid)?;
    let url = d.base.replacen("http://", "ws://", 1) + "/ws";
    let t = Instant::now();
    let sockets: Vec<Socket> = futures::stream::iter((0..WEBSOCKETS).map(|_| subscribed(url.clone())))
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Res<_>>()?;
    let connect_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_websockets = daemon::memory(d.pid)?;
    let ws_gauge = daemon::metric(&client, &d.base, "crewshipd_ws_connections").await?;
    let me = procfs::process::Process::myself()?;
    let fd_count_us_with_sockets = median_of(500, || consume(me.fd_count()));
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close = daemon::memory(d.pid)?;
    let fd_count_us_without = median_of(500, || consume(me.fd_count()));
    d.stop().await?;
    let per_connection_kib = (with_websockets.rss_kib as f64 - idle.rss_kib as f64) / WEBSOCKETS as f64;
    println!(
        "  memory: idle {} KiB, with {WEBSOCKETS} websockets {} KiB ({per_connection_kib:.1} KiB each; gauge {ws_gauge})",
        idle.rss_kib, with_websockets.rss_kib
    );
    Ok(MemoryReport {
        idle,
        with_websockets,
        after_close,
        websockets: WEBSOCKETS,
        ws_gauge,
        connect_secs,
        per_connection_kib,
        fd_count_us_with_sockets,
        fd_count_us_without,
    })
}

fn consume<T>(v: T) {
    drop(std::hint::black_box(v));
}

fn median_of(n: usize, mut f: impl FnMut()) -> f64 {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    crate::stats::Timing::of(&samples).median_us
}

/// Where the time of one /metrics response goes: the steps of
/// `metrics::render` (and of the gzip layer), each timed alone, in this
/// process, with the snapshot of the big store.
async fn render_steps(store: &Path) -> Res<Vec<Step>> {
    use crewship::internals::metrics::exposition::{self, Format};
    use crewship::internals::metrics::{families, process};
    use std::io::Write;

    const N: usize = 2_000;
    let s = crewship::internals::store::Store::open(
        &crewship::internals::store::Location::Sqlite(store.to_path_buf()),
        tokio::sync::broadcast::channel(16).0,
        Default::default(),
    )?;
    let db = crewship::internals::metrics::snapshot::compute(&s, None).await;
    let live = families::Live {
        uptime_seconds: 1.0,
        alive_tasks: process::alive_tasks(),
        alloc: process::allocator(),
        process: process::process(),
        ws_connections: 0,
        containers_tracked: 0,
        containers_reporting: 0,
        snapshot_computations: 1,
        runs: Vec::new(),
        queue_wait: crewship::internals::latency::Histogram::new(crewship::internals::latency::RUN_BUCKETS),
        http: Default::default(),
        spans_dropped: 0,
    };
    let body = exposition::encode(&families::build(&live, &db), "bench-host", Format::Text);
    let me = procfs::process::Process::myself()?;
    let mut steps = vec![
        ("procfs: Process::myself()", median_of(N, || consume(procfs::process::Process::myself()))),
        ("procfs: stat() (/proc/self/stat)", median_of(N, || consume(me.stat()))),
        ("procfs: limits() (/proc/self/limits)", median_of(N, || consume(me.limits()))),
        ("procfs: fd_count() (readdir /proc/self/fd)", median_of(N, || consume(me.fd_count()))),
        ("procfs: boot_time_secs() (/proc/stat)", median_of(N, || consume(procfs::boot_time_secs()))),
        ("metrics::process::process() in all", median_of(N, || consume(process::process()))),
        ("metrics::process::allocator() (jemalloc epoch + stats)", median_of(N, || consume(process::allocator()))),
        ("families::build", median_of(N, || consume(families::build(&live, &db)))),
        (
            "families::build + exposition::encode (text 0.0.4)",
            median_of(N, || consume(exposition::encode(&families::build(&live, &db), "bench-host", Format::Text))),
        ),
    ];
    let gzip = median_of(N / 4, || {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = e.write_all(body.as_bytes());
        consume(e.finish());
    });
    steps.push(("gzip of the body (flate2, default level, as the compression layer)", gzip));
    let fast = median_of(N / 4, || {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(body.as_bytes());
        consume(e.finish());
    });
    steps.push(("gzip of the body at the fastest level (for comparison)", fast));
    Ok(steps.into_iter().map(|(name, median_us)| Step { name: name.to_string(), median_us }).collect())
}

pub async fn run(bin: &Path, store: &Path, data: &Path) -> Res<Report> {
    let render = render_steps(store).await?;
    for s in &render {
        println!("  render step {}: {:.1} µs", s.name, s.median_us);
    }
    let mut startups = Vec::new();
    let serve = serve(bin, store, data, &mut startups).await?;
    let storm = storm(bin, store, data, &mut startups).await?;
    let memory = memory(bin, store, data, &mut startups).await?;
    Ok(Report { render, startups_secs: startups, serve, storm, memory })
}

/// The baseline: a minimal axum server returning the canned bytes and
/// headers, gzip or not as asked. Same runtime shape as the daemon (tokio's
/// default multi-thread runtime, jemalloc).
pub async fn baseline_server(canned: &Path) -> Res<()> {
    use axum::body::Body;
    use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

    struct Ready {
        headers: Vec<(HeaderName, HeaderValue)>,
        chunked: bool,
        body: axum::body::Bytes,
    }
    fn ready(r: &Response) -> Res<Ready> {
        Ok(Ready {
            headers: r
                .headers
                .iter()
                .map(|(k, v)| Ok((HeaderName::try_from(k.as_str())?, HeaderValue::try_from(v.as_str())?)))
                .collect::<Res<_>>()?,
            chunked: r.chunked,
            body: axum::body::Bytes::from(std::fs::read(&r.body_file)?),
        })
    }
    let c: Canned = serde_json::from_str(&std::fs::read_to_string(canned)?)?;
    let both = std::sync::Arc::new((ready(&c.plain)?, ready(&c.gzip)?));
    let handler = move |headers: HeaderMap| {
        let both = both.clone();
        async move {
            let gz =
                headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("gzip"));
            let r = if gz { &both.1 } else { &both.0 };
            let body = if r.chunked {
                let chunk = Ok::<_, std::convert::Infallible>(r.body.clone());
                Body::from_stream(futures::stream::once(std::future::ready(chunk)))
            } else {
                Body::from(r.body.clone())
            };
            let mut resp = axum::response::Response::new(body);
            for (k, v) in &r.headers {
                resp.headers_mut().append(k.clone(), v.clone());
            }
            resp
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
