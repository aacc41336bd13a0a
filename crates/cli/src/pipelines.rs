//! `crewship pipelines …` and `crewship pipeline-runs …`: templated chains
//! of steps, and their runs.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Map, Value};

use super::args::PageArgs;
use super::client::{Query, body};
use super::ctx::Ctx;
use super::error::{CliError, Result};
use super::render::{self, Columns, View};

const PIPELINES: Columns =
    &[("ID", "id"), ("SLUG", "slug"), ("NAME", "name"), ("MAX RUNS", "max_concurrent_runs"), ("CREATED", "created_at")];
const RUNS: Columns = &[
    ("ID", "id"),
    ("PIPELINE", "pipeline"),
    ("STATUS", "status"),
    ("CREATED", "created_at"),
    ("FINISHED", "finished_at"),
    ("REASON", "reason"),
];
const STEPS: Columns = &[
    ("STEP", "id"),
    ("CREW", "crew"),
    ("AGENT", "agent"),
    ("STATUS", "status"),
    ("ASSIGNMENT", "assignment_id"),
    ("OUTPUT", "output"),
];

#[derive(Subcommand)]
pub enum PipelinesCmd {
    /// Create a pipeline from a JSON or YAML file (`-` reads stdin): the
    /// body of POST /api/v1/pipelines.
    Create { file: PathBuf },
    /// List pipelines.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a pipeline and its steps.
    Get { pipeline: String },
    /// Delete a pipeline (its unfinished runs are cancelled).
    Delete { pipeline: String },
    /// Start a run of a pipeline.
    Run {
        pipeline: String,
        /// An input of the run's templates (repeatable): `--input topic=tides`.
        #[arg(long = "input", value_name = "KEY=VALUE", value_parser = input)]
        inputs: Vec<(String, String)>,
        /// Render every step's task and stop: nothing runs.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum PipelineRunsCmd {
    /// List pipeline runs, newest first.
    List {
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long, value_parser = ["queued", "running", "completed", "failed", "cancelled", "dry_run", "interrupted"])]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a pipeline run with its steps.
    Get { id: String },
    /// Cancel a pipeline run (and its running step's assignment).
    Cancel { id: String },
}

fn input(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// A pipeline definition from a file: JSON, else YAML.
fn definition(file: &PathBuf) -> Result<Value> {
    let text =
        if file.as_os_str() == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(file) }
            .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_str(&text).or_else(|json| {
        serde_yaml::from_str(&text)
            .map_err(|yaml| CliError::Failed(format!("{} is neither JSON ({json}) nor YAML ({yaml})", file.display())))
    })
}

/// A run, then its steps as a table.
fn show_run(ctx: &Ctx, run: &Value) -> Result<()> {
    if ctx.json {
        return ctx.show(run, View::Record);
    }
    let mut head = run.clone();
    let steps = head.as_object_mut().and_then(|o| o.remove("steps")).unwrap_or_default();
    ctx.show(&head, View::Record)?;
    render::print("\n")?;
    ctx.show(&serde_json::json!({ "steps": steps }), View::Rows("steps", STEPS))
}

pub async fn run(ctx: &Ctx, cmd: PipelinesCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        PipelinesCmd::Create { file } => ctx.show(&c.post(&["pipelines"], &definition(&file)?).await?, View::Record),
        PipelinesCmd::List { page } => {
            ctx.show(&c.list(&["pipelines"], page.query(), page.all).await?, View::Rows("items", PIPELINES))
        }
        PipelinesCmd::Get { pipeline } => {
            ctx.show(&c.get(&["pipelines", &pipeline], &Query::default()).await?, View::Record)
        }
        PipelinesCmd::Delete { pipeline } => ctx.show(&c.delete(&["pipelines", &pipeline]).await?, View::Record),
        PipelinesCmd::Run { pipeline, inputs, dry_run } => {
            let inputs: Map<String, Value> = inputs.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let start = body([("inputs", Some(Value::Object(inputs))), ("dry_run", Some(dry_run.into()))]);
            show_run(ctx, &c.post(&["pipelines", &pipeline, "runs"], &start).await?)
        }
    }
}

pub async fn runs(ctx: &Ctx, cmd: PipelineRunsCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        PipelineRunsCmd::List { pipeline, status, page } => {
            let query = page.query().opt("pipeline", pipeline).opt("status", status);
            ctx.show(&c.list(&["pipeline-runs"], query, page.all).await?, View::Rows("items", RUNS))
        }
        PipelineRunsCmd::Get { id } => show_run(ctx, &c.get(&["pipeline-runs", &id], &Query::default()).await?),
        PipelineRunsCmd::Cancel { id } => show_run(ctx, &c.post(&["pipeline-runs", &id, "cancel"], &body([])).await?),
    }
}
