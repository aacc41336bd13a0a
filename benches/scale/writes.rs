//! (b) Write throughput of the main write paths through `Store::write`,
//! with counter maintenance and without it (`maintain_counters: false`),
//! and with `synchronous = FULL` against NORMAL, on fresh stores, in the
//! same run, the two variants interleaved in short slices so machine noise hits both
//! alike. Besides wall clock: process CPU time and bytes written (WAL and
//! checkpoints) per operation, and the statements' own cost measured
//! inside the write closures.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::task::JoinSet;

use crewship::internals::domain::Result as DomainResult;
use crewship::internals::domain::pricing::Tokens;
use crewship::internals::store::agents::{self, AgentRow, NewAgent};
use crewship::internals::store::assignments::AssignmentRow;
use crewship::internals::store::assignments::{self, Changes};
use crewship::internals::store::counters;
use crewship::internals::store::crews::{self, CrewRow, NewCrew};
use crewship::internals::store::journal::{self, Named, NewEntry};
use crewship::internals::store::ledger::{self, NewCall};
use crewship::internals::store::runs::RunRow;
use crewship::internals::store::runs::{self, NewRun};
use crewship::internals::store::{Location, Options, Store, Tx};
use crewship_wire::kinds::{BillingMode, Role, Runtime, Severity};
use crewship_wire::status::{AssignmentStatus, RunStatus};

use crate::Res;
use crate::stats::median;

/// A store that skips counter maintenance: what the write paths cost
/// without it.
fn uncounted() -> Options {
    Options { maintain_counters: false, ..Options::default() }
}

/// The default store, with `synchronous = NORMAL` instead of FULL.
fn normal_sync() -> Options {
    Options { sync: crewship::internals::store::Synchronous::Normal, ..Options::default() }
}

/// Slices per variant; the variants alternate, rotating which goes first.
const SLICES: usize = 16;
/// Whole passes over every path; figures are medians over them, so one
/// burst of load from another process cannot decide a verdict.
const ROUNDS: usize = 3;
const CREWS: usize = 16;
const IN_FLIGHT: usize = 32;
/// Operations per slice of the statements-only measurement.
const STATEMENT_OPS: usize = 200;
const PER_WRITE: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Assignment,
    Run,
    Journal,
    Llm,
    /// The mechanism check: a journal append plus one single-row UPDATE of
    /// another table, no counter code involved.
    JournalPlusRow,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Assignment, Kind::Run, Kind::Journal, Kind::Llm];

    fn name(self) -> &'static str {
        match self {
            Kind::Assignment => "assignment create → queued (2 writes)",
            Kind::Run => "run start → finish (2 writes)",
            Kind::Journal => "journal append (1 write)",
            Kind::Llm => "LLM call record, 40 providers (1 write)",
            Kind::JournalPlusRow => "journal append + one row UPDATE in another table (1 write)",
        }
    }

    /// Operations per slice, sequential and with `IN_FLIGHT` writers.
    fn ops(self) -> (usize, usize) {
        match self {
            Kind::Assignment | Kind::Run => (200, 1_024),
            Kind::Journal | Kind::Llm | Kind::JournalPlusRow => (400, 2_048),
        }
    }
}

pub struct Fixture {
    crews: Vec<CrewRow>,
    agents: Vec<AgentRow>,
}

impl Fixture {
    fn pick(&self, i: usize) -> (CrewRow, AgentRow) {
        let k = i % self.crews.len();
        (self.crews[k].clone(), self.agents[k].clone())
    }

    fn named(&self, i: usize) -> (Named, Named) {
        let (c, a) = self.pick(i);
        (Named { id: c.id, slug: c.slug }, Named { id: a.id, slug: a.slug })
    }
}

pub async fn fixture(store: &Store) -> Res<Fixture> {
    let mut crews_out = Vec::new();
    let mut agents_out = Vec::new();
    for k in 0..CREWS {
        let (crew, agent) = store
            .write(move |tx| {
                let crew = crews::insert(
                    tx,
                    NewCrew {
                        slug: format!("bench-{k}"),
                        name: format!("Bench crew {k}"),
                        max_concurrent_agents: 4,
                        runtime: Runtime::Local,
                        image: None,
                    },
                )?;
                let agent = agents::insert(
                    tx,
                    &crew,
                    NewAgent {
                        slug: "worker".into(),
                        name: "Worker".into(),
                        role: Role::Agent,
                        command: vec!["sh".into(), "-c".into(), "true".into()],
                        env: BTreeMap::new(),
                        timeout_seconds: 600,
                    },
                )?;
                Ok((crew, agent))
            })
            .await?;
        crews_out.push(crew);
        agents_out.push(agent);
    }
    Ok(Fixture { crews: crews_out, agents: agents_out })
}

// The steps of each write path, as the API handlers and workers run them
// inside `Store::write`.

fn create_assignment(tx: &mut Tx<'_>, fx: &Fixture, i: usize) -> DomainResult<AssignmentRow> {
    let (crew, agent) = fx.pick(i);
    assignments::create(tx, &crew, &agent, None, "Summarize ticket #4711 for billing", None, None)
}

fn queue_assignment(tx: &mut Tx<'_>, row: AssignmentRow) -> DomainResult<()> {
    assignments::move_to(tx, row, AssignmentStatus::Queued, Changes::default()).map(drop)
}

fn start_run(tx: &mut Tx<'_>, fx: &Fixture, i: usize) -> DomainResult<RunRow> {
    let (crew, agent) = fx.named(i);
    let new = NewRun {
        crew: Some(crew),
        agent: Some(agent),
        assignment_id: None,
        trigger: Some("api".into()),
        managed: false,
        node: None,
    };
    runs::start(tx, new)
}

fn finish_run(tx: &mut Tx<'_>, run: RunRow) -> DomainResult<()> {
    runs::finish(tx, run, RunStatus::Completed, None, Some(0)).map(drop)
}

fn append_journal(tx: &mut Tx<'_>, fx: &Fixture, i: usize) -> DomainResult<()> {
    let (crew, agent) = fx.named(i);
    let entry = NewEntry {
        entry_type: "agent.note".into(),
        severity: Severity::Info,
        crew: Some(crew),
        agent: Some(agent),
        trace_id: None,
        summary: format!("looked at {} files; nothing unusual", i % 12),
        payload: serde_json::json!({ "step": i % 12, "of": 12 }),
    };
    journal::append(tx, entry).map(drop)
}

fn record_call(tx: &mut Tx<'_>, fx: &Fixture, i: usize) -> DomainResult<()> {
    let (crew, agent) = fx.named(i);
    let provider = crate::datagen::provider_name((i % 40) as u64);
    let call = NewCall {
        model: format!("{provider}-model-{}", i % 3 + 1),
        provider,
        tokens: Tokens { input: 1_200, output: 300, cached_input: 0, cache_creation: 0 },
        cost_nanos: 8_100_000,
        priced: true,
        billing_mode: BillingMode::Metered,
        crew_id: Some(crew.id),
        agent_id: Some(agent.id),
        run_id: None,
    };
    ledger::record(tx, call).map(drop)
}

/// One operation of a write path, through `Store::write` as the daemon
/// does it (two writes for the two-step paths).
async fn op(store: &Store, kind: Kind, fx: &Arc<Fixture>, i: usize) -> Res<()> {
    let f = fx.clone();
    match kind {
        Kind::Assignment => {
            let row = store.write(move |tx| create_assignment(tx, &f, i)).await?;
            store.write(move |tx| queue_assignment(tx, row)).await?;
        }
        Kind::Run => {
            let run = store.write(move |tx| start_run(tx, &f, i)).await?;
            store.write(move |tx| finish_run(tx, run)).await?;
        }
        Kind::Journal => store.write(move |tx| append_journal(tx, &f, i)).await?,
        Kind::JournalPlusRow => {
            store
                .write(move |tx| {
                    append_journal(tx, &f, i)?;
                    tx.execute("UPDATE bench_probe SET v = v + 1 WHERE k = 1", &[])?;
                    Ok(())
                })
                .await?
        }
        Kind::Llm => store.write(move |tx| record_call(tx, &f, i)).await?,
    }
    Ok(())
}

/// CPU time (user + system) of this whole process, in seconds.
fn process_cpu() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct on the stack.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills a plain struct on the stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Bytes this process has written so far (`wchar` in /proc/self/io): the
/// WAL frames of every commit, and checkpoints.
fn written() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("wchar:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0.0)
}

/// What some operations took: wall clock, CPU, bytes written.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    ops: usize,
    wall: f64,
    cpu: f64,
    bytes: f64,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, o: Spent) {
        self.ops += o.ops;
        self.wall += o.wall;
        self.cpu += o.cpu;
        self.bytes += o.bytes;
    }
}

impl Spent {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.wall
    }

    fn cpu_us(&self) -> f64 {
        self.cpu * 1e6 / self.ops as f64
    }

    fn kib(&self) -> f64 {
        self.bytes / 1024.0 / self.ops as f64
    }
}

/// `n` operations through `Store::write`, one at a time or `IN_FLIGHT` at
/// once. CPU time is the whole process's (the writer thread does the SQL).
async fn slice(store: &Store, kind: Kind, fx: &Arc<Fixture>, n: usize, concurrent: bool) -> Res<Spent> {
    let (t, c, w) = (Instant::now(), process_cpu(), written());
    if concurrent {
        let mut set = JoinSet::new();
        for worker in 0..IN_FLIGHT {
            let (store, fx) = (store.clone(), fx.clone());
            set.spawn(async move {
                for j in 0..n / IN_FLIGHT {
                    op(&store, kind, &fx, worker + j * IN_FLIGHT).await?;
                }
                Ok::<_, crate::Error>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    } else {
        for i in 0..n {
            op(store, kind, fx, i).await?;
        }
    }
    let ops = if concurrent { n / IN_FLIGHT * IN_FLIGHT } else { n };
    Ok(Spent { ops, wall: t.elapsed().as_secs_f64(), cpu: process_cpu() - c, bytes: written() - w })
}

/// `n` operations, `PER_WRITE` per `Store::write`, timed inside the
/// closures on the writer thread's CPU clock: the statements alone, without
/// commits, hand-offs, or other processes' time slices. (Small groups:
/// within one savepoint SQLite's in-memory statement journal grows with
/// every page touched, and a big group would measure that instead.)
async fn statements_only(store: &Store, kind: Kind, fx: &Arc<Fixture>, n: usize) -> Res<Spent> {
    let mut spent = Spent::default();
    for g in 0..n / PER_WRITE {
        let fx = fx.clone();
        spent += store
            .write(move |tx| {
                let (t, c) = (Instant::now(), thread_cpu());
                for i in g * PER_WRITE..(g + 1) * PER_WRITE {
                    match kind {
                        Kind::Assignment => {
                            let row = create_assignment(tx, &fx, i)?;
                            queue_assignment(tx, row)?;
                        }
                        Kind::Run => {
                            let run = start_run(tx, &fx, i)?;
                            finish_run(tx, run)?;
                        }
                        Kind::Journal | Kind::JournalPlusRow => append_journal(tx, &fx, i)?,
                        Kind::Llm => record_call(tx, &fx, i)?,
                    }
                }
                // As the writer does before each commit.
                counters::flush(tx)?;
                Ok(Spent { ops: PER_WRITE, wall: t.elapsed().as_secs_f64(), cpu: thread_cpu() - c, bytes: 0.0 })
            })
            .await?;
    }
    Ok(spent)
}

/// Runs both variants (0: with counters, 1: without) in `SLICES` short
/// slices each, alternating and rotating which goes first, so bursts of
/// load from other processes hit both alike. Returns per variant the total
/// and the slices.
async fn interleaved<F, Fut>(mut run: F) -> Res<[(Spent, Vec<Spent>); 2]>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Res<Spent>>,
{
    let mut out: [(Spent, Vec<Spent>); 2] = Default::default();
    for s in 0..SLICES {
        for k in 0..2 {
            let v = (s + k) % 2;
            let spent = run(v).await?;
            out[v].0 += spent;
            out[v].1.push(spent);
        }
    }
    Ok(out)
}

/// Extra cost of `with` over `without`, in % of `without`.
fn pct(with: f64, without: f64) -> f64 {
    (with / without - 1.0) * 100.0
}

#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub path: String,
    pub mode: String,
    pub ops_per_variant: usize,
    /// Wall clock: operations per second over all slices.
    pub with_ops: f64,
    pub without_ops: f64,
    /// Extra wall time per operation with counters, in %.
    pub overhead_pct: f64,
    /// Median of the per-slice overheads (each slice against its neighbour).
    pub paired_median_pct: f64,
    /// Process CPU time per operation (all threads), µs.
    pub with_cpu_us: f64,
    pub without_cpu_us: f64,
    pub cpu_overhead_pct: f64,
    /// Bytes written per operation (WAL frames, checkpoints), KiB.
    pub with_kib: f64,
    pub without_kib: f64,
    /// The wall-clock overhead of each round, in %.
    pub rounds: Vec<f64>,
}

impl PathResult {
    /// One path over several rounds: each figure the median of the
    /// rounds', operations summed, each round's overhead kept.
    fn median_of(rounds: &[PathResult]) -> PathResult {
        let m = |f: fn(&PathResult) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        PathResult {
            path: rounds[0].path.clone(),
            mode: rounds[0].mode.clone(),
            ops_per_variant: rounds.iter().map(|r| r.ops_per_variant).sum(),
            with_ops: m(|r| r.with_ops),
            without_ops: m(|r| r.without_ops),
            overhead_pct: m(|r| r.overhead_pct),
            paired_median_pct: m(|r| r.paired_median_pct),
            with_cpu_us: m(|r| r.with_cpu_us),
            without_cpu_us: m(|r| r.without_cpu_us),
            cpu_overhead_pct: m(|r| r.cpu_overhead_pct),
            with_kib: m(|r| r.with_kib),
            without_kib: m(|r| r.without_kib),
            rounds: rounds.iter().map(|r| r.overhead_pct).collect(),
        }
    }
}

/// A path's statements alone (writer-thread CPU inside the closures).
#[derive(Debug, Clone, Serialize)]
pub struct Statements {
    pub path: String,
    pub with_us: f64,
    pub without_us: f64,
    /// What the counter statements cost per operation, µs.
    pub counters_us: f64,
    /// That cost over the operation without it, in %.
    pub overhead_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub slices: usize,
    pub rounds: usize,
    pub in_flight: usize,
    pub per_write: usize,
    pub results: Vec<PathResult>,
    pub statements: Vec<Statements>,
    /// The mechanism check, both variants on one store without counters:
    /// "with" = journal append + one row UPDATE elsewhere, "without" =
    /// journal append alone.
    pub extra_row: Vec<PathResult>,
    /// Counter rows the store opened without counter maintenance still
    /// wrote, per family (must be none, or its figures include counters).
    pub uncounted_store_counters: BTreeMap<String, i64>,
    /// Durability: "with" = `synchronous = FULL` (the default), "without"
    /// = NORMAL, both with counters.
    pub sync: Vec<PathResult>,
}

/// Measures `kinds[0]` on `stores[0]` against `kinds[1]` on `stores[1]`,
/// interleaved.
pub async fn compare(
    name: Kind,
    stores: &[(Store, Arc<Fixture>); 2],
    kinds: [Kind; 2],
    concurrent: bool,
) -> Res<PathResult> {
    let (seq, conc) = name.ops();
    let n = if concurrent { conc } else { seq };
    // Warm-up: statement caches, first pages.
    for (v, (store, fx)) in stores.iter().enumerate() {
        slice(store, kinds[v], fx, n, concurrent).await?;
    }
    let [a, b] = interleaved(|v| {
        let (store, fx) = &stores[v];
        slice(store, kinds[v], fx, n, concurrent)
    })
    .await?;
    let paired: Vec<f64> =
        a.1.iter().zip(&b.1).map(|(x, y)| pct(1.0 / x.ops_per_sec(), 1.0 / y.ops_per_sec())).collect();
    let mode = if concurrent { format!("{IN_FLIGHT} in flight") } else { "sequential".to_string() };
    let x = PathResult {
        path: name.name().to_string(),
        mode,
        ops_per_variant: a.0.ops,
        with_ops: a.0.ops_per_sec(),
        without_ops: b.0.ops_per_sec(),
        overhead_pct: pct(1.0 / a.0.ops_per_sec(), 1.0 / b.0.ops_per_sec()),
        paired_median_pct: median(&paired),
        with_cpu_us: a.0.cpu_us(),
        without_cpu_us: b.0.cpu_us(),
        cpu_overhead_pct: pct(a.0.cpu_us(), b.0.cpu_us()),
        with_kib: a.0.kib(),
        without_kib: b.0.kib(),
        rounds: Vec::new(),
    };
    println!(
        "  {} [{}]: {:.0} vs {:.0} ops/s: overhead {:+.1} % wall (paired median {:+.1} %), {:+.1} % CPU ({:.0} vs \
         {:.0} µs/op), {:.1} vs {:.1} KiB written/op",
        x.path,
        x.mode,
        x.with_ops,
        x.without_ops,
        x.overhead_pct,
        x.paired_median_pct,
        x.cpu_overhead_pct,
        x.with_cpu_us,
        x.without_cpu_us,
        x.with_kib,
        x.without_kib
    );
    Ok(x)
}

pub async fn run(data: &Path) -> Res<Report> {
    let paths = ["writes-with-counters.db", "writes-without-counters.db"].map(|name| data.join(name));
    for p in &paths {
        crate::datagen::remove_db(p);
    }
    let with =
        Store::open(&Location::Sqlite(paths[0].clone()), tokio::sync::broadcast::channel(16).0, Options::default())?;
    let without = Store::open(&Location::Sqlite(paths[1].clone()), tokio::sync::broadcast::channel(16).0, uncounted())?;
    let stores =
        [(with.clone(), Arc::new(fixture(&with).await?)), (without.clone(), Arc::new(fixture(&without).await?))];

    let mut rounds: Vec<Vec<PathResult>> = Vec::new();
    for round in 1..=ROUNDS {
        println!("  round {round} of {ROUNDS}");
        let mut results = Vec::new();
        for kind in Kind::ALL {
            for concurrent in [false, true] {
                results.push(compare(kind, &stores, [kind, kind], concurrent).await?);
            }
        }
        rounds.push(results);
    }
    let results: Vec<PathResult> = (0..rounds[0].len())
        .map(|i| PathResult::median_of(&rounds.iter().map(|r| r[i].clone()).collect::<Vec<_>>()))
        .collect();
    // The mechanism check runs on one store (without counter maintenance)
    // with a one-row scratch table.
    let probe_path = data.join("writes-extra-row.db");
    crate::datagen::remove_db(&probe_path);
    let probe = Store::open(&Location::Sqlite(probe_path.clone()), tokio::sync::broadcast::channel(16).0, uncounted())?;
    probe
        .exclusive(|db| {
            db.batch(
                "CREATE TABLE bench_probe (k INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO bench_probe VALUES (1, 0);",
            )
        })
        .await?;
    let probe_fx = Arc::new(fixture(&probe).await?);
    let probe_stores = [(probe.clone(), probe_fx.clone()), (probe.clone(), probe_fx)];
    let mut extra_row = Vec::new();
    for concurrent in [false, true] {
        extra_row.push(
            compare(Kind::JournalPlusRow, &probe_stores, [Kind::JournalPlusRow, Kind::Journal], concurrent).await?,
        );
    }
    drop((probe_stores, probe));
    crate::datagen::remove_db(&probe_path);

    let mut statements = Vec::new();
    for kind in Kind::ALL {
        for (store, fx) in &stores {
            statements_only(store, kind, fx, STATEMENT_OPS / 4).await?;
        }
        let [a, b] = interleaved(|v| {
            let (store, fx) = &stores[v];
            statements_only(store, kind, fx, STATEMENT_OPS)
        })
        .await?;
        let (with_us, without_us) = (a.0.cpu_us(), b.0.cpu_us());
        let counters_us = with_us - without_us;
        let x = Statements {
            path: kind.name().to_string(),
            with_us,
            without_us,
            counters_us,
            overhead_pct: pct(with_us, without_us),
        };
        println!(
            "  {} statements only: {:.1} µs/op with counters, {:.1} without ({:+.1} %)",
            x.path, x.with_us, x.without_us, x.overhead_pct
        );
        statements.push(x);
    }

    let uncounted_store_counters = without
        .read(|db| {
            let mut out: BTreeMap<String, i64> = db
                .query("SELECT family, COUNT(*) FROM counters GROUP BY family", &[], |r| Ok((r.get(0)?, r.get(1)?)))?
                .into_iter()
                .collect();
            let series: i64 = db.query_one("SELECT COUNT(*) FROM llm_series", &[], |r| r.get(0))?;
            if series > 0 {
                out.insert("llm_series".into(), series);
            }
            let crews: i64 = db.query_one("SELECT COUNT(*) FROM crew_counts WHERE queued <> 0", &[], |r| r.get(0))?;
            if crews > 0 {
                out.insert("crew_counts (non-zero)".into(), crews);
            }
            Ok(out)
        })
        .await?;
    if !uncounted_store_counters.is_empty() {
        eprintln!(
            "WARNING: the store opened without counter maintenance wrote counters anyway: {uncounted_store_counters:?}"
        );
    }
    drop((stores, with, without));
    for p in &paths {
        crate::datagen::remove_db(p);
    }
    let sync = durability(data).await?;
    Ok(Report {
        slices: SLICES,
        rounds: ROUNDS,
        in_flight: IN_FLIGHT,
        per_write: PER_WRITE,
        results,
        statements,
        extra_row,
        uncounted_store_counters,
        sync,
    })
}

/// Every write path on a FULL store against a NORMAL one, interleaved.
async fn durability(data: &Path) -> Res<Vec<PathResult>> {
    let paths = ["writes-sync-full.db", "writes-sync-normal.db"].map(|name| data.join(name));
    for p in &paths {
        crate::datagen::remove_db(p);
    }
    let full =
        Store::open(&Location::Sqlite(paths[0].clone()), tokio::sync::broadcast::channel(16).0, Options::default())?;
    let normal =
        Store::open(&Location::Sqlite(paths[1].clone()), tokio::sync::broadcast::channel(16).0, normal_sync())?;
    let stores = [(full.clone(), Arc::new(fixture(&full).await?)), (normal.clone(), Arc::new(fixture(&normal).await?))];
    println!("  durability: synchronous FULL against NORMAL");
    let mut results = Vec::new();
    for kind in [Kind::Assignment, Kind::Run, Kind::Journal, Kind::Llm] {
        for concurrent in [false, true] {
            results.push(compare(kind, &stores, [kind, kind], concurrent).await?);
        }
    }
    drop((stores, full, normal));
    for p in &paths {
        crate::datagen::remove_db(p);
    }
    Ok(results)
}
