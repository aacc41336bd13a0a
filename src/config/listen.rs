//! The HTTP and WebSocket listener: where it listens and every bound on
//! what a client may make it spend.

use std::net::IpAddr;
use std::time::Duration;

use super::source::{ConfigError, Setting, Shown, Source, duration, positive, positive_duration};

pub const HOST: Setting =
    Setting { var: "CREWSHIP_HOST", flag: Some("--host"), default: Shown::Value("0.0.0.0"), help: "listen address" };
pub const PORT: Setting = Setting {
    var: "CREWSHIP_PORT",
    flag: Some("--port"),
    default: Shown::Value("8080"),
    help: "listen port; `0` picks a free one (the bound address is printed on stdout)",
};
pub const BODY_LIMIT: Setting = Setting {
    var: "CREWSHIP_BODY_LIMIT",
    flag: None,
    default: Shown::Value("1048576"),
    help: "largest request body (413 above)",
};
pub const HEADER_TIMEOUT: Setting = Setting {
    var: "CREWSHIP_HTTP_HEADER_TIMEOUT",
    flag: None,
    default: Shown::Value("10s"),
    help: "time a client has to send a request's headers (and to send the next request on a keep-alive connection)",
};
pub const BODY_TIMEOUT: Setting = Setting {
    var: "CREWSHIP_HTTP_BODY_TIMEOUT",
    flag: None,
    default: Shown::Value("30s"),
    help: "time a client has to send a request's body (408 after)",
};
pub const MAX_CONNECTIONS: Setting = Setting {
    var: "CREWSHIP_MAX_CONNECTIONS",
    flag: None,
    default: Shown::Derived("from the open-file limit"),
    help: "open connections at most, WebSocket sessions included; at the cap new clients wait",
};
pub const MAX_INFLIGHT_BODY_BYTES: Setting = Setting {
    var: "CREWSHIP_MAX_INFLIGHT_BODY_BYTES",
    flag: None,
    default: Shown::Value("67108864"),
    help: "request body bytes held by requests in flight (503 above)",
};
pub const SHUTDOWN_GRACE: Setting = Setting {
    var: "CREWSHIP_SHUTDOWN_GRACE",
    flag: None,
    default: Shown::Value("30s"),
    help: "how long shutdown waits for open requests",
};
pub const WS_AUTH_TIMEOUT: Setting = Setting {
    var: "CREWSHIP_WS_AUTH_TIMEOUT",
    flag: None,
    default: Shown::Value("10s"),
    help: "time a browser has to send its auth frame",
};
pub const WS_MAX_CHANNELS: Setting = Setting {
    var: "CREWSHIP_WS_MAX_CHANNELS",
    flag: None,
    default: Shown::Value("256"),
    help: "channels one WebSocket connection may subscribe to",
};
pub const WS_MAX_OUTBOUND_BYTES: Setting = Setting {
    var: "CREWSHIP_WS_MAX_OUTBOUND_BYTES",
    flag: None,
    default: Shown::Value("1048576"),
    help: "bytes queued for one WebSocket client before it is dropped",
};
pub const WS_PING_INTERVAL: Setting = Setting {
    var: "CREWSHIP_WS_PING_INTERVAL",
    flag: None,
    default: Shown::Value("30s"),
    help: "server pings; a client silent for two intervals is dropped",
};

#[derive(Debug, Clone)]
pub struct Listen {
    pub host: IpAddr,
    pub port: u16,
    pub body_limit: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// None: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
    pub max_inflight_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub ws_auth_timeout: Duration,
    pub ws_max_channels: usize,
    pub ws_max_outbound_bytes: usize,
    pub ws_ping_interval: Duration,
}

impl Listen {
    pub(super) fn read(src: &Source<'_>) -> Result<Listen, ConfigError> {
        Ok(Listen {
            host: src.get(&HOST, |s| s.parse().map_err(|_| "expected an IP address such as 0.0.0.0 or ::1".into()))?,
            port: src.get(&PORT, |s| s.parse().map_err(|_| "expected a TCP port (0-65535)".into()))?,
            body_limit: src.get(&BODY_LIMIT, positive)?,
            header_timeout: src.get(&HEADER_TIMEOUT, positive_duration)?,
            body_timeout: src.get(&BODY_TIMEOUT, positive_duration)?,
            max_connections: src.get_opt(&MAX_CONNECTIONS, positive)?,
            max_inflight_body_bytes: src.get(&MAX_INFLIGHT_BODY_BYTES, positive)?,
            shutdown_grace: src.get(&SHUTDOWN_GRACE, duration)?,
            ws_auth_timeout: src.get(&WS_AUTH_TIMEOUT, positive_duration)?,
            ws_max_channels: src.get(&WS_MAX_CHANNELS, positive)?,
            ws_max_outbound_bytes: src.get(&WS_MAX_OUTBOUND_BYTES, positive)?,
            ws_ping_interval: src.get(&WS_PING_INTERVAL, positive_duration)?,
        })
    }
}
