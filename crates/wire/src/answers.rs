//! The answers the API gives beyond its entities (`types`): a page of
//! them, an error, the probes, the daemon's status, spend and rates, and
//! containers. The daemon writes them; clients read them back.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::types::SpendRow;

/// Every error answer's body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, in snake_case: `invalid`, `not_found`, `conflict`, ...
    pub code: String,
    /// A sentence for a person.
    pub message: String,
}

/// A page as clients see it: its items, and an opaque cursor to the next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Pass it as `?cursor=` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Always `crewshipd`.
    pub service: String,
    pub version: String,
    pub uptime_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// `ok` or `unavailable`.
    pub status: String,
    pub checks: Checks,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Checks {
    /// `ok`, or why the store cannot commit a write.
    pub db: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Spend {
    /// One row a key, most spent first.
    pub rows: Vec<SpendRow>,
    #[schema(format = DateTime)]
    pub since: Option<String>,
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rates {
    pub rates: Vec<Rate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rate {
    pub provider: String,
    /// A model name or prefix: `claude-sonnet-4` prices `claude-sonnet-4-20250514`.
    pub model: String,
    /// USD per million uncached input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// USD per million cache-read input tokens (default: the input rate).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// USD per million cache-write tokens (default: the input rate).
    #[serde(default)]
    pub cache_creation: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// Always `crewshipd`.
    pub service: String,
    pub version: String,
    pub listen: Listen,
    pub metrics: MetricsAccess,
    pub data_dir: DataDir,
    pub docker: Docker,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Listen {
    pub host: String,
    /// Whether other hosts can reach it.
    pub beyond_loopback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricsAccess {
    /// Whether `CREWSHIP_METRICS_TOKEN` is set.
    pub token_set: bool,
    pub allow_loopback: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataDir {
    pub path: String,
    /// Null where the file system does not say.
    pub free_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Docker {
    /// Live crews with runtime `docker`.
    pub crews: i64,
    /// Whether the engine answered a ping.
    pub reachable: bool,
    pub error: Option<String>,
}

/// What the container endpoints answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerState {
    pub container_id: String,
    pub crew: String,
    pub name: String,
    pub running: bool,
}

/// A tracked container as the API shows it: its latest sample's figures,
/// each null until the first sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Reading {
    pub container_id: String,
    pub crew: String,
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
    pub pids: Option<u64>,
    #[schema(format = DateTime)]
    pub sampled_at: Option<String>,
}
