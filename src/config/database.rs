//! Where the data lives and how it is kept: the data directory, the
//! database, its durability and the bounds of its queues.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::source::{ConfigError, Setting, Shown, Source, duration, positive, text};
use crate::store::{Location, Synchronous, postgresql};

/// Largest `CREWSHIP_EVENT_BUFFER`: the buffer is allocated up front.
pub const MAX_EVENT_BUFFER: usize = 1 << 20;

/// Shared with the CLI, which finds the daemon's own API token there.
pub use crewship_wire::DATA_DIR;
pub const DATABASE_URL: Setting = Setting {
    var: "CREWSHIP_DATABASE_URL",
    flag: Some("--database-url"),
    default: Shown::Value("sqlite:crewship.db"),
    help: "`sqlite:PATH` (relative to the data dir), or `postgres://USER@HOST:PORT/DB` (libpq's URL parameters, \
           `sslmode=disable` or `prefer` and `application_name` among them)",
};
pub const DATABASE_POOL: Setting = Setting {
    var: "CREWSHIP_DATABASE_POOL",
    flag: None,
    default: Shown::Value("8"),
    help: "PostgreSQL connections in the pool",
};
pub const DATABASE_PASSWORD_FILE: Setting = Setting {
    var: "CREWSHIP_DATABASE_PASSWORD_FILE",
    flag: None,
    default: Shown::Unset,
    help: "a file holding the PostgreSQL password, when the URL has none (else `PGPASSWORD`); never logged",
};
pub const WRITE_QUEUE: Setting = Setting {
    var: "CREWSHIP_WRITE_QUEUE",
    flag: None,
    default: Shown::Value("4096"),
    help: "writes that may wait for the database (503 above)",
};
pub const EVENT_BUFFER: Setting = Setting {
    var: "CREWSHIP_EVENT_BUFFER",
    flag: None,
    default: Shown::Value("4096"),
    help: "events a subscriber may fall behind before it is dropped (at most 1048576)",
};
pub const DB_SYNC: Setting = Setting {
    var: "CREWSHIP_DB_SYNC",
    flag: None,
    default: Shown::Value("full"),
    help: "`full`: an acknowledged write is on disk; `normal`: faster, and a power loss may lose the newest \
           acknowledged writes",
};
pub const DB_CHECK_TIME: Setting = Setting {
    var: "CREWSHIP_DB_CHECK_TIME",
    flag: None,
    default: Shown::Value("10s"),
    help: "time budget of the start-up integrity check (`0` skips it)",
};

#[derive(Debug, Clone)]
pub struct Database {
    pub data_dir: PathBuf,
    pub location: Location,
    pub sync: Synchronous,
    pub write_queue: usize,
    pub event_buffer: usize,
    pub check_time: Duration,
}

fn sqlite_path(url: &str, data_dir: &Path) -> Result<PathBuf, String> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or("expected sqlite:PATH (or sqlite://PATH), or postgres://USER@HOST/DB")?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err("expected a file path (an in-memory database would lose every write)".into());
    }
    let p = PathBuf::from(path);
    Ok(if p.is_absolute() { p } else { data_dir.join(p) })
}

fn synchronous(s: &str) -> Result<Synchronous, String> {
    match s.to_ascii_lowercase().as_str() {
        "full" => Ok(Synchronous::Full),
        "normal" => Ok(Synchronous::Normal),
        _ => Err("expected full or normal".into()),
    }
}

fn event_buffer(s: &str) -> Result<usize, String> {
    match positive::<usize>(s)? {
        n if n <= MAX_EVENT_BUFFER => Ok(n),
        _ => Err(format!("must be at most {MAX_EVENT_BUFFER}")),
    }
}

impl Database {
    pub(super) fn read(src: &Source<'_>) -> Result<Database, ConfigError> {
        let home = src.env("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let data_dir = src.get(&DATA_DIR, |s| Ok(crewship_wire::under_home(s, &home)))?;
        let pool = src.get(&DATABASE_POOL, positive)?;
        let password_file = src.get_opt(&DATABASE_PASSWORD_FILE, text)?;
        let location = src.get(&DATABASE_URL, |url| {
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                postgresql::Settings::parse(url, password_file.as_deref(), src.env("PGPASSWORD"), pool)
                    .map(|pg| Location::Postgres(Box::new(pg)))
            } else {
                sqlite_path(url, &data_dir).map(Location::Sqlite)
            }
        })?;
        Ok(Database {
            location,
            sync: src.get(&DB_SYNC, synchronous)?,
            write_queue: src.get(&WRITE_QUEUE, positive)?,
            event_buffer: src.get(&EVENT_BUFFER, event_buffer)?,
            check_time: src.get(&DB_CHECK_TIME, duration)?,
            data_dir,
        })
    }
}

/// A database URL with its password (in the authority, or a `password=`
/// parameter) replaced, for display.
pub(super) fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
        && let Some((user, _)) = auth.split_once(':')
    {
        out = format!("{scheme}://{user}:<redacted>@{host}");
    }
    if let Some((head, query)) = out.clone().split_once('?') {
        let params: Vec<String> = query
            .split('&')
            .map(|p| if p.starts_with("password=") { "password=<redacted>".to_string() } else { p.to_string() })
            .collect();
        out = format!("{head}?{}", params.join("&"));
    }
    out
}
