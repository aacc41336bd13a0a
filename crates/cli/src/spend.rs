//! `crewship spend`

use clap::Args;

use super::args::Window;
use super::client::Query;
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("KEY", "key"),
    ("CALLS", "calls"),
    ("COST_USD", "cost_usd"),
    ("INPUT_TOKENS", "input_tokens"),
    ("OUTPUT_TOKENS", "output_tokens"),
];

#[derive(Args)]
pub struct SpendArgs {
    /// What each row totals (default provider).
    #[arg(long, value_parser = ["provider", "crew", "agent", "model"])]
    group_by: Option<String>,
    #[command(flatten)]
    window: Window,
}

pub async fn run(ctx: &Ctx, args: SpendArgs) -> Result<()> {
    let query = args.window.apply(Query::default().opt("group_by", args.group_by));
    let spend = ctx.client.get(&["paymaster", "spend"], &query).await?;
    ctx.show(&spend, View::Rows("rows", COLUMNS))
}
