//! All daemon configuration, read once at start, by concern: one file a
//! concern (`listen`, `security`, `metrics`, `journal`, `runner`,
//! `database`, `fleet`, `logging`, `traces`), each with its settings and the section it
//! builds. A setting is declared once, as a `Setting`: its variable, flag,
//! default and help. That declaration is what `crewshipd --help` prints and
//! what the README's configuration table must say (a test compares them),
//! and its default is parsed like any other value. Flags override
//! environment variables, which override defaults; a bad value is a
//! start-up error naming the variable (or flag) it came from.

mod database;
mod fleet;
mod journal;
mod listen;
mod logging;
mod metrics;
mod runner;
mod security;
mod source;
mod traces;

use std::path::PathBuf;

pub use crewship_wire::TOKEN_FILE_NAME;
pub use database::Database;
pub use fleet::Fleet;
pub use journal::Journal;
pub use listen::Listen;
pub use logging::Logging;
pub use metrics::Metrics;
pub use runner::Runner;
pub use security::{ConfiguredToken, Security};
use source::Source;
pub use source::{ConfigError, Setting, Shown};
pub use traces::Traces;

/// Every setting, in the order of the README's table.
pub const ALL: &[&Setting] = &[
    &listen::HOST,
    &listen::PORT,
    &database::DATA_DIR,
    &database::DATABASE_URL,
    &database::DATABASE_POOL,
    &database::DATABASE_PASSWORD_FILE,
    &security::API_TOKEN,
    &security::API_TOKEN_FILE,
    &security::API_ALLOW_LOOPBACK,
    &security::ALLOWED_ORIGINS,
    &security::AGENT_API_URL,
    &security::TRUSTED_PROXY_CIDRS,
    &metrics::HOSTNAME,
    &metrics::METRICS_TOKEN,
    &metrics::METRICS_TOKEN_FILE,
    &metrics::METRICS_ALLOW_LOOPBACK,
    &metrics::METRICS_CACHE_TTL,
    &metrics::METRICS_LIVE_WINDOW,
    &runner::RATE_CARD,
    &journal::ARCHIVE_AFTER,
    &journal::RETENTION,
    &journal::ARCHIVE_INTERVAL,
    &journal::ARCHIVE_BATCH,
    &runner::STATS_INTERVAL,
    &runner::DOCKER_HOST,
    &runner::CANCEL_GRACE,
    &runner::MAX_ATTEMPTS,
    &runner::RUN_OUTPUT_LIMIT,
    &runner::RUN_CONTAINMENT,
    &runner::MAX_TASK_BYTES,
    &runner::MAX_PIPELINE_STEPS,
    &fleet::NODE_HEARTBEAT,
    &fleet::NODE_LEASE,
    &fleet::NODE_FORGET_AFTER,
    &listen::BODY_LIMIT,
    &listen::HEADER_TIMEOUT,
    &listen::BODY_TIMEOUT,
    &listen::MAX_CONNECTIONS,
    &listen::MAX_INFLIGHT_BODY_BYTES,
    &listen::SHUTDOWN_GRACE,
    &listen::WS_AUTH_TIMEOUT,
    &listen::WS_MAX_CHANNELS,
    &listen::WS_MAX_OUTBOUND_BYTES,
    &listen::WS_PING_INTERVAL,
    &database::WRITE_QUEUE,
    &database::EVENT_BUFFER,
    &database::DB_SYNC,
    &database::DB_CHECK_TIME,
    &logging::LOG,
    &logging::LOG_JSON,
    &traces::TRACES_ENDPOINT,
    &traces::ENDPOINT,
    &traces::PROTOCOL,
    &traces::HEADERS,
    &traces::COMPRESSION,
    &traces::TIMEOUT,
    &traces::SERVICE_NAME,
    &traces::RESOURCE_ATTRIBUTES,
    &traces::SAMPLER,
    &traces::SAMPLER_ARG,
    &traces::QUEUE,
    &traces::BATCH,
    &traces::DELAY,
];

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Listen,
    pub security: Security,
    pub metrics: Metrics,
    pub journal: Journal,
    pub runner: Runner,
    pub database: Database,
    pub fleet: Fleet,
    pub logging: Logging,
    pub traces: Traces,
    /// Problems worth a warning once logging is up.
    pub warnings: Vec<String>,
}

/// The command line of `crewshipd`: a flag for each setting that has one,
/// with its help and default from the declaration.
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("crewshipd")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Control-plane daemon for crews of AI agents")
        .after_help("Every setting is also read from its environment variable; see the README.");
    for s in ALL.iter().filter(|s| s.flag.is_some()) {
        cmd = cmd.arg(source::arg(s));
    }
    cmd.arg(
        clap::Arg::new("check-config")
            .long("check-config")
            .action(clap::ArgAction::SetTrue)
            .help("Print the effective configuration (secrets redacted) and exit: 0 when it is valid, 2 when not"),
    )
    .arg(
        clap::Arg::new("man")
            .long("man")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .help("Write this man page, crewshipd(8), into DIR/man8 (`/usr/local/share/man`) and exit"),
    )
}

/// crewshipd(8), from the settings' declarations.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command()).section("8").render(&mut page)?;
    Ok(page)
}

/// The command line, parsed once.
pub struct CommandLine {
    matches: clap::ArgMatches,
}

/// A setting's value as `--check-config` shows it: secrets (tokens, export
/// headers, a database password) never appear.
fn redacted(s: &Setting, value: &str) -> String {
    if s.var.ends_with("_TOKEN") || s.var.ends_with("_HEADERS") {
        return "<redacted>".to_string();
    }
    if s.var == database::DATABASE_URL.var {
        return database::redact_url(value);
    }
    value.to_string()
}

impl CommandLine {
    pub fn parse() -> CommandLine {
        CommandLine { matches: command().get_matches() }
    }

    pub fn check_config(&self) -> bool {
        self.matches.get_flag("check-config")
    }

    /// Where `--man` writes the man page, when given.
    pub fn man_dir(&self) -> Option<&PathBuf> {
        self.matches.get_one::<PathBuf>("man")
    }

    fn flag(&self, s: &Setting) -> Option<String> {
        s.flag.and_then(|f| self.matches.get_one::<String>(f.trim_start_matches('-')).cloned())
    }

    /// The configuration from these flags and the process environment.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::from_sources(&|s| self.flag(s), &|k| std::env::var(k).ok())
    }

    /// Every setting as it is in effect, one `VAR=value (where from)` line
    /// each, secrets redacted.
    pub fn effective(&self) -> Vec<String> {
        let env = |k: &str| std::env::var(k).ok();
        let flags = |s: &Setting| self.flag(s);
        let src = Source::new(&flags, &env);
        ALL.iter()
            .map(|s| {
                let (value, from) = match (src.given(s), &s.default) {
                    (Some((v, name)), _) => (redacted(s, &v), name),
                    (None, Shown::Value(v)) => (redacted(s, v), "default".to_string()),
                    (None, Shown::Derived(how)) => (String::new(), format!("derived: {}", how.replace('`', ""))),
                    (None, Shown::Unset) => (String::new(), "unset".to_string()),
                };
                format!("{}={value}  ({from})", s.var)
            })
            .collect()
    }
}

impl Config {
    /// Reads settings from `flags` (a flag's value, by setting) and `env`.
    pub fn from_sources(
        flags: &dyn Fn(&Setting) -> Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let src = Source::new(flags, env);
        let mut warnings = Vec::new();
        let database = Database::read(&src)?;
        Ok(Config {
            listen: Listen::read(&src)?,
            security: Security::read(&src, &mut warnings)?,
            metrics: Metrics::read(&src, &mut warnings)?,
            journal: Journal::read(&src)?,
            runner: Runner::read(&src, &database)?,
            logging: Logging::read(&src)?,
            fleet: Fleet::read(&src)?,
            traces: Traces::read(&src)?,
            database,
            warnings,
        })
    }

    /// Where runs get their working directories.
    pub fn work_dir(&self) -> PathBuf {
        self.database.data_dir.join("work")
    }
}

#[cfg(test)]
mod tests;
