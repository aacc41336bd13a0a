//! All daemon configuration, read in one place: command-line flags override
//! environment variables, which override defaults. A bad value is a start-up
//! error that names the variable (or flag) it came from.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::clientip::TrustedProxies;

/// Flags of `crewshipd`. Every flag has an environment twin (see README).
#[derive(Debug, Default, Parser)]
#[command(name = "crewshipd", version, about = "Control-plane daemon for crews of AI agents")]
pub struct Flags {
    /// Address to listen on [env: CREWSHIP_HOST] [default: 0.0.0.0]
    #[arg(long)]
    pub host: Option<String>,
    /// TCP port; 0 picks a free one [env: CREWSHIP_PORT] [default: 8080]
    #[arg(long)]
    pub port: Option<String>,
    /// Data directory, created if missing [env: CREWSHIP_DATA_DIR] [default: ~/.crewship]
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Database URL [env: CREWSHIP_DATABASE_URL] [default: sqlite file in the data dir]
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {source_name}={value:?}: {reason}")]
pub struct ConfigError {
    pub source_name: String,
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_path: PathBuf,
    /// The API token from `CREWSHIP_API_TOKEN` or `CREWSHIP_API_TOKEN_FILE`;
    /// None: the daemon's own, kept in `<data dir>/api-token`.
    pub api_token: Option<ConfiguredToken>,
    /// Loopback true clients may use the API without a token.
    pub api_allow_loopback: bool,
    /// Origins besides the daemon's own whose browser requests are accepted
    /// (`scheme://host[:port]`, lower case).
    pub allowed_origins: Vec<String>,
    /// The daemon's URL as agents are told it (`CREWSHIP_API_URL`); None:
    /// derived from the listen address.
    pub agent_api_url: Option<String>,
    pub trusted_proxies: TrustedProxies,
    pub hostname: String,
    pub metrics_token: Option<String>,
    pub metrics_allow_loopback: bool,
    pub metrics_cache_ttl: Duration,
    /// How long a rendered page (process figures included) is served again.
    pub metrics_live_window: Duration,
    pub rate_card: Option<PathBuf>,
    pub journal_archive_after: Duration,
    pub journal_retention: Duration,
    pub journal_archive_interval: Duration,
    pub journal_archive_batch: usize,
    pub stats_interval: Duration,
    pub docker_host: String,
    pub cancel_grace: Duration,
    pub max_attempts: u32,
    pub run_output_limit: usize,
    pub body_limit: usize,
    /// A request's headers (and the wait for the next request on a
    /// keep-alive connection) must arrive within this.
    pub http_header_timeout: Duration,
    /// A request's body must arrive within this.
    pub http_body_timeout: Duration,
    /// Open connections at most (WebSocket sessions included); None:
    /// derived from the open-file limit.
    pub max_connections: Option<usize>,
    /// How long shutdown waits for open requests.
    pub shutdown_grace: Duration,
    /// Bytes a task may have (a pipeline step's once rendered).
    pub max_task_bytes: usize,
    /// Steps a pipeline may have (a dry run stores every rendered task).
    pub max_pipeline_steps: usize,
    /// Bytes of request bodies held by requests in flight, at most.
    pub max_inflight_body_bytes: usize,
    /// Write operations waiting for the writer, at most.
    pub write_queue: usize,
    pub ws_auth_timeout: Duration,
    /// Channels one WebSocket connection may subscribe to.
    pub ws_max_channels: usize,
    /// Bytes queued for one WebSocket client before it is dropped.
    pub ws_max_outbound_bytes: usize,
    /// How often the server pings a WebSocket client; one that has sent
    /// nothing for two intervals is dropped.
    pub ws_ping_interval: Duration,
    /// SQLite's `synchronous`: FULL (default) or NORMAL.
    pub db_sync: DbSync,
    /// Time budget of the start-up `PRAGMA quick_check` (zero: skip it).
    pub db_check_time: Duration,
    /// How runs' processes are contained.
    pub run_containment: Containment,
    /// Events buffered per subscriber (WebSocket clients, workers) before a
    /// slow one counts as lagging and is dropped.
    pub event_buffer: usize,
    /// tracing filter directives (`CREWSHIP_LOG`, else `RUST_LOG`).
    pub log_filter: String,
    pub log_json: bool,
    /// Problems worth a warning once logging is up.
    pub warnings: Vec<String>,
}

/// A token given in the environment or a file, with where it came from
/// (named in the 401 message and in warnings).
#[derive(Clone)]
pub struct ConfiguredToken {
    pub value: String,
    pub source: String,
}

impl std::fmt::Debug for ConfiguredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfiguredToken {{ source: {:?}, value: <redacted> }}", self.source)
    }
}

/// SQLite's durability setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbSync {
    /// An acknowledged write is on disk (fsync at every commit).
    Full,
    /// An acknowledged write survives a crash of crewshipd, not a power loss.
    Normal,
}

/// How the processes of a run are kept together, so that all of them end
/// with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// A cgroup per run where cgroup v2 is writable, else process groups.
    Auto,
    Cgroup,
    ProcessGroup,
}

/// The daemon's own API token, in the data directory (read by the CLI).
pub const API_TOKEN_FILE: &str = "api-token";

/// Largest `CREWSHIP_EVENT_BUFFER`: the buffer is allocated up front.
pub const MAX_EVENT_BUFFER: usize = 1 << 20;

/// A source of raw settings: a flag value if given, else the environment.
struct Source<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Source<'_> {
    /// The raw value and the name to blame if it is bad.
    fn get(&self, flag: Option<&String>, flag_name: &str, var: &str) -> Option<(String, String)> {
        if let Some(v) = flag {
            return Some((v.clone(), flag_name.to_string()));
        }
        (self.env)(var).filter(|v| !v.is_empty()).map(|v| (v, var.to_string()))
    }

    fn env(&self, var: &str) -> Option<(String, String)> {
        self.get(None, "", var)
    }
}

fn bad(source_name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { source_name: source_name.to_string(), value: value.to_string(), reason: reason.into() }
}

fn parse_with<T>(
    raw: Option<(String, String)>,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match raw {
        None => Ok(default),
        Some((value, name)) => parse(value.trim()).map_err(|reason| bad(&name, &value, reason)),
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("expected a duration like 15s, 500ms or 30d ({e})"))
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err("expected a positive whole number".into()),
    }
}

/// A token as configured, trimmed; surrounding whitespace (a newline from
/// `echo` into a file, say) is worth a warning, never a silent mismatch.
fn trimmed_token(value: &str, source: &str, warnings: &mut Vec<String>) -> Option<String> {
    let t = value.trim();
    if t.len() != value.len() {
        warnings.push(format!("{source}: the token had surrounding whitespace, which was trimmed"));
    }
    Some(t.to_string()).filter(|t| !t.is_empty())
}

fn read_token_file(path: &str, name: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| bad(name, path, format!("cannot read the token file: {e}")))
}

fn api_token(src: &Source<'_>, warnings: &mut Vec<String>) -> Result<Option<ConfiguredToken>, ConfigError> {
    if let Some((path, name)) = src.env("CREWSHIP_API_TOKEN_FILE") {
        let source = format!("the file {path} ({name})");
        let value = trimmed_token(&read_token_file(&path, &name)?, &source, warnings)
            .ok_or_else(|| bad(&name, &path, "the token file is empty"))?;
        return Ok(Some(ConfiguredToken { value, source }));
    }
    Ok(src.env("CREWSHIP_API_TOKEN").and_then(|(v, name)| {
        let source = format!("set by {name} in its environment");
        Some(ConfiguredToken { value: trimmed_token(&v, &name, warnings)?, source })
    }))
}

/// `scheme://host[:port]` entries, lower case, without a trailing slash.
fn origins(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let o = o.trim_end_matches('/').to_ascii_lowercase();
            match o.split_once("://") {
                Some(("http" | "https", host)) if !host.is_empty() && !host.contains('/') => Ok(o),
                _ => Err(format!("{o:?} is not an origin like https://console.example.com")),
            }
        })
        .collect()
}

fn http_url_setting(s: &str) -> Result<String, String> {
    match s.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(s.trim_end_matches('/').to_string()),
        _ => Err("expected an http:// or https:// URL".into()),
    }
}

fn db_sync(s: &str) -> Result<DbSync, String> {
    match s.to_ascii_lowercase().as_str() {
        "full" => Ok(DbSync::Full),
        "normal" => Ok(DbSync::Normal),
        _ => Err("expected full or normal".into()),
    }
}

fn containment(s: &str) -> Result<Containment, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(Containment::Auto),
        "cgroup" => Ok(Containment::Cgroup),
        "process-group" => Ok(Containment::ProcessGroup),
        _ => Err("expected auto, cgroup or process-group".into()),
    }
}

fn log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("not a log filter ({e})"))?;
    Ok(s.to_string())
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

fn database_path(url: &str, data_dir: &Path) -> Result<PathBuf, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err("the PostgreSQL backend is not available in this build; use a sqlite: URL".into());
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or("expected sqlite:PATH (or sqlite://PATH)")?;
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err("expected a file path (an in-memory database would lose every write)".into());
    }
    let p = PathBuf::from(path);
    Ok(if p.is_absolute() { p } else { data_dir.join(p) })
}

fn os_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl Config {
    /// Reads flags and the process environment.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Self::from_sources(flags, &|k| std::env::var(k).ok())
    }

    pub fn from_sources(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let src = Source { env };
        let host =
            parse_with(src.get(flags.host.as_ref(), "--host", "CREWSHIP_HOST"), IpAddr::from([0, 0, 0, 0]), |s| {
                s.parse().map_err(|_| "expected an IP address such as 0.0.0.0 or ::1".into())
            })?;
        let port = parse_with(src.get(flags.port.as_ref(), "--port", "CREWSHIP_PORT"), 8080u16, |s| {
            s.parse().map_err(|_| "expected a TCP port (0-65535)".into())
        })?;
        let data_dir = parse_with(
            src.get(flags.data_dir.as_ref(), "--data-dir", "CREWSHIP_DATA_DIR"),
            home_dir().join(".crewship"),
            |s| Ok(PathBuf::from(s)),
        )?;
        let database_path = parse_with(
            src.get(flags.database_url.as_ref(), "--database-url", "CREWSHIP_DATABASE_URL"),
            data_dir.join("crewship.db"),
            |s| database_path(s, &data_dir),
        )?;
        let (trusted_proxies, ignored) =
            TrustedProxies::parse(&src.env("CREWSHIP_TRUSTED_PROXY_CIDRS").map(|(v, _)| v).unwrap_or_default());
        let mut warnings: Vec<String> = ignored
            .into_iter()
            .map(|e| format!("CREWSHIP_TRUSTED_PROXY_CIDRS: ignoring {e:?}, which is not an IP address or CIDR"))
            .collect();
        let api_token = api_token(&src, &mut warnings)?;
        let metrics_token = match src.env("CREWSHIP_METRICS_TOKEN_FILE") {
            Some((path, name)) => trimmed_token(&read_token_file(&path, &name)?, &name, &mut warnings),
            None => src.env("CREWSHIP_METRICS_TOKEN").and_then(|(v, name)| trimmed_token(&v, &name, &mut warnings)),
        };
        Ok(Config {
            host,
            port,
            database_path,
            api_token,
            api_allow_loopback: parse_with(src.env("CREWSHIP_API_ALLOW_LOOPBACK"), false, boolean)?,
            allowed_origins: parse_with(src.env("CREWSHIP_ALLOWED_ORIGINS"), Vec::new(), origins)?,
            agent_api_url: parse_with(src.env("CREWSHIP_AGENT_API_URL"), None, |s| http_url_setting(s).map(Some))?,
            trusted_proxies,
            hostname: src.env("CREWSHIP_HOSTNAME").map(|(v, _)| v).unwrap_or_else(os_hostname),
            metrics_token,
            metrics_allow_loopback: parse_with(src.env("CREWSHIP_METRICS_ALLOW_LOOPBACK"), true, boolean)?,
            metrics_cache_ttl: parse_with(src.env("CREWSHIP_METRICS_CACHE_TTL"), Duration::from_secs(15), duration)?,
            metrics_live_window: parse_with(src.env("CREWSHIP_METRICS_LIVE_WINDOW"), Duration::from_secs(1), duration)?,
            rate_card: src.env("CREWSHIP_RATE_CARD").map(|(v, _)| PathBuf::from(v)),
            journal_archive_after: parse_with(
                src.env("CREWSHIP_JOURNAL_ARCHIVE_AFTER"),
                Duration::from_secs(30 * 86_400),
                duration,
            )?,
            journal_retention: parse_with(
                src.env("CREWSHIP_JOURNAL_RETENTION"),
                Duration::from_secs(365 * 86_400),
                duration,
            )?,
            journal_archive_interval: parse_with(
                src.env("CREWSHIP_JOURNAL_ARCHIVE_INTERVAL"),
                Duration::from_secs(600),
                positive_duration,
            )?,
            journal_archive_batch: parse_with(src.env("CREWSHIP_JOURNAL_ARCHIVE_BATCH"), 1000, positive)?,
            stats_interval: parse_with(src.env("CREWSHIP_STATS_INTERVAL"), Duration::from_secs(5), positive_duration)?,
            docker_host: src
                .env("DOCKER_HOST")
                .map(|(v, _)| v)
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string()),
            cancel_grace: parse_with(src.env("CREWSHIP_CANCEL_GRACE"), Duration::from_secs(5), duration)?,
            max_attempts: parse_with(src.env("CREWSHIP_MAX_ATTEMPTS"), 3, positive)?,
            run_output_limit: parse_with(src.env("CREWSHIP_RUN_OUTPUT_LIMIT"), 256 * 1024, positive)?,
            body_limit: parse_with(src.env("CREWSHIP_BODY_LIMIT"), 1024 * 1024, positive)?,
            http_header_timeout: parse_with(
                src.env("CREWSHIP_HTTP_HEADER_TIMEOUT"),
                Duration::from_secs(10),
                positive_duration,
            )?,
            http_body_timeout: parse_with(
                src.env("CREWSHIP_HTTP_BODY_TIMEOUT"),
                Duration::from_secs(30),
                positive_duration,
            )?,
            max_connections: parse_with(src.env("CREWSHIP_MAX_CONNECTIONS"), None, |s| positive(s).map(Some))?,
            shutdown_grace: parse_with(src.env("CREWSHIP_SHUTDOWN_GRACE"), Duration::from_secs(30), duration)?,
            max_task_bytes: parse_with(src.env("CREWSHIP_MAX_TASK_BYTES"), 256 * 1024, positive)?,
            max_pipeline_steps: parse_with(src.env("CREWSHIP_MAX_PIPELINE_STEPS"), 100, positive)?,
            max_inflight_body_bytes: parse_with(
                src.env("CREWSHIP_MAX_INFLIGHT_BODY_BYTES"),
                64 * 1024 * 1024,
                positive,
            )?,
            write_queue: parse_with(src.env("CREWSHIP_WRITE_QUEUE"), 4096, positive)?,
            ws_auth_timeout: parse_with(
                src.env("CREWSHIP_WS_AUTH_TIMEOUT"),
                Duration::from_secs(10),
                positive_duration,
            )?,
            ws_max_channels: parse_with(src.env("CREWSHIP_WS_MAX_CHANNELS"), 256, positive)?,
            ws_max_outbound_bytes: parse_with(src.env("CREWSHIP_WS_MAX_OUTBOUND_BYTES"), 1024 * 1024, positive)?,
            ws_ping_interval: parse_with(
                src.env("CREWSHIP_WS_PING_INTERVAL"),
                Duration::from_secs(30),
                positive_duration,
            )?,
            event_buffer: parse_with(src.env("CREWSHIP_EVENT_BUFFER"), 4096, |s| match positive::<usize>(s)? {
                n if n <= MAX_EVENT_BUFFER => Ok(n),
                _ => Err(format!("must be at most {MAX_EVENT_BUFFER}")),
            })?,
            db_sync: parse_with(src.env("CREWSHIP_DB_SYNC"), DbSync::Full, db_sync)?,
            db_check_time: parse_with(src.env("CREWSHIP_DB_CHECK_TIME"), Duration::from_secs(10), duration)?,
            run_containment: parse_with(src.env("CREWSHIP_RUN_CONTAINMENT"), Containment::Auto, containment)?,
            log_filter: parse_with(
                src.env("CREWSHIP_LOG").or_else(|| src.env("RUST_LOG")),
                "info".to_string(),
                log_filter,
            )?,
            log_json: parse_with(src.env("CREWSHIP_LOG_JSON"), false, boolean)?,
            warnings,
            data_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(&Flags::default(), &move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[("HOME", "/h")]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.metrics_cache_ttl, Duration::from_secs(15));
        assert!(c.metrics_allow_loopback);
        assert!(c.metrics_token.is_none());
        assert_eq!(c.journal_archive_after, Duration::from_secs(30 * 86_400));
        // Safe by default: every client shows a token, and an acknowledged
        // write is on disk.
        assert!(!c.api_allow_loopback);
        assert!(c.api_token.is_none());
        assert_eq!(c.db_sync, DbSync::Full);
        assert_eq!(c.http_header_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.max_task_bytes, 256 * 1024);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("CREWSHIP_PORT", "80a"),
            ("CREWSHIP_HOST", "nowhere"),
            ("CREWSHIP_METRICS_CACHE_TTL", "soon"),
            ("CREWSHIP_METRICS_ALLOW_LOOPBACK", "maybe"),
            ("CREWSHIP_DATABASE_URL", "mysql://x"),
            ("CREWSHIP_MAX_ATTEMPTS", "0"),
        ] {
            let err = load(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
            assert!(err.contains(value), "{err}");
        }
    }

    #[test]
    fn flags_override_env() {
        let flags = Flags { port: Some("9000".into()), ..Flags::default() };
        let c = Config::from_sources(&flags, &|k| (k == "CREWSHIP_PORT").then(|| "7000".into())).unwrap();
        assert_eq!(c.port, 9000);
        let flags = Flags { port: Some("x".into()), ..Flags::default() };
        let err = Config::from_sources(&flags, &|_| None).unwrap_err().to_string();
        assert!(err.contains("--port"), "{err}");
    }

    #[test]
    fn database_url_forms() {
        let c = load(&[("CREWSHIP_DATA_DIR", "/d"), ("CREWSHIP_DATABASE_URL", "sqlite:x.db")]).unwrap();
        assert_eq!(c.database_path, PathBuf::from("/d/x.db"));
        let c = load(&[("CREWSHIP_DATABASE_URL", "sqlite:///abs/y.db?mode=rwc")]).unwrap();
        assert_eq!(c.database_path, PathBuf::from("/abs/y.db"));
        assert!(load(&[("CREWSHIP_DATABASE_URL", "postgres://db/x")]).is_err());
    }

    #[test]
    fn metrics_token_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cret\n").unwrap();
        let c =
            load(&[("CREWSHIP_METRICS_TOKEN", "env"), ("CREWSHIP_METRICS_TOKEN_FILE", f.to_str().unwrap())]).unwrap();
        assert_eq!(c.metrics_token.as_deref(), Some("s3cret"));
        assert!(load(&[("CREWSHIP_METRICS_TOKEN_FILE", "/no/such/file")]).is_err());
    }
}
