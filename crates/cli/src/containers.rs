//! `crewship containers …`: the crew containers this node tracks, and
//! starting or stopping a docker crew's container.

use clap::Subcommand;

use super::client::{Query, body};
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("CONTAINER", "container_id"),
    ("CREW", "crew"),
    ("CPU %", "cpu_percent"),
    ("MEMORY", "memory_used_bytes"),
    ("PIDS", "pids"),
    ("SAMPLED", "sampled_at"),
];

#[derive(Subcommand)]
pub enum ContainersCmd {
    /// The containers this node tracks, with their latest stats.
    List,
    /// Start a docker crew's container on this node (created if missing).
    Start { crew: String },
    /// Stop a docker crew's container on this node.
    Stop { crew: String },
}

pub async fn run(ctx: &Ctx, cmd: ContainersCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        ContainersCmd::List => {
            ctx.show(&c.get(&["containers"], &Query::default()).await?, View::Rows("items", COLUMNS))
        }
        ContainersCmd::Start { crew } => {
            ctx.show(&c.post(&["crews", &crew, "container", "start"], &body([])).await?, View::Record)
        }
        ContainersCmd::Stop { crew } => {
            ctx.show(&c.post(&["crews", &crew, "container", "stop"], &body([])).await?, View::Record)
        }
    }
}
