//! The data generator: fills a store at the scale of the "benchmarks at
//! scale" issue, fast. One connection without a rollback journal, big
//! transactions, prepared statements, secondary indexes dropped while the
//! rows go in and rebuilt afterwards. Every maintained counter is tallied
//! while inserting and written at the end; the daemon's own start-up check
//! (`recount::check_and_repair`) then recounts everything from the base
//! tables, and its drift list is recorded (it must be empty).
//!
//! The generated store is what a daemon leaves behind after a clean stop:
//! no pending or running assignments (the dispatcher and the start-up
//! recovery would change those at once), no queued or running pipeline
//! runs. Queued work belongs to crews whose budget is 0 (every tenth crew),
//! so the real daemon started on this store leaves its queues alone instead
//! of launching thousands of agent processes. The API refuses a budget of 0;
//! the counters and the queries measured here do not look at budgets.
//!
//! Journal timestamps: the archived half lies between 360 and 30 days ago,
//! the live half within the last 29 days, so the default archiving policy
//! finds nothing to move on the day the store is generated (the benchmark
//! daemons also run with archiving pushed far out, so a reused store stays
//! quiet).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Statement, params};
use serde::{Deserialize, Serialize};

use crewship::internals::domain::event::EventKind;
use crewship::internals::domain::provider;
use crewship::internals::domain::time;
use crewship::internals::store::pipelines::StoredStep;
use crewship::internals::store::{counters, migrations, recount, sqlite};
use crewship_wire::status::{AssignmentStatus, PipelineRunStatus, RunStatus};

use crate::Res;

/// Bump when the generated data changes shape: stored data sets regenerate.
const GENERATOR_VERSION: u32 = 2;
const DAY: i64 = 86_400_000;
const PIPELINES: u64 = 50;
/// Rows per transaction while filling.
const COMMIT_EVERY: u64 = 1_000_000;
/// Tables whose secondary indexes are rebuilt after the bulk insert.
const BULK_TABLES: &[&str] = &["assignments", "runs", "journal", "journal_archive", "llm_calls", "pipeline_runs"];

#[derive(clap::Args, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Crews; every tenth one (budget 0) holds the queued work.
    #[arg(long, default_value_t = 1_000)]
    pub crews: u64,
    #[arg(long, default_value_t = 1_000_000)]
    pub assignments: u64,
    /// Journal entries in all, the older half in journal_archive.
    #[arg(long, default_value_t = 10_000_000)]
    pub journal: u64,
    #[arg(long, default_value_t = 1_000_000)]
    pub llm_calls: u64,
    /// Distinct LLM providers (more than the 24 own series, so the cap applies).
    #[arg(long, default_value_t = 40)]
    pub providers: u64,
    #[arg(long, default_value_t = 100_000)]
    pub pipeline_runs: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Written next to the store once it is complete; a store is reused only
/// if its manifest matches the requested parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: u32,
    pub schema: i64,
    pub params: Params,
    pub generated_at: String,
    pub took_seconds: f64,
    pub index_build_seconds: f64,
    pub recount_seconds: f64,
    pub rows: BTreeMap<String, u64>,
    /// The recount's drift list right after generation (counters tallied
    /// while inserting): must be empty.
    pub drift_after_generation: Vec<String>,
    /// A second recount after the first one's repair: must be empty.
    pub drift_after_repair: Vec<String>,
    pub bytes: u64,
}

pub struct Outcome {
    pub manifest: Manifest,
    pub reused: bool,
    /// What this invocation took (a check, or the whole generation).
    pub took: Duration,
}

pub fn manifest_path(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn remove_db(path: &Path) {
    for p in [path.to_path_buf(), with_suffix(path, "-wal"), with_suffix(path, "-shm"), with_suffix(path, "-journal")] {
        let _ = std::fs::remove_file(p);
    }
}

/// Reuses the store at `path` if it was generated with these parameters,
/// else (re)generates it.
pub fn ensure(path: &Path, p: &Params) -> Res<Outcome> {
    let started = Instant::now();
    if path.exists()
        && let Ok(text) = std::fs::read_to_string(manifest_path(path))
        && let Ok(m) = serde_json::from_str::<Manifest>(&text)
        && m.generator == GENERATOR_VERSION
        && m.schema == migrations::latest_known()
        && m.params == *p
    {
        println!(
            "reusing {} (generated {} in {:.1} s; same parameters)",
            path.display(),
            m.generated_at,
            m.took_seconds
        );
        return Ok(Outcome { manifest: m, reused: true, took: started.elapsed() });
    }
    println!("generating {} with {p:?}", path.display());
    let manifest = generate(path, p)?;
    println!(
        "generated {} in {:.1} s ({:.2} GB; index build {:.1} s, recount {:.1} s; drift after generation: {:?})",
        path.display(),
        manifest.took_seconds,
        manifest.bytes as f64 / 1e9,
        manifest.index_build_seconds,
        manifest.recount_seconds,
        manifest.drift_after_generation
    );
    Ok(Outcome { manifest, reused: false, took: started.elapsed() })
}

/// SplitMix64: tiny, deterministic across versions of everything.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn per_mille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }

    /// Skewed towards 0: `0..n` with density falling like 1/sqrt.
    fn skewed(&mut self, n: u64) -> u64 {
        let u = self.below(1 << 20) as f64 / f64::from(1u32 << 20);
        ((u * u) * n as f64) as u64
    }
}

/// The trace id of run number `pk`: 32 hex digits, unique per seed.
fn trace_id(seed: u64, pk: u64) -> String {
    let hi = mix(seed.wrapping_mul(0x100_0000_01B3) ^ pk);
    let lo = mix(hi ^ pk.rotate_left(32) ^ 0xA5A5);
    format!("{hi:016x}{lo:016x}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Completed,
    Failed,
    TimedOut,
    CancelledRunning,
    CancelledQueued,
    Queued,
}

impl Fate {
    fn entries(self) -> u64 {
        match self {
            Fate::Queued => 2,
            Fate::CancelledQueued => 3,
            _ => 6,
        }
    }

    fn run(self) -> Option<RunStatus> {
        match self {
            Fate::Completed => Some(RunStatus::Completed),
            Fate::Failed => Some(RunStatus::Failed),
            Fate::TimedOut => Some(RunStatus::Timeout),
            Fate::CancelledRunning => Some(RunStatus::Cancelled),
            Fate::CancelledQueued | Fate::Queued => None,
        }
    }

    fn status(self) -> AssignmentStatus {
        match self {
            Fate::Completed => AssignmentStatus::Completed,
            Fate::Failed | Fate::TimedOut => AssignmentStatus::Failed,
            Fate::CancelledRunning | Fate::CancelledQueued => AssignmentStatus::Cancelled,
            Fate::Queued => AssignmentStatus::Queued,
        }
    }
}

fn pipeline_fate(rng: &mut Rng) -> PipelineRunStatus {
    match rng.below(100) {
        0..80 => PipelineRunStatus::Completed,
        80..88 => PipelineRunStatus::Failed,
        88..92 => PipelineRunStatus::Cancelled,
        92..97 => PipelineRunStatus::DryRun,
        _ => PipelineRunStatus::Interrupted,
    }
}

fn pipeline_entries(s: PipelineRunStatus) -> u64 {
    if s == PipelineRunStatus::DryRun { 1 } else { 2 }
}

const PROVIDER_NAMES: &[&str] = &[
    "anthropic",
    "openai",
    "google",
    "mistral",
    "cohere",
    "deepseek",
    "groq",
    "together",
    "fireworks",
    "bedrock",
    "azure-openai",
    "vertex",
    "perplexity",
    "xai",
    "openrouter",
    "ollama",
];

pub(crate) fn provider_name(i: u64) -> String {
    PROVIDER_NAMES.get(i as usize).map(|s| s.to_string()).unwrap_or_else(|| format!("provider-{:02}", i + 1))
}

/// Maintained counters, tallied as rows go in.
#[derive(Default)]
struct Tally {
    counters: BTreeMap<(String, String), i64>,
    crew_queued: BTreeMap<i64, i64>,
}

impl Tally {
    fn add(&mut self, family: &str, label: &str, n: i64) {
        *self.counters.entry((family.to_string(), label.to_string())).or_default() += n;
    }
}

struct Sink<'c> {
    journal: Statement<'c>,
    archive: Statement<'c>,
    assignment: Statement<'c>,
    run: Statement<'c>,
    pipeline_run: Statement<'c>,
    step: Statement<'c>,
}

struct Gen<'c> {
    conn: &'c Connection,
    p: Params,
    rng: Rng,
    now: i64,
    /// Next journal entry index (0-based; the row id is index + 1).
    entry: u64,
    /// Entries below this index go to the archive.
    archived: u64,
    next_run: u64,
    last_run: Option<String>,
    rows_in_tx: u64,
    tally: Tally,
    rows: BTreeMap<String, u64>,
}

impl Gen<'_> {
    /// When entry `e` was written: the archived half spread over 360 to 30
    /// days ago, the live half over the last 29 days. Non-decreasing in `e`.
    fn ts(&self, e: u64) -> i64 {
        let (half, total) = (self.archived.max(1) as i128, self.p.journal.max(1) as i128);
        let e = e as i128;
        let t = if e < half {
            i128::from(self.now - 360 * DAY) + e * i128::from(330 * DAY) / half
        } else {
            let live = (total - half).max(1);
            i128::from(self.now - 29 * DAY) + (e - half) * i128::from(29 * DAY - 60_000) / live
        };
        t as i64
    }

    fn bump(&mut self, table: &str, n: u64) -> Res<()> {
        *self.rows.entry(table.to_string()).or_default() += n;
        self.rows_in_tx += n;
        if self.rows_in_tx >= COMMIT_EVERY {
            self.conn.execute_batch("COMMIT; BEGIN")?;
            self.rows_in_tx = 0;
        }
        Ok(())
    }

    /// Appends one journal entry (to the archive if it is old); returns its time.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        sink: &mut Sink<'_>,
        entry_type: &str,
        severity: &str,
        crew: Option<i64>,
        agent: Option<i64>,
        trace: Option<&str>,
        summary: &str,
        payload: &str,
    ) -> Res<i64> {
        let e = self.entry;
        self.entry += 1;
        let ts = self.ts(e);
        let id = e as i64 + 1;
        if e < self.archived {
            let archived_at = ts + 30 * DAY + 600_000;
            sink.archive.execute(params![
                id,
                ts,
                entry_type,
                severity,
                crew,
                agent,
                trace,
                summary,
                payload,
                archived_at
            ])?;
            self.bump("journal_archive", 1)?;
        } else {
            sink.journal.execute(params![id, ts, entry_type, severity, crew, agent, trace, summary, payload])?;
            self.bump("journal", 1)?;
        }
        Ok(ts)
    }

    fn crews_agents_pipelines(&mut self) -> Res<()> {
        let created = self.now - 400 * DAY;
        let mut crew = self.conn.prepare(
            "INSERT INTO crews (id, slug, name, max_concurrent_agents, runtime, image, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'local', NULL, ?5, ?5)",
        )?;
        let mut counts = self.conn.prepare("INSERT INTO crew_counts (crew_id, queued) VALUES (?1, 0)")?;
        let mut agent = self.conn.prepare(
            "INSERT INTO agents (id, crew_id, slug, name, role, command, env, timeout_seconds, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, '[\"sh\",\"-c\",\"true\"]', '{}', 600, ?6, ?6)",
        )?;
        for c in 1..=self.p.crews as i64 {
            let budget = if paused(c) { 0 } else { 4 };
            crew.execute(params![c, format!("crew-{c:04}"), format!("Crew {c}"), budget, created])?;
            counts.execute([c])?;
            agent.execute(params![lead(c), c, "lead", format!("Lead of crew {c}"), "lead", created])?;
            agent.execute(params![worker(c), c, "worker", format!("Worker of crew {c}"), "agent", created])?;
        }
        self.rows.insert("crews".into(), self.p.crews);
        self.rows.insert("agents".into(), 2 * self.p.crews);
        let mut pipeline = self.conn.prepare(
            "INSERT INTO pipelines (id, slug, name, max_concurrent_runs, steps, created_at)
             VALUES (?1, ?2, ?3, 4, ?4, ?5)",
        )?;
        for id in 1..=PIPELINES as i64 {
            let c = (id - 1) % self.p.crews as i64 + 1;
            let steps = pipeline_steps(c);
            pipeline.execute(params![
                id,
                format!("pipeline-{id:02}"),
                format!("Pipeline {id}"),
                serde_json::to_string(&steps)?,
                created
            ])?;
        }
        self.rows.insert("pipelines".into(), PIPELINES);
        Ok(())
    }

    fn assignment(&mut self, sink: &mut Sink<'_>, id: i64, fate: Fate) -> Res<()> {
        let crew = if fate == Fate::Queued {
            // Deeper queues on a few crews: depth_max is not depth / crews.
            let paused_crews = (self.p.crews / 10).max(1);
            (self.rng.skewed(paused_crews) as i64 + 1) * 10
        } else {
            self.rng.below(self.p.crews) as i64 + 1
        };
        let by_worker = self.rng.per_mille(800);
        let (agent, slug) = if by_worker { (worker(crew), "worker") } else { (lead(crew), "lead") };
        let assigned_by = (by_worker && self.rng.per_mille(300)).then(|| lead(crew));
        let public = format!("asg_{id}");
        let payload = |status: &str| format!("{{\"assignment_id\":\"{public}\",\"status\":\"{status}\"}}");
        let (c, a) = (Some(crew), Some(agent));
        let created_at = self.entry(
            sink,
            "assignment.pending",
            "info",
            c,
            a,
            None,
            &format!("assignment created for agent {slug}"),
            &payload("pending"),
        )?;
        let queued_at =
            self.entry(sink, "assignment.queued", "info", c, a, None, "assignment queued", &payload("queued"))?;
        let (mut started_at, mut finished_at, mut run_id) = (None, None, None);
        let (mut result, mut error) = (None, None);
        if let Some(run_status) = fate.run() {
            let pk = self.next_run as i64;
            self.next_run += 1;
            let rid = trace_id(self.p.seed, pk as u64);
            let t = Some(rid.as_str());
            let run_started = self.entry(
                sink,
                "run.started",
                "info",
                c,
                a,
                t,
                &format!("run started for agent {slug}"),
                &format!("{{\"status\":\"running\",\"assignment_id\":\"{public}\"}}"),
            )?;
            started_at = Some(self.entry(
                sink,
                "assignment.running",
                "info",
                c,
                a,
                t,
                "assignment running",
                &payload("running"),
            )?);
            let (run_error, exit_code): (Option<&str>, Option<i64>) = match run_status {
                RunStatus::Completed => (None, Some(0)),
                RunStatus::Failed => (Some("exit status 1"), Some(1)),
                RunStatus::Timeout => (Some("timed out after 600s"), None),
                _ => (Some("cancelled by request"), None),
            };
            let status = run_status.as_str();
            let mut run_payload = format!("{{\"status\":\"{status}\",\"assignment_id\":\"{public}\"");
            if let Some(e) = run_error {
                run_payload.push_str(&format!(",\"error\":\"{e}\""));
            }
            if let Some(x) = exit_code {
                run_payload.push_str(&format!(",\"exit_code\":{x}"));
            }
            run_payload.push('}');
            let (severity, summary) = match run_error {
                Some(e) => ("warning", format!("run {status}: {e}")),
                None => ("info", format!("run {status}")),
            };
            let entry_type = EventKind::Run(run_status).to_string();
            let run_finished = self.entry(sink, &entry_type, severity, c, a, t, &summary, &run_payload)?;
            sink.run.execute(params![
                pk,
                rid,
                crew,
                agent,
                id,
                status,
                run_started,
                run_finished,
                run_error,
                exit_code
            ])?;
            self.bump("runs", 1)?;
            self.tally.add(counters::RUN_EVENTS, RunStatus::Running.event(), 1);
            self.tally.add(counters::RUN_EVENTS, run_status.event(), 1);
            match fate {
                Fate::Completed => result = Some(format!("done: {} files changed", id % 7 + 1)),
                Fate::Failed | Fate::TimedOut => error = run_error.map(str::to_string),
                _ => error = Some("cancelled by request".to_string()),
            }
            self.last_run = Some(rid.clone());
            run_id = Some(rid);
        } else if fate == Fate::CancelledQueued {
            error = Some("cancelled by request".to_string());
        }
        let status = fate.status();
        if fate != Fate::Queued {
            let (severity, summary) = match &error {
                Some(e) if status != AssignmentStatus::Completed => ("warning", format!("assignment {status}: {e}")),
                _ => ("info", format!("assignment {status}")),
            };
            let kind = format!("assignment.{status}");
            finished_at = Some(self.entry(
                sink,
                &kind,
                severity,
                c,
                a,
                run_id.as_deref(),
                &summary,
                &payload(status.as_str()),
            )?);
        } else {
            *self.tally.crew_queued.entry(crew).or_default() += 1;
        }
        let task =
            format!("{} ticket #{} for the {} queue", VERBS[(id % 5) as usize], id * 7 + 13, TOPICS[(id % 7) as usize]);
        sink.assignment.execute(params![
            id,
            crew,
            agent,
            assigned_by,
            task,
            status.as_str(),
            created_at,
            queued_at,
            started_at,
            finished_at,
            result,
            error,
            run_id,
            i64::from(fate.run().is_some())
        ])?;
        self.bump("assignments", 1)?;
        self.tally.add(counters::ASSIGNMENTS, status.as_str(), 1);
        Ok(())
    }

    fn pipeline_run(&mut self, sink: &mut Sink<'_>, id: i64, status: PipelineRunStatus) -> Res<()> {
        let pipeline = (id - 1) % PIPELINES as i64 + 1;
        let slug = format!("pipeline-{pipeline:02}");
        let public = format!("plr_{id}");
        let payload = |s: &str| format!("{{\"pipeline_run_id\":\"{public}\",\"status\":\"{s}\"}}");
        let dry = status == PipelineRunStatus::DryRun;
        let first = if dry { PipelineRunStatus::DryRun } else { PipelineRunStatus::Running };
        let kind = format!("pipeline_run.{first}");
        let created_at = self.entry(
            sink,
            &kind,
            "info",
            None,
            None,
            None,
            &format!("pipeline {slug} run {first}"),
            &payload(first.as_str()),
        )?;
        let reason = match status {
            PipelineRunStatus::Failed => Some("step review failed: exit status 1"),
            PipelineRunStatus::Cancelled => Some("cancelled by request"),
            PipelineRunStatus::Interrupted => Some("server_restart: crewshipd stopped while the run was running"),
            _ => None,
        };
        let finished_at = if dry {
            created_at
        } else {
            let severity = match status {
                PipelineRunStatus::Failed | PipelineRunStatus::Interrupted => "warning",
                _ => "info",
            };
            let summary = match reason {
                Some(r) => format!("pipeline {slug} run {status}: {r}"),
                None => format!("pipeline {slug} run {status}"),
            };
            let kind = format!("pipeline_run.{status}");
            self.entry(sink, &kind, severity, None, None, None, &summary, &payload(status.as_str()))?
        };
        let topic = TOPICS[(id % 7) as usize];
        sink.pipeline_run.execute(params![
            id,
            pipeline,
            status.as_str(),
            format!("{{\"topic\":\"{topic}\"}}"),
            dry,
            created_at,
            (!dry).then_some(created_at),
            finished_at,
            reason
        ])?;
        let c = (pipeline - 1) % self.p.crews as i64 + 1;
        let (first_step, second_step) = match status {
            PipelineRunStatus::Completed => ("completed", "completed"),
            PipelineRunStatus::Failed => ("completed", "failed"),
            PipelineRunStatus::DryRun => ("skipped", "skipped"),
            _ => ("completed", "cancelled"),
        };
        let ran = |s: &str| s == "completed" || s == "failed";
        let draft = format!("Draft a note on {topic}");
        let review = format!("Review the {topic} draft");
        sink.step.execute(params![
            id,
            0,
            "draft",
            c,
            worker(c),
            (ran(first_step) || dry).then_some(draft),
            first_step,
            ran(first_step).then_some("draft ok")
        ])?;
        sink.step.execute(params![
            id,
            1,
            "review",
            c,
            lead(c),
            (ran(second_step) || dry).then_some(review),
            second_step,
            (second_step == "completed").then_some("approved")
        ])?;
        self.bump("pipeline_runs", 1)?;
        self.bump("pipeline_run_steps", 2)?;
        self.tally.add(counters::PIPELINE_RUNS, status.as_str(), 1);
        Ok(())
    }

    fn filler(&mut self, sink: &mut Sink<'_>, n: u64) -> Res<()> {
        let crew = self.rng.below(self.p.crews) as i64 + 1;
        let (kind, severity) = match self.rng.below(100) {
            0..60 => ("agent.note", "info"),
            60..85 => ("agent.progress", "debug"),
            85..90 => ("crew.updated", "info"),
            90..95 => ("deploy.finished", "info"),
            _ => ("agent.alert", "error"),
        };
        let trace = if self.rng.per_mille(300) { self.last_run.clone() } else { None };
        let step = n % 12 + 1;
        let summary = match kind {
            "agent.progress" => format!("step {step} of 12 done"),
            "agent.alert" => format!("rate limited by the provider; retrying in {step}s"),
            "crew.updated" => "crew settings changed".to_string(),
            "deploy.finished" => format!("deployed build {n}"),
            _ => format!("looked at {step} files; nothing unusual"),
        };
        let payload = format!("{{\"step\":{step},\"of\":12,\"note\":{n}}}");
        self.entry(sink, kind, severity, Some(crew), Some(worker(crew)), trace.as_deref(), &summary, &payload)?;
        Ok(())
    }

    /// Assignments, their runs, pipeline runs and the journal, interleaved
    /// in time order.
    fn stream(&mut self, sink: &mut Sink<'_>) -> Res<()> {
        let a = self.p.assignments;
        let tail = a * 3 / 100;
        let fates: Vec<Fate> = (0..a)
            .map(|i| {
                if i >= a - tail && self.rng.per_mille(667) {
                    return Fate::Queued;
                }
                match self.rng.below(1000) {
                    0..900 => Fate::Completed,
                    900..950 => Fate::Failed,
                    950..960 => Fate::TimedOut,
                    960..985 => Fate::CancelledRunning,
                    _ => Fate::CancelledQueued,
                }
            })
            .collect();
        let pipeline_fates: Vec<PipelineRunStatus> =
            (0..self.p.pipeline_runs).map(|_| pipeline_fate(&mut self.rng)).collect();
        let structural: u64 = fates.iter().map(|f| f.entries()).sum::<u64>()
            + pipeline_fates.iter().map(|s| pipeline_entries(*s)).sum::<u64>();
        if structural > self.p.journal {
            return Err(format!(
                "--journal {} is too small: the assignments and pipeline runs alone journal {structural} entries",
                self.p.journal
            )
            .into());
        }
        let totals = [a, self.p.pipeline_runs, self.p.journal - structural];
        let units: u64 = totals.iter().sum();
        let mut done = [0u64; 3];
        for k in 0..units {
            // Error diffusion: the kind furthest behind its share goes next.
            let pick = (0..3)
                .filter(|&t| done[t] < totals[t])
                .max_by_key(|&t| i128::from(totals[t]) * i128::from(k + 1) - i128::from(done[t]) * i128::from(units))
                .expect("a unit is left");
            match pick {
                0 => self.assignment(sink, done[0] as i64 + 1, fates[done[0] as usize])?,
                1 => self.pipeline_run(sink, done[1] as i64 + 1, pipeline_fates[done[1] as usize])?,
                _ => self.filler(sink, done[2])?,
            }
            done[pick] += 1;
        }
        debug_assert_eq!(self.entry, self.p.journal);
        Ok(())
    }

    fn ledger(&mut self) -> Res<()> {
        let mut insert = self.conn.prepare(
            "INSERT INTO llm_calls (id, ts, provider, series, model, input_tokens, output_tokens, cached_input_tokens,
                 cache_creation_tokens, cost_nanos, billing_mode, priced, crew_id, agent_id, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12, ?13, ?14)",
        )?;
        let providers: Vec<String> = (0..self.p.providers.max(1)).map(provider_name).collect();
        let models: Vec<Vec<String>> =
            providers.iter().map(|p| (0..3).map(|m| format!("{p}-model-{}", m + 1)).collect()).collect();
        // (label, position, calls, cost, input, output and cached input
        // tokens) per series, in order of first use.
        let mut series: Vec<(String, i64, i64, i64, [i64; 3])> = Vec::new();
        let span = 360 * DAY;
        let runs = self.next_run.saturating_sub(1).max(1);
        for i in 0..self.p.llm_calls {
            // The first calls name every provider once, in order, so which
            // providers keep their own series is fixed; then a skewed mix.
            let pi = if i < providers.len() as u64 { i } else { self.rng.skewed(providers.len() as u64) } as usize;
            let provider = &providers[pi];
            let own = series.iter().any(|s| s.0 == *provider);
            let own_count = series.iter().filter(|s| s.0 != provider::OTHER).count() as i64;
            let label = match provider::series_label(provider, own, own_count) {
                provider::SeriesLabel::Own | provider::SeriesLabel::NewOwn => provider.clone(),
                provider::SeriesLabel::Other => provider::OTHER.to_string(),
            };
            let input = 200 + self.rng.below(20_000) as i64;
            let output = 20 + self.rng.below(4_000) as i64;
            let cached = if self.rng.per_mille(300) { input / 2 } else { 0 };
            let flat = self.rng.per_mille(50);
            let cost = if flat { 0 } else { (input - cached) * 3_000 + cached * 300 + output * 15_000 };
            match series.iter_mut().find(|s| s.0 == label) {
                Some(s) => {
                    s.2 += 1;
                    s.3 += cost;
                    s.4 = [s.4[0] + input, s.4[1] + output, s.4[2] + cached];
                }
                None => series.push((label.clone(), own_count + 1, 1, cost, [input, output, cached])),
            }
            let crew = self.rng.below(self.p.crews) as i64 + 1;
            let run = (!self.rng.per_mille(200)).then(|| trace_id(self.p.seed, self.rng.below(runs) + 1));
            insert.execute(params![
                i as i64 + 1,
                self.now - span + (i as i128 * i128::from(span) / i128::from(self.p.llm_calls.max(1))) as i64,
                provider,
                label,
                models[pi][(i % 3) as usize],
                input,
                output,
                cached,
                0,
                cost,
                if flat { "flat_rate" } else { "metered" },
                crew,
                worker(crew),
                run
            ])?;
            self.bump("llm_calls", 1)?;
        }
        let mut put = self.conn.prepare(
            "INSERT INTO llm_series (label, position, calls, cost_nanos, input_tokens, output_tokens,
                 cached_input_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (label, position, calls, cost, [input, output, cached]) in &series {
            put.execute(params![label, position, calls, cost, input, output, cached])?;
        }
        Ok(())
    }

    fn write_counters(&mut self) -> Res<()> {
        let crews = self.tally.crew_queued.values().filter(|n| **n > 0).count() as i64;
        self.tally.add(counters::QUEUE, counters::QUEUE_CREWS, crews);
        let mut put = self.conn.prepare("INSERT INTO counters (family, label, value) VALUES (?1, ?2, ?3)")?;
        for ((family, label), value) in &self.tally.counters {
            put.execute(params![family, label, value])?;
        }
        let mut queued = self.conn.prepare("UPDATE crew_counts SET queued = ?2 WHERE crew_id = ?1")?;
        for (crew, n) in &self.tally.crew_queued {
            queued.execute(params![crew, n])?;
        }
        Ok(())
    }
}

const VERBS: &[&str] = &["Summarize", "Triage", "Answer", "Refactor", "Review"];
const TOPICS: &[&str] = &["billing", "onboarding", "search", "infra", "security", "mobile", "reporting"];

fn paused(crew: i64) -> bool {
    crew % 10 == 0
}

fn lead(crew: i64) -> i64 {
    2 * crew - 1
}

fn worker(crew: i64) -> i64 {
    2 * crew
}

fn pipeline_steps(crew: i64) -> Vec<StoredStep> {
    let slug = format!("crew-{crew:04}");
    vec![
        StoredStep {
            id: "draft".into(),
            crew_id: crew,
            crew: slug.clone(),
            agent_id: worker(crew),
            agent: "worker".into(),
            task: "Draft a note on {{inputs.topic}}".into(),
        },
        StoredStep {
            id: "review".into(),
            crew_id: crew,
            crew: slug,
            agent_id: lead(crew),
            agent: "lead".into(),
            task: "Review the {{inputs.topic}} draft: {{steps.draft.output}}".into(),
        },
    ]
}

/// Drops the secondary indexes of the bulk tables; returns their SQL.
fn drop_indexes(conn: &Connection) -> Res<Vec<String>> {
    let list = BULK_TABLES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let found: Vec<(String, String)> = conn
        .prepare(&format!(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({list})"
        ))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, _) in &found {
        conn.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    Ok(found.into_iter().map(|(_, sql)| sql).collect())
}

fn drift_lines(drift: &[recount::Drift]) -> Vec<String> {
    drift.iter().map(|d| format!("{}: stored {} recounted {}", d.counter, d.stored, d.recounted)).collect()
}

fn generate(path: &Path, p: &Params) -> Res<Manifest> {
    let started = Instant::now();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = with_suffix(path, ".generating");
    remove_db(&tmp);
    remove_db(path);
    let _ = std::fs::remove_file(manifest_path(path));
    let mut conn = Connection::open(&tmp)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA cache_size = -524288;
         PRAGMA temp_store = MEMORY;",
    )?;
    sqlite::migrate(&conn)?;
    // Rows go in parent-after-child within a unit (a run before its
    // assignment); references are checked once at the end instead.
    conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
    let indexes = drop_indexes(&conn)?;
    let now = time::now_ms() / 60_000 * 60_000;
    let mut g = Gen {
        conn: &conn,
        p: p.clone(),
        rng: Rng(p.seed),
        now,
        entry: 0,
        archived: p.journal / 2,
        next_run: 1,
        last_run: None,
        rows_in_tx: 0,
        tally: Tally::default(),
        rows: BTreeMap::new(),
    };
    conn.execute_batch("BEGIN")?;
    g.crews_agents_pipelines()?;
    let mut sink = Sink {
        journal: conn.prepare(
            "INSERT INTO journal (id, ts, entry_type, severity, crew_id, agent_id, trace_id, summary, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?,
        archive: conn.prepare(
            "INSERT INTO journal_archive
                 (id, ts, entry_type, severity, crew_id, agent_id, trace_id, summary, payload, archived_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?,
        assignment: conn.prepare(
            "INSERT INTO assignments (id, crew_id, agent_id, assigned_by, task, status, created_at, queued_at,
                 started_at, finished_at, result_summary, error_message, run_id, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?,
        run: conn.prepare(
            "INSERT INTO runs (pk, id, crew_id, agent_id, assignment_id, trigger, managed, status, started_at,
                 finished_at, error, exit_code)
             VALUES (?1, ?2, ?3, ?4, ?5, 'assignment', 1, ?6, ?7, ?8, ?9, ?10)",
        )?,
        pipeline_run: conn.prepare(
            "INSERT INTO pipeline_runs (id, pipeline_id, status, inputs, dry_run, created_at, started_at,
                 finished_at, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?,
        step: conn.prepare(
            "INSERT INTO pipeline_run_steps (pipeline_run_id, idx, step_id, crew_id, agent_id, task, status, output)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?,
    };
    g.stream(&mut sink)?;
    drop(sink);
    g.ledger()?;
    g.write_counters()?;
    conn.execute_batch("COMMIT")?;
    let rows = std::mem::take(&mut g.rows);
    drop(g);
    println!("  rows written in {:.1} s; building indexes", started.elapsed().as_secs_f64());

    let t = Instant::now();
    for sql in &indexes {
        conn.execute_batch(sql)?;
    }
    let index_build = t.elapsed();
    let violations: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
    if violations > 0 {
        return Err(format!("the generated store breaks {violations} foreign key references").into());
    }
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    // Back to the store's own settings: shared locking, WAL.
    conn.execute_batch("PRAGMA locking_mode = NORMAL;")?;
    let _: i64 = conn.query_row("SELECT COUNT(*) FROM crews", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;

    let t = Instant::now();
    let first = drift_lines(&recount_in(&mut conn)?);
    let recount_took = t.elapsed();
    let second = drift_lines(&recount_in(&mut conn)?);
    if !first.is_empty() {
        eprintln!("WARNING: the recount found drift in the generated counters (repaired): {first:?}");
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    conn.close().map_err(|(_, e)| e)?;
    std::fs::rename(&tmp, path)?;
    remove_db(&tmp);
    let manifest = Manifest {
        generator: GENERATOR_VERSION,
        schema: migrations::latest_known(),
        params: p.clone(),
        generated_at: time::rfc3339(time::now_ms()),
        took_seconds: started.elapsed().as_secs_f64(),
        index_build_seconds: index_build.as_secs_f64(),
        recount_seconds: recount_took.as_secs_f64(),
        rows,
        drift_after_generation: first,
        drift_after_repair: second,
        bytes: std::fs::metadata(path)?.len(),
    };
    std::fs::write(manifest_path(path), serde_json::to_string_pretty(&manifest)?)?;
    Ok(manifest)
}

/// The daemon's start-up recount, in a transaction of its own as there.
fn recount_in(conn: &mut rusqlite::Connection) -> Res<Vec<recount::Drift>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let drift = sqlite::with_db(&tx, recount::check_and_repair)?;
    tx.commit()?;
    Ok(drift)
}
