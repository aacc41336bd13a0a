//! `crewship assign …` and `crewship assignments …`: the work queue.

use std::io::Read;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::args::PageArgs;
use super::client::{Query, body};
use super::ctx::Ctx;
use super::error::{CliError, Result};
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("CREW", "crew"),
    ("AGENT", "agent"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempts"),
    ("CREATED", "created_at"),
    ("FINISHED", "finished_at"),
    ("TASK", "task"),
];

#[derive(Args)]
pub struct AssignArgs {
    crew: String,
    agent: String,
    /// The task, as words joined by spaces; `-` reads it from stdin.
    #[arg(required = true)]
    task: Vec<String>,
    /// The agent (of the same crew) that hands out this work.
    #[arg(long, value_name = "AGENT")]
    assigned_by: Option<String>,
}

#[derive(Subcommand)]
pub enum AssignmentsCmd {
    /// List assignments, newest first.
    List {
        #[arg(long)]
        crew: Option<String>,
        #[arg(long, value_parser = ["pending", "queued", "running", "completed", "failed", "cancelled"])]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one assignment.
    Get { id: String },
    /// Cancel an assignment: a queued one at once, a running one after its
    /// process is stopped.
    Cancel { id: String },
}

pub async fn assign(ctx: &Ctx, args: AssignArgs) -> Result<()> {
    let task = if args.task == ["-"] {
        let mut task = String::new();
        std::io::stdin()
            .read_to_string(&mut task)
            .map_err(|e| CliError::Failed(format!("cannot read the task from stdin: {e}")))?;
        task
    } else {
        args.task.join(" ")
    };
    let new = body([
        ("crew", Some(args.crew.into())),
        ("agent", Some(args.agent.into())),
        ("task", Some(task.into())),
        ("assigned_by", args.assigned_by.map(Value::from)),
    ]);
    let created = ctx.client.post(&["assignments"], &new).await?;
    ctx.show(&created, View::Record)
}

pub async fn run(ctx: &Ctx, cmd: AssignmentsCmd) -> Result<()> {
    let c = &ctx.client;
    let assignment = match cmd {
        AssignmentsCmd::List { crew, status, page } => {
            let query = page.query().opt("crew", crew).opt("status", status);
            let list = c.list(&["assignments"], query, page.all).await?;
            return ctx.show(&list, View::Rows("items", COLUMNS));
        }
        AssignmentsCmd::Get { id } => c.get(&["assignments", &id], &Query::default()).await?,
        AssignmentsCmd::Cancel { id } => c.post(&["assignments", &id, "cancel"], &body([])).await?,
    };
    ctx.show(&assignment, View::Record)
}
