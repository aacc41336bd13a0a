//! `crewship nodes`

use super::client::Query;
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("HOSTNAME", "hostname"),
    ("STATE", "state"),
    ("VERSION", "version"),
    ("MIGRATION", "migration_version"),
    ("STARTED", "started_at"),
    ("HEARTBEAT", "heartbeat_at"),
];

pub async fn run(ctx: &Ctx) -> Result<()> {
    let nodes = ctx.client.get(&["nodes"], &Query::default()).await?;
    ctx.show(&nodes, View::Rows("items", COLUMNS))
}
