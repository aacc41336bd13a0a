//! `crewship`, the operator CLI. It speaks to crewshipd only over its HTTP
//! API, `/ws` and `/metrics`, so it works the same against a remote daemon;
//! it links no database and no container engine client. The settings it
//! shares with the daemon (the data directory, the API token and its file)
//! come from the same declarations (`crewship_wire`).
//!
//! Each resource's file holds its subcommands and what they do; this one
//! holds the global options and the dispatch.

mod agents;
mod args;
mod assignments;
mod client;
mod containers;
mod crews;
mod ctx;
mod doctor;
mod error;
mod journal;
mod llm;
mod nodes;
mod pipelines;
mod prom;
mod render;
mod runs;
mod spend;
mod top;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reqwest::Url;

use crewship_wire as wire;

use client::Client;
use ctx::Ctx;
use error::{CliError, Result};

#[derive(Parser)]
#[command(
    name = "crewship",
    version,
    about = "Operator CLI for crewshipd",
    after_help = "A crew or agent may be named by its slug or its id."
)]
struct Cli {
    /// The daemon's base URL.
    #[arg(long, global = true, env = "CREWSHIP_URL", default_value = wire::DEFAULT_URL, value_parser = http_url)]
    url: Url,
    /// API token, sent as `Authorization: Bearer`. Without one, crewship
    /// reads the file CREWSHIP_API_TOKEN_FILE names, else the daemon's own
    /// token in <data dir>/api-token.
    #[arg(long, global = true, env = wire::API_TOKEN.var, hide_env_values = true)]
    token: Option<String>,
    /// The daemon's data directory, where it keeps its API token
    /// [default: ~/.crewship]
    #[arg(long, global = true, env = wire::DATA_DIR.var, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Crews: the units that own agents and a work queue.
    #[command(subcommand)]
    Crews(crews::CrewsCmd),
    /// A crew's agents: what runs for each assignment.
    #[command(subcommand)]
    Agents(agents::AgentsCmd),
    /// Give an agent a task.
    Assign(assignments::AssignArgs),
    /// The work queue: list, show and cancel assignments.
    #[command(subcommand)]
    Assignments(assignments::AssignmentsCmd),
    /// Runs: one execution each, with its captured output.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Pipelines: templated chains of steps.
    #[command(subcommand)]
    Pipelines(pipelines::PipelinesCmd),
    /// Pipeline runs, with their steps.
    #[command(subcommand)]
    PipelineRuns(pipelines::PipelineRunsCmd),
    /// LLM calls: record one, show the rate card.
    #[command(subcommand)]
    Llm(llm::LlmCmd),
    /// Crew containers on this node.
    #[command(subcommand)]
    Containers(containers::ContainersCmd),
    /// The journal: every change, newest first.
    Journal(journal::JournalArgs),
    /// LLM spend from the paymaster's ledger.
    Spend(spend::SpendArgs),
    /// Follow events live over the WebSocket.
    Watch(watch::WatchArgs),
    /// A live view of the daemon's /metrics.
    Top(top::TopArgs),
    /// The fleet's nodes and their leases (one on SQLite).
    Nodes,
    /// Check the daemon and what it needs: pass/fail lines, exit 1 on any failure.
    Doctor(doctor::DoctorArgs),
    /// Print shell completions for crewship.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages: crewship(1) and one per subcommand into DIR/man1
    /// (the daemon writes its own: `crewshipd --man DIR`).
    Man {
        /// A man directory (`/usr/local/share/man`).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

/// Only plain http: the client is built without TLS. A bare `host:port`
/// means http.
fn http_url(s: &str) -> std::result::Result<Url, String> {
    let s = if s.contains("://") { s.to_string() } else { format!("http://{s}") };
    let url = Url::parse(&s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" => Ok(url),
        other => Err(format!("crewship speaks plain http://, not {other}://")),
    }
}

/// Parses the command line, runs the command, and reports a failure as
/// `crewship: <message>` on stderr with its exit code.
// One thread is plenty for a client that does one thing at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match &cli.command {
        Command::Completions { shell } => completions(*shell),
        Command::Man { out } => man_pages(out),
        _ => dispatch(cli).await,
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ CliError::OutputClosed) => e.exit_code(),
        Err(e) => {
            eprintln!("crewship: {e}");
            e.exit_code()
        }
    }
}

fn completions(shell: clap_complete::Shell) -> Result<()> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "crewship", &mut out);
    render::print(&String::from_utf8_lossy(&out))
}

/// crewship(1) and a page per subcommand (`crewship-crews(1)`, …).
fn man_pages(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    let io = |e: std::io::Error| CliError::Failed(format!("cannot write man pages into {}: {e}", dir.display()));
    let man1 = dir.join("man1");
    std::fs::create_dir_all(&man1).map_err(io)?;
    clap_mangen::generate_to(Cli::command(), &man1).map_err(io)
}

/// The token to send: given, or read from the token file (a file nobody
/// can read means no token; the daemon's 401 then says where it is).
fn token(cli: &Cli) -> Option<String> {
    if let Some(t) = &cli.token {
        return Some(t.trim().to_string());
    }
    let file = match std::env::var_os(wire::API_TOKEN_FILE.var) {
        Some(f) => std::path::PathBuf::from(f),
        None => cli.data_dir.clone().unwrap_or_else(default_data_dir).join(wire::TOKEN_FILE_NAME),
    };
    std::fs::read_to_string(file).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The daemon's default data directory (`~/.crewship`), for this user.
fn default_data_dir() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default();
    wire::under_home(wire::DATA_DIR_DEFAULT, &home)
}

async fn dispatch(cli: Cli) -> Result<()> {
    let token = token(&cli);
    let ctx = Ctx { client: Client::new(cli.url, token)?, json: cli.json };
    match cli.command {
        Command::Crews(cmd) => crews::run(&ctx, cmd).await,
        Command::Agents(cmd) => agents::run(&ctx, cmd).await,
        Command::Assign(args) => assignments::assign(&ctx, args).await,
        Command::Assignments(cmd) => assignments::run(&ctx, cmd).await,
        Command::Runs(cmd) => runs::run(&ctx, cmd).await,
        Command::Pipelines(cmd) => pipelines::run(&ctx, cmd).await,
        Command::PipelineRuns(cmd) => pipelines::runs(&ctx, cmd).await,
        Command::Llm(cmd) => llm::run(&ctx, cmd).await,
        Command::Containers(cmd) => containers::run(&ctx, cmd).await,
        Command::Journal(args) => journal::run(&ctx, args).await,
        Command::Spend(args) => spend::run(&ctx, args).await,
        Command::Watch(args) => watch::run(&ctx, args).await,
        Command::Top(args) => top::run(&ctx, args).await,
        Command::Nodes => nodes::run(&ctx).await,
        Command::Doctor(args) => doctor::run(&ctx, args).await,
        Command::Completions { .. } | Command::Man { .. } => unreachable!("handled before a client is made"),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        assert!(http_url("https://x").is_err());
        assert_eq!(http_url("http://h:9").unwrap().as_str(), "http://h:9/");
        assert_eq!(http_url("h:9").unwrap().as_str(), "http://h:9/");
        assert_eq!(http_url("127.0.0.1:8080").unwrap().as_str(), "http://127.0.0.1:8080/");
    }
}
