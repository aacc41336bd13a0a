//! Start-up and shutdown of the daemon, in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;

use crate::app::App;
use crate::config::Config;
use crate::containers;
use crate::domain::DomainError;
use crate::domain::pricing::RateCard;
use crate::metrics::Metrics;
use crate::metrics::snapshot::SnapshotCache;
use crate::runtime::Runtime;
use crate::store::{Store, recount};
use crate::ws::Hub;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] DomainError),
    #[error("rate card {path}: {reason}")]
    RateCard { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn rate_card(config: &Config) -> Result<RateCard, StartError> {
    let Some(path) = &config.rate_card else {
        return Ok(RateCard::default());
    };
    let bad = |reason: String| StartError::RateCard { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    RateCard::with_overrides(&text).map_err(|e| bad(e.to_string()))
}

async fn terminated() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs until SIGTERM or SIGINT, then stops in order: intake, sessions,
/// children (their work is requeued), and the store.
pub async fn run(config: Config) -> Result<(), StartError> {
    let started = Instant::now();
    let rate_card = rate_card(&config)?;
    let (events, _) = broadcast::channel(config.event_buffer);
    let store = Store::open(&config.database_path, events)?;
    let drift = store.with_writer(recount::check_and_repair).await?;
    for d in &drift {
        tracing::warn!(counter = d.counter, stored = d.stored, recounted = d.recounted, "counter drift repaired");
    }
    let engine = containers::Engine::connect(&config.docker_host).await;
    let runtime = Runtime::start(store.clone(), &config, engine.clone()).await?;
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
    let local = listener.local_addr()?;
    let registry = Arc::new(containers::Registry::new(config.stats_interval));
    let crew_containers = containers::CrewContainers::new(engine, registry.clone(), store.clone());
    let collector = containers::collector::Collector::spawn(crew_containers.clone(), config.stats_interval);
    let app = Arc::new(App {
        metrics: Metrics::new(SnapshotCache::new(store.clone(), config.metrics_cache_ttl), config.metrics_live_window),
        containers: registry,
        crew_containers,
        hub: Hub::default(),
        store: store.clone(),
        rate_card,
        runtime,
        started,
        config,
    });
    tracing::info!(%local, db = %store.path().display(), "crewshipd listening");
    // Tests and scripts read the bound address (port 0 picks one) here.
    println!("crewshipd listening on http://{local}");
    let router = crate::api::router(app.clone());
    let hub_app = app.clone();
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            terminated().await;
            tracing::info!("shutting down: no new connections");
            hub_app.hub.close_all();
        })
        .await?;
    collector.stop().await;
    app.runtime.shutdown().await;
    store.checkpoint().await?;
    tracing::info!("crewshipd stopped");
    Ok(())
}
