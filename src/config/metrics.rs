//! /metrics: who may scrape it, how often its DB block is computed, and
//! the `hostname` label.

use std::time::Duration;

use super::source::{ConfigError, Setting, Shown, Source, boolean, duration, read_token_file, text, trimmed_token};

pub const HOSTNAME: Setting = Setting {
    var: "CREWSHIP_HOSTNAME",
    flag: None,
    default: Shown::Derived("OS hostname"),
    help: "the `hostname` label on every series",
};
pub const METRICS_TOKEN: Setting = Setting {
    var: "CREWSHIP_METRICS_TOKEN",
    flag: None,
    default: Shown::Unset,
    help: "bearer token for remote scrapes",
};
pub const METRICS_TOKEN_FILE: Setting = Setting {
    var: "CREWSHIP_METRICS_TOKEN_FILE",
    flag: None,
    default: Shown::Unset,
    help: "a file holding the metrics token (wins over `CREWSHIP_METRICS_TOKEN`)",
};
pub const METRICS_ALLOW_LOOPBACK: Setting = Setting {
    var: "CREWSHIP_METRICS_ALLOW_LOOPBACK",
    flag: None,
    default: Shown::Value("true"),
    help: "`false` makes loopback scrapers present the token too",
};
pub const METRICS_CACHE_TTL: Setting = Setting {
    var: "CREWSHIP_METRICS_CACHE_TTL",
    flag: None,
    default: Shown::Value("15s"),
    help: "lifetime of the DB-derived metrics snapshot",
};
pub const METRICS_LIVE_WINDOW: Setting = Setting {
    var: "CREWSHIP_METRICS_LIVE_WINDOW",
    flag: None,
    default: Shown::Value("1s"),
    help: "a rendered `/metrics` page (process figures included) is served again this long",
};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub hostname: String,
    pub token: Option<String>,
    pub allow_loopback: bool,
    pub cache_ttl: Duration,
    /// How long a rendered page (process figures included) is served again.
    pub live_window: Duration,
}

fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl Metrics {
    pub(super) fn read(src: &Source<'_>, warnings: &mut Vec<String>) -> Result<Metrics, ConfigError> {
        let token = match src.given(&METRICS_TOKEN_FILE) {
            Some((path, name)) => trimmed_token(&read_token_file(&path, &name)?, &name, warnings),
            None => src.given(&METRICS_TOKEN).and_then(|(v, name)| trimmed_token(&v, &name, warnings)),
        };
        Ok(Metrics {
            hostname: src.get_opt(&HOSTNAME, text)?.unwrap_or_else(os_hostname),
            token,
            allow_loopback: src.get(&METRICS_ALLOW_LOOPBACK, boolean)?,
            cache_ttl: src.get(&METRICS_CACHE_TTL, duration)?,
            live_window: src.get(&METRICS_LIVE_WINDOW, duration)?,
        })
    }
}
