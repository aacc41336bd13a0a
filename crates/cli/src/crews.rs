//! `crewship crews …`

use clap::{Args, Subcommand};
use serde_json::Value;

use super::args::PageArgs;
use super::client::{Query, body};
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("SLUG", "slug"),
    ("NAME", "name"),
    ("MAX_AGENTS", "max_concurrent_agents"),
    ("RUNTIME", "runtime"),
    ("IMAGE", "image"),
    ("CREATED", "created_at"),
    ("DELETED", "deleted_at"),
];

#[derive(Subcommand)]
pub enum CrewsCmd {
    /// List crews.
    List {
        #[command(flatten)]
        page: PageArgs,
        /// Include soft-deleted crews.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Show one crew (by slug or id).
    Get { crew: String },
    /// Create a crew.
    Create {
        /// 2-50 characters of a-z, 0-9, _ and -.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// How many of its assignments may run at once (default 2).
        #[arg(long, value_name = "N")]
        max_concurrent_agents: Option<i64>,
        /// Where its agents run (default local).
        #[arg(long, value_parser = ["local", "docker"])]
        runtime: Option<String>,
        /// Container image, needed with --runtime docker.
        #[arg(long)]
        image: Option<String>,
    },
    /// Change a crew's name, concurrency budget or image.
    Update {
        crew: String,
        #[command(flatten)]
        changes: CrewChanges,
    },
    /// Soft-delete a crew: it stops taking work, its queued assignments are
    /// cancelled, its history stays.
    Delete { crew: String },
}

#[derive(Args)]
#[group(required = true, multiple = true)]
pub struct CrewChanges {
    /// New display name.
    #[arg(long)]
    name: Option<String>,
    /// How many of its assignments may run at once.
    #[arg(long, value_name = "N")]
    max_concurrent_agents: Option<i64>,
    /// New container image.
    #[arg(long, conflicts_with = "no_image")]
    image: Option<String>,
    /// Clear the crew's image.
    #[arg(long)]
    no_image: bool,
}

pub async fn run(ctx: &Ctx, cmd: CrewsCmd) -> Result<()> {
    let c = &ctx.client;
    let crew = match cmd {
        CrewsCmd::List { page, include_deleted } => {
            let query = page.query().opt("include_deleted", include_deleted.then_some(true));
            let list = c.list(&["crews"], query, page.all).await?;
            return ctx.show(&list, View::Rows("items", COLUMNS));
        }
        CrewsCmd::Get { crew } => c.get(&["crews", &crew], &Query::default()).await?,
        CrewsCmd::Create { slug, name, max_concurrent_agents, runtime, image } => {
            let new = body([
                ("slug", Some(slug.into())),
                ("name", Some(name.into())),
                ("max_concurrent_agents", max_concurrent_agents.map(Value::from)),
                ("runtime", runtime.map(Value::from)),
                ("image", image.map(Value::from)),
            ]);
            c.post(&["crews"], &new).await?
        }
        CrewsCmd::Update { crew, changes } => {
            let image = if changes.no_image { Some(Value::Null) } else { changes.image.map(Value::from) };
            let patch = body([
                ("name", changes.name.map(Value::from)),
                ("max_concurrent_agents", changes.max_concurrent_agents.map(Value::from)),
                ("image", image),
            ]);
            c.patch(&["crews", &crew], &patch).await?
        }
        CrewsCmd::Delete { crew } => c.delete(&["crews", &crew]).await?,
    };
    ctx.show(&crew, View::Record)
}
