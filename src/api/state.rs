//! The state every handler shares. Only the router and its handlers know
//! it; the daemon builds it.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::settings::Settings;
use crate::containers;
use crate::domain::pricing::RateCard;
use crate::latency::Latencies;
use crate::metrics::Metrics;
use crate::otel::Tracer;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::ws::Sessions;

pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub rate_card: RateCard,
    pub runtime: Runtime,
    pub sessions: Arc<Sessions>,
    /// The containers the stats collector tracks, with their samples.
    pub container_stats: Arc<containers::Registry>,
    pub crew_containers: containers::CrewContainers,
    /// The /metrics page, rendered from its own sources.
    pub metrics: Metrics,
    pub started: Instant,
    /// KiB of request bodies held by requests in flight (a permit a KiB).
    pub inflight_body: Semaphore,
    pub tracer: Tracer,
    /// This node's histograms and HTTP counts.
    pub latencies: Arc<Latencies>,
}

pub type AppState = Arc<App>;
