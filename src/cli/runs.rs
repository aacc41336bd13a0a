//! `crewship runs …`

use clap::Subcommand;

use super::Ctx;
use super::client::Query;
use super::error::Result;
use super::render::{self, View};

#[derive(Subcommand)]
pub enum RunsCmd {
    /// Show a run: status, timestamps, exit code.
    Get { id: String },
    /// Print a run's captured output as it is (also with --json), live while
    /// it runs.
    Output { id: String },
}

pub async fn run(ctx: &Ctx, cmd: RunsCmd) -> Result<()> {
    match cmd {
        RunsCmd::Get { id } => ctx.show(&ctx.client.get(&["runs", &id], &Query::default()).await?, View::Record),
        RunsCmd::Output { id } => render::print(&ctx.client.api_text(&["runs", &id, "output"]).await?),
    }
}
