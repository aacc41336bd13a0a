//! The daemon's log: its filter and format.

use super::source::{ConfigError, Setting, Shown, Source, bad, boolean};

pub const LOG: Setting = Setting {
    var: "CREWSHIP_LOG",
    flag: None,
    default: Shown::Value("info"),
    help: "log filter, else `RUST_LOG`'s (a bad one is a start-up error); logs go to stderr",
};
pub const LOG_JSON: Setting =
    Setting { var: "CREWSHIP_LOG_JSON", flag: None, default: Shown::Value("false"), help: "`true` logs JSON lines" };

#[derive(Debug, Clone)]
pub struct Logging {
    /// tracing filter directives, checked.
    pub filter: String,
    pub json: bool,
}

fn filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("not a log filter ({e})"))?;
    Ok(s.to_string())
}

impl Logging {
    pub(super) fn read(src: &Source<'_>) -> Result<Logging, ConfigError> {
        let filter = match (src.given(&LOG), src.env("RUST_LOG")) {
            (None, Some(rust_log)) => filter(&rust_log).map_err(|reason| bad("RUST_LOG", &rust_log, reason))?,
            _ => src.get(&LOG, filter)?,
        };
        Ok(Logging { filter, json: src.get(&LOG_JSON, boolean)? })
    }
}
