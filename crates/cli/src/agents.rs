//! `crewship agents …`

use clap::Subcommand;
use serde_json::{Map, Value};

use super::args::PageArgs;
use super::client::{Query, body};
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const COLUMNS: Columns = &[
    ("ID", "id"),
    ("SLUG", "slug"),
    ("NAME", "name"),
    ("ROLE", "role"),
    ("TIMEOUT_S", "timeout_seconds"),
    ("COMMAND", "command"),
    ("DELETED", "deleted_at"),
];

#[derive(Subcommand)]
pub enum AgentsCmd {
    /// List a crew's agents.
    List {
        crew: String,
        #[command(flatten)]
        page: PageArgs,
        /// Include deleted agents.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Show one agent (crew and agent by slug or id).
    Get { crew: String, agent: String },
    /// Add an agent to a crew: `crewship agents create CREW SLUG --name N -- CMD ARGS…`.
    Create {
        crew: String,
        /// 2-50 characters of a-z, 0-9, _ and -.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// At most one live lead per crew (default agent).
        #[arg(long, value_parser = ["lead", "agent"])]
        role: Option<String>,
        /// Kill a run after this long (default 1800).
        #[arg(long, value_name = "N")]
        timeout_seconds: Option<i64>,
        /// Environment for its runs (repeatable).
        #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
        env: Vec<(String, String)>,
        /// The argv run for each assignment, after `--`; the task arrives on stdin.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Delete an agent; its waiting assignments are cancelled.
    Delete { crew: String, agent: String },
}

fn key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not K=V"))
}

pub async fn run(ctx: &Ctx, cmd: AgentsCmd) -> Result<()> {
    let c = &ctx.client;
    let agent = match cmd {
        AgentsCmd::List { crew, page, include_deleted } => {
            let query = page.query().opt("include_deleted", include_deleted.then_some(true));
            let list = c.list(&["crews", &crew, "agents"], query, page.all).await?;
            return ctx.show(&list, View::Rows("items", COLUMNS));
        }
        AgentsCmd::Get { crew, agent } => c.get(&["crews", &crew, "agents", &agent], &Query::default()).await?,
        AgentsCmd::Create { crew, slug, name, role, timeout_seconds, env, command } => {
            let env: Map<String, Value> = env.into_iter().map(|(k, v)| (k, v.into())).collect();
            let new = body([
                ("slug", Some(slug.into())),
                ("name", Some(name.into())),
                ("role", role.map(Value::from)),
                ("command", Some(command.into())),
                ("env", (!env.is_empty()).then_some(env.into())),
                ("timeout_seconds", timeout_seconds.map(Value::from)),
            ]);
            c.post(&["crews", &crew, "agents"], &new).await?
        }
        AgentsCmd::Delete { crew, agent } => c.delete(&["crews", &crew, "agents", &agent]).await?,
    };
    ctx.show(&agent, View::Record)
}
