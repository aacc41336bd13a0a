//! `crewship journal`

use clap::Args;

use super::args::{PageArgs, Window};
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("TS", "ts"),
    ("TYPE", "entry_type"),
    ("SEVERITY", "severity"),
    ("CREW", "crew"),
    ("AGENT", "agent"),
    ("TRACE", "trace_id"),
    ("SUMMARY", "summary"),
];

#[derive(Args)]
pub struct JournalArgs {
    /// Only entries of this type (run.failed); a trailing * matches a prefix (run.*).
    #[arg(long = "type", value_name = "T")]
    entry_type: Option<String>,
    /// Only entries of this trace (a run id).
    #[arg(long, value_name = "X")]
    trace_id: Option<String>,
    #[arg(long)]
    crew: Option<String>,
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    page: PageArgs,
}

pub async fn run(ctx: &Ctx, args: JournalArgs) -> Result<()> {
    let query = args.page.query().opt("type", args.entry_type).opt("trace_id", args.trace_id).opt("crew", args.crew);
    let list = ctx.client.list(&["journal"], args.window.apply(query), args.page.all).await?;
    ctx.show(&list, View::Rows("items", COLUMNS))
}
