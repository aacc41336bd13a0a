//! Every family /metrics prints, in order, with its HELP text and the
//! closed label sets of METRICS.md §4 (zero-filled, unknown values folded
//! into `other`).

use super::exposition::{Family, Kind, Value};
use super::process::{AllocStats, ProcessStats};
use super::snapshot::DbSnapshot;
use crate::domain::named::Named;
use crate::domain::pricing::{self, Tokens};
use crate::domain::provider;
use crate::domain::status::{AssignmentStatus, PipelineRunStatus, RunStatus};
use crate::latency::{Histogram, Http};
use crate::store::snapshot::LlmSeries;

/// The closed label set of a status family: every status, then `other`
/// for whatever else a row holds.
fn statuses<T: Named>() -> Vec<&'static str> {
    T::ALL.iter().map(|s| s.as_str()).chain([OTHER]).collect()
}

/// The run lifecycle events (a run's start, and each terminal status).
fn run_events() -> Vec<&'static str> {
    RunStatus::ALL.iter().map(|s| s.event()).collect()
}

const OTHER: &str = "other";

/// Sums stored (label, count) pairs into a closed set: labels are trimmed
/// and lower-cased; anything outside the set goes to `other` if the set
/// has it, and is dropped otherwise.
pub fn fold(closed: &[&'static str], stored: &[(String, i64)]) -> Vec<(&'static str, i64)> {
    let mut out: Vec<(&'static str, i64)> = closed.iter().map(|l| (*l, 0)).collect();
    for (label, n) in stored {
        let label = label.trim().to_lowercase();
        let slot = out.iter().position(|(l, _)| *l == label).or_else(|| out.iter().position(|(l, _)| *l == OTHER));
        if let Some(i) = slot {
            out[i].1 += n;
        }
    }
    out
}

/// The LLM series, at most `MAX_OWN_SERIES` own labels plus `other`,
/// whatever the table holds.
pub fn cap_providers(stored: &[LlmSeries]) -> Vec<LlmSeries> {
    let mut out: Vec<LlmSeries> = Vec::new();
    let mut other: Option<LlmSeries> = None;
    for series in stored {
        if series.label == provider::OTHER || out.len() as i64 >= provider::MAX_OWN_SERIES {
            let o =
                other.get_or_insert_with(|| LlmSeries { label: provider::OTHER.to_string(), ..LlmSeries::default() });
            o.calls = o.calls.saturating_add(series.calls);
            o.cost_nanos = o.cost_nanos.saturating_add(series.cost_nanos);
            o.tokens += series.tokens;
        } else {
            out.push(series.clone());
        }
    }
    out.extend(other);
    out
}

/// The token types of `crewshipd_llm_tokens_total`, with each one's count.
fn token_types(t: Tokens) -> [(&'static str, i64); 4] {
    [("input", t.input), ("output", t.output), ("cached_input", t.cached_input), ("cache_creation", t.cache_creation)]
}

fn labeled(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    label: &'static str,
    values: Vec<(&'static str, i64)>,
) -> Family {
    values
        .into_iter()
        .fold(Family::new(name, help, kind), |f, (l, n)| f.with(vec![(label, l.to_string())], Value::Int(n)))
}

pub struct Live {
    pub uptime_seconds: f64,
    pub alive_tasks: usize,
    pub alloc: Option<AllocStats>,
    pub process: Option<ProcessStats>,
    pub ws_connections: i64,
    pub containers_tracked: i64,
    pub containers_reporting: i64,
    pub snapshot_computations: u64,
    /// This node's runs by outcome, and its queue waits.
    pub runs: Vec<(RunStatus, Histogram)>,
    pub queue_wait: Histogram,
    pub http: Http,
    pub spans_dropped: u64,
}

pub fn build(live: &Live, db: &DbSnapshot) -> Vec<Family> {
    let mut f = vec![
        Family::gauge(
            "crewshipd_uptime_seconds",
            "Seconds since crewshipd started.",
            Value::Float(live.uptime_seconds),
        ),
        Family::gauge(
            "crewshipd_goroutines",
            "Live async tasks in the runtime (named goroutines for dashboard compatibility).",
            Value::Int(live.alive_tasks as i64),
        ),
    ];
    if let Some(a) = live.alloc {
        f.push(Family::gauge(
            "crewshipd_memory_alloc_bytes",
            "Bytes of heap currently allocated (jemalloc stats.allocated).",
            Value::Int(a.allocated as i64),
        ));
        f.push(Family::gauge(
            "crewshipd_memory_sys_bytes",
            "Bytes the allocator obtained from the OS (jemalloc stats.mapped).",
            Value::Int(a.mapped as i64),
        ));
        f.push(Family::new(
            "crewshipd_gc_runs",
            "Memory-reclamation passes of the allocator (jemalloc purge sweeps); named gc_runs for dashboard compatibility.",
            Kind::Counter,
        ).with(vec![], Value::Int(a.purges as i64)));
    }
    f.push(Family::gauge(
        "crewshipd_ws_connections",
        "Authenticated WebSocket connections open now.",
        Value::Int(live.ws_connections),
    ));
    if let Some(p) = live.process {
        f.push(
            Family::new("process_cpu_seconds", "Total user and system CPU time spent in seconds.", Kind::Counter)
                .with(vec![], Value::Float(p.cpu_seconds)),
        );
        f.push(Family::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Value::Int(p.resident_bytes as i64),
        ));
        f.push(Family::gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Value::Int(p.virtual_bytes as i64),
        ));
        f.push(Family::gauge("process_open_fds", "Number of open file descriptors.", Value::Int(p.open_fds as i64)));
        let max = p.max_fds.map_or(Value::Float(f64::INFINITY), |n| Value::Int(n as i64));
        f.push(Family::gauge("process_max_fds", "Maximum number of open file descriptors.", max));
        f.push(Family::gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Value::Float(p.start_time_seconds),
        ));
    }
    f.push(
        Family::new("crewshipd_build_info", "Build of the running crewshipd; the value is always 1.", Kind::Gauge)
            .with(
                vec![
                    ("version", env!("CARGO_PKG_VERSION").to_string()),
                    ("revision", env!("CREWSHIP_REVISION").to_string()),
                ],
                Value::Int(1),
            ),
    );

    f.push(labeled(
        "crewshipd_assignments",
        "Assignments currently in each status.",
        Kind::Gauge,
        "status",
        fold(&statuses::<AssignmentStatus>(), &db.assignments.value),
    ));
    let q = db.queue.value;
    f.push(Family::gauge(
        "crewshipd_assignment_queue_depth",
        "Queued assignments across all crews.",
        Value::Int(q.depth),
    ));
    f.push(Family::gauge(
        "crewshipd_assignment_queue_crews",
        "Crews with at least one queued assignment.",
        Value::Int(q.crews),
    ));
    f.push(Family::gauge(
        "crewshipd_assignment_queue_depth_max",
        "Queued assignments of the most backlogged crew.",
        Value::Int(q.depth_max),
    ));
    f.push(Family::gauge(
        "crewshipd_assignment_queue_oldest_age_seconds",
        "Age in seconds of the oldest queued assignment when the snapshot was taken (0 when none was queued).",
        Value::Float(q.oldest_age_ms as f64 / 1000.0),
    ));
    f.push(labeled(
        "crewshipd_pipeline_runs",
        "Pipeline runs in each status.",
        Kind::Gauge,
        "status",
        fold(&statuses::<PipelineRunStatus>(), &db.pipeline_runs.value),
    ));
    f.push(labeled(
        "crewshipd_agent_run_events",
        "Agent run lifecycle events journaled, live and archived.",
        Kind::Counter,
        "event",
        fold(&run_events(), &db.run_events.value),
    ));
    let llm = cap_providers(&db.llm.value);
    let mut calls =
        Family::new("crewshipd_llm_calls", "LLM invocations recorded in the paymaster cost ledger.", Kind::Counter);
    let mut cost = Family::new(
        "crewshipd_llm_cost_usd",
        "Cumulative LLM spend in USD recorded in the paymaster cost ledger.",
        Kind::Counter,
    );
    let mut tokens = Family::new(
        "crewshipd_llm_tokens",
        "LLM tokens recorded in the paymaster cost ledger, by type.",
        Kind::Counter,
    );
    for series in llm {
        let provider = || vec![("provider", series.label.clone())];
        calls = calls.with(provider(), Value::Int(series.calls));
        cost = cost.with(provider(), Value::Float(pricing::nanos_to_usd(series.cost_nanos)));
        for (kind, n) in token_types(series.tokens) {
            tokens = tokens.with(vec![("provider", series.label.clone()), ("type", kind.to_string())], Value::Int(n));
        }
    }
    f.push(calls);
    f.push(cost);
    f.push(tokens);
    let mut durations = Family::new(
        "crewshipd_run_duration_seconds",
        "Wall time from start to end of the runs this node executed, by outcome.",
        Kind::Histogram,
    );
    for (outcome, h) in &live.runs {
        durations = durations.histogram(vec![("outcome", outcome.as_str().to_string())], h.clone());
    }
    f.push(durations);
    f.push(
        Family::new(
            "crewshipd_assignment_queue_wait_seconds",
            "Time from queued to started of the assignments this node started.",
            Kind::Histogram,
        )
        .histogram(vec![], live.queue_wait.clone()),
    );
    f.push(Family::gauge(
        "crewshipd_containers_tracked",
        "Crew containers registered with the stats collector.",
        Value::Int(live.containers_tracked),
    ));
    f.push(Family::gauge(
        "crewshipd_containers_reporting",
        "Tracked containers whose latest stats sample is fresh.",
        Value::Int(live.containers_reporting),
    ));
    f.push(Family::gauge(
        "crewshipd_db_migration_version",
        "Highest applied schema migration version.",
        Value::Int(db.migration_version.value),
    ));
    let (live_nodes, expired_nodes) = db.nodes.value;
    f.push(
        Family::new(
            "crewshipd_fleet_nodes",
            "Nodes registered in the database, by the state of their lease.",
            Kind::Gauge,
        )
        .with(vec![("state", "live".to_string())], Value::Int(live_nodes))
        .with(vec![("state", "expired".to_string())], Value::Int(expired_nodes)),
    );

    let health = db.health();
    let mut up = Family::new(
        "crewshipd_metrics_collector_up",
        "Whether the last computation of each metrics collector succeeded.",
        Kind::Gauge,
    );
    let mut errors = Family::new(
        "crewshipd_metrics_collector_errors",
        "Failed computations of each metrics collector.",
        Kind::Counter,
    );
    for (name, ok, n) in health {
        up = up.with(vec![("collector", name.to_string())], Value::Int(i64::from(ok)));
        errors = errors.with(vec![("collector", name.to_string())], Value::Int(n as i64));
    }
    f.push(up);
    f.push(errors);
    f.push(Family::gauge(
        "crewshipd_metrics_snapshot_age_seconds",
        "Age of the served database-derived snapshot in seconds.",
        Value::Float(db.taken_at.elapsed().as_secs_f64()),
    ));
    f.push(
        Family::new(
            "crewshipd_metrics_snapshot_computations",
            "Database-derived snapshots computed since start.",
            Kind::Counter,
        )
        .with(vec![], Value::Int(live.snapshot_computations as i64)),
    );
    let mut requests = Family::new(
        "crewshipd_http_requests",
        "HTTP requests answered, by method, route template and status code.",
        Kind::Counter,
    );
    for (route, r) in &live.http {
        for ((method, code), n) in &r.requests {
            let labels = vec![("method", method.to_string()), ("route", route.clone()), ("code", code.to_string())];
            requests = requests.with(labels, Value::Int(*n as i64));
        }
    }
    f.push(requests);
    let mut latency = Family::new(
        "crewshipd_http_request_duration_seconds",
        "Time to answer HTTP requests, by route template.",
        Kind::Histogram,
    );
    for (route, r) in &live.http {
        latency = latency.histogram(vec![("route", route.clone())], r.durations.clone());
    }
    f.push(latency);
    f.push(
        Family::new(
            "crewshipd_otlp_spans_dropped",
            "Spans not exported: the export queue was full, or the receiver failed their batch.",
            Kind::Counter,
        )
        .with(vec![], Value::Int(live.spans_dropped as i64)),
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_zero_fills_and_folds_unknowns() {
        let stored = vec![
            (" QUEUED ".to_string(), 2),
            ("queued".to_string(), 3),
            ("weird".to_string(), 4),
            ("Other".to_string(), 1),
        ];
        let folded = fold(&statuses::<AssignmentStatus>(), &stored);
        assert_eq!(folded.len(), 7);
        assert_eq!(folded.iter().find(|(l, _)| *l == "queued").unwrap().1, 5);
        assert_eq!(folded.iter().find(|(l, _)| *l == "other").unwrap().1, 5);
        assert_eq!(folded.iter().find(|(l, _)| *l == "pending").unwrap().1, 0);
        // No `other` in the run-event set: unknown events are not invented.
        assert_eq!(fold(&run_events(), &[("exploded".to_string(), 9)]).iter().map(|(_, n)| n).sum::<i64>(), 0);
        assert_eq!(run_events(), ["started", "completed", "failed", "cancelled", "timeout"]);
        assert_eq!(statuses::<PipelineRunStatus>().len(), 8);
    }

    #[test]
    fn provider_cap_holds_whatever_is_stored() {
        let series = |label: &str, calls: i64, cost_nanos: i64, input: i64| LlmSeries {
            label: label.to_string(),
            calls,
            cost_nanos,
            tokens: Tokens { input, output: 2 * input, ..Tokens::default() },
        };
        let stored: Vec<LlmSeries> = (0..30).map(|i| series(&format!("p{i}"), 1, 10, 3)).collect();
        let capped = cap_providers(&stored);
        assert_eq!(capped.len(), 25);
        assert_eq!(capped.last().unwrap(), &series("other", 6, 60, 18));
        let with_other = vec![series("other", 2, 5, 1), series("a", 1, 1, 1)];
        assert_eq!(cap_providers(&with_other), vec![series("a", 1, 1, 1), series("other", 2, 5, 1)]);
    }
}
