//! What the HTTP layer gets of the configuration. The daemon builds it
//! (`daemon::api_settings`) as it builds the workers' settings; `App`
//! holds it, never the whole configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::gate::Gate;
use crate::ws::session;

pub struct Settings {
    pub limits: Limits,
    /// Who may call /api/v1 and /ws: the token, loopback, origins, proxies.
    pub gate: Gate,
    pub scrapers: Scrapers,
    pub ws: WsLimits,
    /// The listen address, which GET /status reports.
    pub listen_host: IpAddr,
    /// The data directory, whose free space GET /status reports.
    pub data_dir: PathBuf,
}

/// The bounds on a request, and the limits its body is validated against
/// (see the settings of the same names).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body_limit: usize,
    pub body_timeout: Duration,
    pub max_task_bytes: usize,
    pub max_pipeline_steps: usize,
}

/// Who may scrape /metrics (METRICS.md §2): loopback true clients unless
/// switched off, and holders of the metrics token.
pub struct Scrapers {
    pub token: Option<String>,
    pub allow_loopback: bool,
}

/// A WebSocket session's bounds, and its connection's outbound buffer.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    pub session: session::Limits,
    pub max_outbound_bytes: usize,
}
