//! Benchmarks at scale: the bench target behind `scripts/bench.sh`.
//!
//! ```text
//! cargo bench --bench scale -- generate --out /path/scale.db   # the data set only
//! cargo bench --bench scale -- run --data /path/dir --report docs/performance.md
//! ```
//!
//! `generate` fills (or reuses) the big store; `run` generates or reuses it
//! in `--data`, then measures (a) the /metrics snapshot against the naive
//! counts, (b) write throughput with and without counter maintenance,
//! (c)-(e) the real daemon under wrk, a retry storm and 1 000 WebSockets,
//! (f) PostgreSQL beside SQLite, (g) end-to-end dispatch and (h) the cost
//! of tracing.
//! See the "Benchmarks" section of README.md.

mod daemon;
mod datagen;
mod dispatch;
mod postgres;
mod report;
mod serve;
mod snapshot;
mod stats;
mod traces;
mod writes;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, Parser, Subcommand};

// The same allocator as the daemon, so the baseline server is its twin.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, Error>;

#[derive(Parser)]
#[command(name = "scale", about = "crewshipd benchmarks at scale (run them with scripts/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generates the big store at --out, or reuses it if it was generated
    /// with the same parameters.
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        params: datagen::Params,
    },
    /// Generates or reuses the big store in --data, runs the benchmarks and
    /// writes the report.
    Run {
        /// Directory for the stores and daemon homes (outside the repo).
        #[arg(long)]
        data: PathBuf,
        /// Where to (re)write the Markdown report.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Phases to run: snapshot (a), writes (b), daemon (c, d, e),
        /// postgres (f), dispatch (g), tracing (h).
        #[arg(long, value_delimiter = ',', default_value = "snapshot,writes,daemon,postgres,dispatch,tracing")]
        only: Vec<String>,
        /// The admin database of a PostgreSQL cluster the bench may fill
        /// (phase f); scripts/bench.sh starts a throwaway one.
        #[arg(long)]
        postgres: Option<String>,
        /// The crewshipd binary to measure (default: the one cargo built
        /// with this bench, in the same release profile).
        #[arg(long)]
        daemon: Option<PathBuf>,
        #[command(flatten)]
        params: datagen::Params,
    },
    /// The baseline HTTP server of (c), started by `run`.
    #[command(hide = true)]
    BaselineServer {
        #[arg(long)]
        canned: PathBuf,
    },
}

/// Lifts the soft open-file limit to the hard one: 1 000 scrapers and 1 000
/// WebSockets need file descriptors on both ends (children inherit it).
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn run(
    data: &Path,
    report: Option<&Path>,
    only: &[String],
    bin: &Path,
    pg: Option<&str>,
    params: &datagen::Params,
) -> Res<()> {
    let started = Instant::now();
    std::fs::create_dir_all(data)?;
    let data = data.canonicalize()?;
    let mut machine = report::Machine::probe();
    let store = data.join("scale.db");
    let p = params.clone();
    let store2 = store.clone();
    let outcome = tokio::task::spawn_blocking(move || datagen::ensure(&store2, &p)).await??;
    let has = |phase: &str| only.iter().any(|o| o == phase);

    let snapshot = if has("snapshot") {
        println!("(a) snapshot computation, maintained vs naive");
        Some(snapshot::run(&store, &data).await?)
    } else {
        None
    };
    let writes = if has("writes") {
        println!("(b) write throughput with and without counters");
        Some(writes::run(&data).await?)
    } else {
        None
    };
    let daemon = if has("daemon") {
        println!("(c)-(e) the real daemon: serving, retry storm, memory ({})", bin.display());
        Some(serve::run(bin, &store, &data).await?)
    } else {
        None
    };
    let postgres = if has("postgres") {
        println!("(f) PostgreSQL beside SQLite");
        let url = pg.ok_or("phase postgres needs --postgres URL (scripts/bench.sh starts a cluster)")?;
        Some(postgres::run(url, &store, &data).await?)
    } else {
        None
    };
    let dispatch = if has("dispatch") {
        println!("(g) end-to-end dispatch ({})", bin.display());
        Some(dispatch::run(bin, &data, pg).await?)
    } else {
        None
    };
    let tracing = if has("tracing") {
        println!("(h) the cost of tracing ({})", bin.display());
        Some(traces::run(bin, &data).await?)
    } else {
        None
    };
    machine.load_after = report::loadavg();
    let results = report::Results {
        machine,
        store: store.display().to_string(),
        manifest: outcome.manifest,
        reused: outcome.reused,
        check_seconds: outcome.took.as_secs_f64(),
        total_seconds: started.elapsed().as_secs_f64(),
        snapshot,
        writes,
        daemon,
        postgres,
        dispatch,
        tracing,
    };
    let json = data.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)?;
    println!("results: {}", json.display());
    if let Some(path) = report {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // The changes measured A/B by hand stay below what this run writes.
        let kept = std::fs::read_to_string(path).ok().and_then(|old| report::kept_section(&old).map(str::to_string));
        std::fs::write(path, report::markdown(&results) + kept.as_deref().unwrap_or_default())?;
        println!("report: {}", path.display());
    }
    println!("benchmarks took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` appends --bench to a harness-less bench's arguments.
    let cli = Cli::parse_from(std::env::args().filter(|a| a != "--bench"));
    let Some(cmd) = cli.cmd else {
        // A bare `cargo bench` must not start a multi-GB generation.
        let _ = Cli::command().print_help();
        println!("\nNothing to do without a subcommand; the full run is scripts/bench.sh.");
        return ExitCode::SUCCESS;
    };
    raise_fd_limit();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scale: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Res<()> = rt.block_on(async {
        match cmd {
            Cmd::Generate { out, params } => {
                tokio::task::spawn_blocking(move || datagen::ensure(&out, &params)).await??;
                Ok(())
            }
            Cmd::Run { data, report, only, daemon, postgres, params } => {
                let bin = daemon.unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_crewshipd")));
                run(&data, report.as_deref(), &only, &bin, postgres.as_deref(), &params).await
            }
            Cmd::BaselineServer { canned } => serve::baseline_server(&canned).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}
