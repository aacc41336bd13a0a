//! Running work: processes and their containment, container crews, the
//! bounds of tasks and pipelines, retries, and the rate card.

use std::path::PathBuf;
use std::time::Duration;

use super::database::Database;
use super::source::{ConfigError, Setting, Shown, Source, duration, positive, positive_duration, text};
use crate::runtime::contain::Mode;

pub const RATE_CARD: Setting = Setting {
    var: "CREWSHIP_RATE_CARD",
    flag: None,
    default: Shown::Derived("built-in"),
    help: "JSON file of prices overriding/adding to the built-in rate card",
};
pub const STATS_INTERVAL: Setting = Setting {
    var: "CREWSHIP_STATS_INTERVAL",
    flag: None,
    default: Shown::Value("5s"),
    help: "container stats poll interval",
};
pub const DOCKER_HOST: Setting = Setting {
    var: "DOCKER_HOST",
    flag: None,
    default: Shown::Value("unix:///var/run/docker.sock"),
    help: "Docker Engine API for `runtime: docker` crews",
};
pub const CANCEL_GRACE: Setting = Setting {
    var: "CREWSHIP_CANCEL_GRACE",
    flag: None,
    default: Shown::Value("5s"),
    help: "SIGTERM → SIGKILL grace when a run is cancelled",
};
pub const MAX_ATTEMPTS: Setting = Setting {
    var: "CREWSHIP_MAX_ATTEMPTS",
    flag: None,
    default: Shown::Value("3"),
    help: "runs an assignment may start before an interruption fails it",
};
pub const RUN_OUTPUT_LIMIT: Setting = Setting {
    var: "CREWSHIP_RUN_OUTPUT_LIMIT",
    flag: None,
    default: Shown::Value("262144"),
    help: "bytes of output kept per run (the tail)",
};
pub const RUN_CONTAINMENT: Setting = Setting {
    var: "CREWSHIP_RUN_CONTAINMENT",
    flag: None,
    default: Shown::Value("auto"),
    help: "`cgroup`, `process-group`, or `auto`: a cgroup per run where cgroup v2 is writable (see \
           [docs/security.md](docs/security.md))",
};
pub const MAX_TASK_BYTES: Setting = Setting {
    var: "CREWSHIP_MAX_TASK_BYTES",
    flag: None,
    default: Shown::Value("262144"),
    help: "largest task, and pipeline step task once rendered (422 above)",
};
pub const MAX_PIPELINE_STEPS: Setting = Setting {
    var: "CREWSHIP_MAX_PIPELINE_STEPS",
    flag: None,
    default: Shown::Value("100"),
    help: "steps a pipeline may have",
};

#[derive(Debug, Clone)]
pub struct Runner {
    pub rate_card: Option<PathBuf>,
    pub stats_interval: Duration,
    pub docker_host: String,
    pub cancel_grace: Duration,
    pub max_attempts: u32,
    pub output_limit: usize,
    pub containment: Mode,
    pub max_task_bytes: usize,
    pub max_pipeline_steps: usize,
    /// Where runs get their working directories.
    pub work_dir: PathBuf,
}

fn mode(s: &str) -> Result<Mode, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(Mode::Auto),
        "cgroup" => Ok(Mode::Cgroup),
        "process-group" => Ok(Mode::ProcessGroup),
        _ => Err("expected auto, cgroup or process-group".into()),
    }
}

impl Runner {
    pub(super) fn read(src: &Source<'_>, database: &Database) -> Result<Runner, ConfigError> {
        Ok(Runner {
            rate_card: src.get_opt(&RATE_CARD, text)?.map(PathBuf::from),
            stats_interval: src.get(&STATS_INTERVAL, positive_duration)?,
            docker_host: src.get(&DOCKER_HOST, text)?,
            cancel_grace: src.get(&CANCEL_GRACE, duration)?,
            max_attempts: src.get(&MAX_ATTEMPTS, positive)?,
            output_limit: src.get(&RUN_OUTPUT_LIMIT, positive)?,
            containment: src.get(&RUN_CONTAINMENT, mode)?,
            max_task_bytes: src.get(&MAX_TASK_BYTES, positive)?,
            max_pipeline_steps: src.get(&MAX_PIPELINE_STEPS, positive)?,
            work_dir: database.data_dir.join("work"),
        })
    }
}
