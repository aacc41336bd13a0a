//! The state every handler and worker shares.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::api::auth::Gate;
use crate::config::Config;
use crate::containers;
use crate::domain::pricing::RateCard;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::ws::Hub;

pub struct App {
    pub config: Config,
    pub store: Store,
    pub rate_card: RateCard,
    pub runtime: Runtime,
    pub hub: Hub,
    pub containers: Arc<containers::Registry>,
    pub crew_containers: containers::CrewContainers,
    pub metrics: Metrics,
    pub started: Instant,
    pub gate: Gate,
    /// KiB of request bodies held by requests in flight (a permit a KiB).
    pub inflight_body: Semaphore,
}

pub type AppState = Arc<App>;
