//! `crewship runs …`

use std::time::Duration;

use clap::Subcommand;

use super::args::PageArgs;
use super::client::Query;
use super::ctx::Ctx;
use super::error::Result;
use super::render::{self, Columns, View};

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("CREW", "crew"),
    ("AGENT", "agent"),
    ("STATUS", "status"),
    ("ASSIGNMENT", "assignment_id"),
    ("STARTED", "started_at"),
    ("FINISHED", "finished_at"),
    ("ERROR", "error"),
];

#[derive(Subcommand)]
pub enum RunsCmd {
    /// List runs, newest first.
    List {
        #[arg(long)]
        crew: Option<String>,
        #[arg(long, value_parser = ["running", "completed", "failed", "cancelled", "timeout"])]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a run: status, timestamps, exit code.
    Get { id: String },
    /// Print a run's captured output as it is (also with --json): what it
    /// has so far while it runs.
    Output {
        id: String,
        /// Keep printing what the run writes until it ends.
        #[arg(long, short)]
        follow: bool,
    },
}

/// How often `--follow` looks for more output.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

pub async fn run(ctx: &Ctx, cmd: RunsCmd) -> Result<()> {
    match cmd {
        RunsCmd::List { crew, status, page } => {
            let query = page.query().opt("crew", crew).opt("status", status);
            ctx.show(&ctx.client.list(&["runs"], query, page.all).await?, View::Rows("items", COLUMNS))
        }
        RunsCmd::Get { id } => ctx.show(&ctx.client.get(&["runs", &id], &Query::default()).await?, View::Record),
        RunsCmd::Output { id, follow: false } => render::print(&ctx.client.api_text(&["runs", &id, "output"]).await?),
        RunsCmd::Output { id, follow: true } => follow(ctx, &id).await,
    }
}

/// Prints the output as it grows, until the run has ended and its last
/// bytes are out. The captured output keeps a bounded tail: when the head
/// of what was printed has been dropped, printing goes on from the end of
/// what was printed before.
async fn follow(ctx: &Ctx, id: &str) -> Result<()> {
    let mut printed = String::new();
    loop {
        // The status first: output read after an end includes all of it.
        let ended = ctx.client.get(&["runs", id], &Query::default()).await?["status"] != "running";
        let text = ctx.client.api_text(&["runs", id, "output"]).await?;
        let new = match text.strip_prefix(printed.as_str()) {
            Some(rest) => rest.to_string(),
            None => {
                text.char_indices().nth(printed.chars().count()).map_or(String::new(), |(i, _)| text[i..].to_string())
            }
        };
        if !new.is_empty() {
            render::print(&new)?;
            printed = text;
        }
        if ended {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
