//! Start-up and shutdown of the daemon, in order.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;

use crate::api::gate::{self, Gate};
use crate::api::settings::{self, Limits, Scrapers, WsLimits};
use crate::api::state::App;
use crate::config::{Config, ConfiguredToken, TOKEN_FILE_NAME};
use crate::containers;
use crate::domain::DomainError;
use crate::domain::pricing::RateCard;
use crate::latency::Latencies;
use crate::metrics::{self, Metrics};
use crate::otel::{self, Tracer};
use crate::runtime::{self, Runtime};
use crate::store::Store;
use crate::ws::{self, Sessions};
use crate::{server, store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] DomainError),
    #[error("rate card {path}: {reason}")]
    RateCard { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("API token file {path}: {reason}")]
    ApiToken { path: String, reason: String },
    #[error("traces: {0}")]
    Traces(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The tracer, exporting when an endpoint is configured, and its task.
fn tracer(config: &Config, node_id: &str) -> Result<(Tracer, Option<tokio::task::JoinHandle<()>>), StartError> {
    let t = &config.traces;
    let Some(url) = &t.url else {
        tracing::info!("traces are off (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)");
        return Ok((Tracer::off(t.sampler), None));
    };
    let mut attributes = vec![
        ("service.name".to_string(), t.service_name.clone()),
        ("service.version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("service.instance.id".to_string(), node_id.to_string()),
        ("host.name".to_string(), config.metrics.hostname.clone()),
    ];
    // Given attributes win over these defaults.
    attributes.retain(|(k, _)| !t.resource.iter().any(|(given, _)| given == k));
    attributes.extend(t.resource.iter().cloned());
    let export = otel::Export {
        url: url.clone(),
        headers: t.headers.clone(),
        gzip: t.gzip,
        resource: otel::proto::Resource { attributes },
        queue: t.queue,
        batch: t.batch,
        delay: t.delay,
        timeout: t.timeout,
    };
    let (tracer, task) = Tracer::exporting(export, t.sampler).map_err(StartError::Traces)?;
    tracing::info!(%url, sampler = t.sampler.describe(), service = t.service_name, "exporting traces over OTLP/HTTP");
    Ok((tracer, Some(task)))
}

fn rate_card(config: &Config) -> Result<RateCard, StartError> {
    let Some(path) = &config.runner.rate_card else {
        return Ok(RateCard::default());
    };
    let bad = |reason: String| StartError::RateCard { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    RateCard::with_overrides(&text).map_err(|e| bad(e.to_string()))
}

/// What `--check-config` checks beyond parsing the settings: the files
/// they name (the rate card) hold what start-up needs.
pub fn check(config: &Config) -> Result<(), StartError> {
    rate_card(config).map(drop)
}

/// Resolves at SIGTERM or SIGINT. The handlers are installed at once, so a
/// signal that arrives before the daemon serves is not the default
/// (immediate) death.
fn terminated() -> Result<impl std::future::Future<Output = ()>, StartError> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The API token: the configured one, or the daemon's own, created at
/// first start in `<data dir>/api-token` (mode 0600) and kept across
/// restarts, so that whoever can read the data dir (the CLI, by default)
/// can use the API and nobody else can.
fn api_token(config: &Config) -> Result<ConfiguredToken, StartError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(t) = &config.security.api_token {
        return Ok(t.clone());
    }
    let data_dir = &config.database.data_dir;
    let path = data_dir.join(TOKEN_FILE_NAME);
    let bad = |reason: String| StartError::ApiToken { path: path.display().to_string(), reason };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir).map_err(|e| bad(e.to_string()))?;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            let token = crate::domain::ids::new_secret();
            file.write_all(token.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| bad(e.to_string()))?;
            tracing::info!(path = %path.display(), "created the API token");
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    let meta = std::fs::metadata(&path).map_err(|e| bad(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the API token file was readable by others; made it 0600");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| bad(e.to_string()))?;
    }
    let value = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?.trim().to_string();
    if value.is_empty() {
        return Err(bad("the file is empty; delete it and crewshipd creates a new token".into()));
    }
    let source = format!("in {} (crewship reads it from there)", path.display());
    Ok(ConfiguredToken { value, source })
}

/// The URL agents are told to call back on: the listen address, or
/// loopback when listening on every address.
fn agent_api_url(config: &Config, local: SocketAddr) -> String {
    if let Some(url) = &config.security.agent_api_url {
        return url.clone();
    }
    let ip = match local.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, local.port()))
}

/// What the workers get of the configuration.
fn runtime_settings(config: &Config, api_url: String, node_id: String) -> runtime::Settings {
    let (r, j, f) = (&config.runner, &config.journal, &config.fleet);
    let registration = store::nodes::Registration {
        id: node_id,
        hostname: config.metrics.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        migration_version: store::migrations::latest_known(),
        lease_ms: i64::try_from(f.lease.as_millis()).unwrap_or(i64::MAX),
    };
    runtime::Settings {
        runner: runtime::runner::Settings {
            work_dir: r.work_dir.clone(),
            grace: r.cancel_grace,
            output_limit: r.output_limit,
            max_attempts: r.max_attempts,
            api_url,
        },
        containment: r.containment,
        max_task_bytes: r.max_task_bytes,
        journal: runtime::archiver::Policy { archive_after: j.archive_after, retention: j.retention, batch: j.batch },
        archive_every: j.interval,
        fleet: runtime::fleet::Settings {
            registration,
            heartbeat: f.heartbeat,
            max_attempts: i64::from(r.max_attempts),
            forget_after: f.forget_after,
        },
    }
}

/// What the gate gets of the configuration.
fn gate_settings(config: &Config, token: ConfiguredToken) -> gate::Settings {
    let s = &config.security;
    gate::Settings {
        token: token.value,
        token_source: token.source,
        allow_loopback: s.allow_loopback,
        allowed_origins: s.allowed_origins.clone(),
        proxies: s.trusted_proxies.clone(),
    }
}

/// What the HTTP layer gets of the configuration; `local` is the bound
/// address (the gate's own origins).
fn api_settings(config: &Config, token: ConfiguredToken, local: SocketAddr) -> settings::Settings {
    let (l, m) = (&config.listen, &config.metrics);
    settings::Settings {
        limits: Limits {
            body_limit: l.body_limit,
            body_timeout: l.body_timeout,
            max_task_bytes: config.runner.max_task_bytes,
            max_pipeline_steps: config.runner.max_pipeline_steps,
        },
        gate: Gate::new(gate_settings(config, token), &m.hostname, local),
        scrapers: Scrapers { token: m.token.clone(), allow_loopback: m.allow_loopback },
        ws: WsLimits {
            session: ws::session::Limits {
                auth_timeout: l.ws_auth_timeout,
                max_channels: l.ws_max_channels,
                ping_interval: l.ws_ping_interval,
            },
            max_outbound_bytes: l.ws_max_outbound_bytes,
        },
        listen_host: l.host,
        data_dir: config.database.data_dir.clone(),
    }
}

/// Runs until SIGTERM or SIGINT, then stops in order: intake, sessions,
/// children (their work is requeued), and the store.
pub async fn run(config: Config) -> Result<(), StartError> {
    let started = Instant::now();
    let terminated = terminated()?;
    let rate_card = rate_card(&config)?;
    let open_files = server::raise_open_file_limit();
    let token = api_token(&config)?;
    let db = &config.database;
    let (events, _) = broadcast::channel(db.event_buffer);
    let options = store::Options {
        sync: db.sync,
        write_queue: db.write_queue,
        check_time: db.check_time,
        ..store::Options::default()
    };
    let store = Store::open(&db.location, events, options)?;
    let drift = store.recount().await?;
    for d in &drift {
        tracing::warn!(counter = d.counter, stored = d.stored, recounted = d.recounted, "counter drift repaired");
    }
    let providers = rate_card.providers();
    store.write(move |tx| store::ledger::announce_providers(tx, &providers)).await?;
    // Bound before recovery so agents can be told the port; nothing is
    // accepted until serving starts.
    let listen = &config.listen;
    let addr = SocketAddr::new(listen.host, listen.port);
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let local = listener.local_addr()?;
    let node_id = runtime::fleet::node_id(&config.database.data_dir)?;
    let engine = containers::Engine::connect(&config.runner.docker_host, &node_id).await;
    let stats_interval = config.runner.stats_interval;
    let registry = Arc::new(containers::Registry::new(stats_interval));
    let crew_containers = containers::CrewContainers::new(engine, registry.clone(), store.clone());
    let (tracer, exporting) = tracer(&config, &node_id)?;
    let latencies = Arc::new(Latencies::default());
    let telemetry = runtime::Telemetry { tracer: tracer.clone(), latencies: latencies.clone() };
    let settings = runtime_settings(&config, agent_api_url(&config, local), node_id);
    let runtime = Runtime::start(store.clone(), settings, crew_containers.clone(), telemetry).await?;
    let collector = containers::collector::Collector::spawn(crew_containers.clone(), stats_interval);
    let limits = server::Limits {
        max_connections: listen.max_connections.unwrap_or_else(|| server::default_max_connections(open_files)),
        header_timeout: listen.header_timeout,
        grace: listen.shutdown_grace,
    };
    let sessions = Arc::new(Sessions::default());
    let sources = metrics::live::Sources {
        started,
        sessions: sessions.clone(),
        containers: registry.clone(),
        latencies: latencies.clone(),
        tracer: tracer.clone(),
    };
    let m = &config.metrics;
    let page = metrics::Settings { hostname: m.hostname.clone(), cache_ttl: m.cache_ttl, live_window: m.live_window };
    let app = Arc::new(App {
        settings: api_settings(&config, token, local),
        metrics: Metrics::new(store.clone(), sources, page),
        container_stats: registry,
        crew_containers,
        sessions,
        store: store.clone(),
        rate_card,
        runtime,
        started,
        inflight_body: tokio::sync::Semaphore::new(listen.max_inflight_body_bytes.div_ceil(1024)),
        tracer: tracer.clone(),
        latencies,
    });
    tracing::info!(
        %local, db = store.describe(), max_connections = limits.max_connections, open_files,
        "crewshipd listening"
    );
    // Tests and scripts read the bound address (port 0 picks one) here; a
    // closed stdout is no reason to stop.
    let _ = writeln!(std::io::stdout(), "crewshipd listening on http://{local}");
    let router = crate::api::router(app.clone());
    let closing = app.clone();
    server::serve(listener, router, limits, async move {
        terminated.await;
        tracing::info!("shutting down: no new connections");
        closing.sessions.close_all();
    })
    .await;
    collector.stop().await;
    app.runtime.shutdown().await;
    if let Some(task) = exporting {
        tracer.close(task, config.listen.shutdown_grace).await;
    }
    store.checkpoint().await?;
    tracing::info!("crewshipd stopped");
    Ok(())
}
