//! The bodies clients send, as the API reads them: each field as sent
//! (a name or a bound is checked by the daemon, which answers 422 naming
//! the rule), with the API description's schema of each.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};

use crate::kinds::{BillingMode, Role, Runtime, Severity};
use crate::named::Named;
use crate::schema::{EntryTypeSchema, ModelSchema, NameSchema, ProviderSchema, SlugSchema, TextSchema};
use crate::status::RunStatus;
use crate::types::StepSpec;

#[derive(Deserialize, ToSchema)]
pub struct CreateCrew {
    #[schema(value_type = SlugSchema)]
    pub slug: String,
    #[schema(value_type = NameSchema)]
    pub name: String,
    /// How many of its agents may run at once (default 2).
    #[schema(minimum = 1)]
    pub max_concurrent_agents: Option<i64>,
    /// Where its agents run (default `local`); `docker` needs an `image`.
    #[schema(value_type = Option<Runtime>)]
    pub runtime: Option<String>,
    /// The image of a docker crew's container.
    pub image: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct PatchCrew {
    #[schema(value_type = Option<NameSchema>)]
    pub name: Option<String>,
    #[schema(minimum = 1)]
    pub max_concurrent_agents: Option<i64>,
    /// A new image; `null` clears it (not for a docker crew).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub image: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateAgent {
    #[schema(value_type = SlugSchema)]
    pub slug: String,
    #[schema(value_type = NameSchema)]
    pub name: String,
    /// `agent` (default) or `lead`: at most one live lead a crew.
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    #[schema(schema_with = command_schema)]
    pub command: Vec<String>,
    #[schema(schema_with = env_schema)]
    pub env: Option<BTreeMap<String, String>>,
    /// A run is killed after this long (default 1800).
    #[schema(minimum = 1)]
    pub timeout_seconds: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct PatchAgent {
    #[schema(value_type = Option<NameSchema>)]
    pub name: Option<String>,
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    #[schema(schema_with = patch_command_schema)]
    pub command: Option<Vec<String>>,
    /// Replaces the whole environment.
    #[schema(schema_with = env_schema)]
    pub env: Option<BTreeMap<String, String>>,
    #[schema(minimum = 1)]
    pub timeout_seconds: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateAssignment {
    /// The crew's id or slug.
    pub crew: String,
    /// The agent's id or slug, within the crew.
    pub agent: String,
    /// What the agent reads on stdin: not blank, at most `CREWSHIP_MAX_TASK_BYTES` bytes.
    #[schema(value_type = TextSchema)]
    pub task: String,
    /// The agent (of the same crew) that handed it out.
    pub assigned_by: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct PostEntry {
    /// 1-100 characters; `run.*` is reserved for the run endpoints.
    #[schema(value_type = EntryTypeSchema)]
    pub entry_type: String,
    #[schema(value_type = TextSchema)]
    pub summary: String,
    /// Default `info`.
    #[schema(value_type = Option<Severity>)]
    pub severity: Option<String>,
    /// The crew's id or slug.
    pub crew: Option<String>,
    /// The agent's id or slug (needs `crew`).
    pub agent: Option<String>,
    /// The trace (run id) it belongs to; a run token sets its own.
    pub trace_id: Option<String>,
    /// Any JSON (default `{}`).
    pub payload: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct RecordCall {
    /// Compared case-insensitively: `Anthropic` is `anthropic`.
    #[schema(value_type = ProviderSchema)]
    pub provider: String,
    #[schema(value_type = ModelSchema)]
    pub model: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub input_tokens: i64,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub output_tokens: i64,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub cached_input_tokens: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub cache_creation_tokens: Option<i64>,
    /// What it cost; without it, the rate card prices the tokens.
    #[schema(minimum = 0, maximum = 10_000_000)]
    pub cost_usd: Option<f64>,
    /// Default `metered`; `flat_rate` calls cost 0 USD and still count.
    #[schema(value_type = Option<BillingMode>)]
    pub billing_mode: Option<String>,
    /// The crew's id or slug; a run token sets its own.
    pub crew: Option<String>,
    /// The agent's id or slug (needs `crew`); a run token sets its own.
    pub agent: Option<String>,
    /// The run it was made for; a run token sets its own.
    pub run_id: Option<String>,
    /// How long the call took, for its span (which ends when it is recorded).
    #[schema(minimum = 0, maximum = 86_400_000)]
    pub duration_ms: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct CreatePipeline {
    #[schema(value_type = SlugSchema)]
    pub slug: String,
    #[schema(value_type = NameSchema)]
    pub name: String,
    /// Runs at once (default 1); more wait, queued.
    #[schema(minimum = 1)]
    pub max_concurrent_runs: Option<i64>,
    /// Run in order, each as an assignment; at most `CREWSHIP_MAX_PIPELINE_STEPS`.
    #[schema(min_items = 1)]
    pub steps: Vec<StepSpec>,
}

#[derive(Deserialize, ToSchema)]
pub struct RunPipeline {
    /// What `{{inputs.NAME}}` in the steps' tasks stands for.
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<serde_json::Map<String, serde_json::Value>>,
    /// Render every step and run nothing.
    pub dry_run: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct StartRun {
    /// The crew's id or slug.
    pub crew: Option<String>,
    /// The agent's id or slug (needs `crew`).
    pub agent: Option<String>,
    /// What started it, in the owner's words.
    pub trigger: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct ReportRun {
    #[schema(schema_with = terminal_status)]
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
}

/// For PATCH fields where `null` (clear) differs from absent (keep): use
/// with `#[serde(default)]` on an `Option<Option<T>>`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub fn command_schema() -> ArrayBuilder {
    argv_schema(false)
}

pub fn patch_command_schema() -> ArrayBuilder {
    argv_schema(true)
}

/// The rule of an agent's `command`, as the API description states it (the
/// daemon checks it).
fn argv_schema(nullable: bool) -> ArrayBuilder {
    let program = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1));
    ArrayBuilder::new()
        .schema_type(or_null(Type::Array, nullable))
        .description(Some("What runs for each assignment: a program (not empty) and its arguments"))
        .prefix_items([program])
        .items(ObjectBuilder::new().schema_type(Type::String))
        .min_items(Some(1))
}

/// The rule of an agent's `env`, as the API description states it (the
/// daemon checks it).
pub fn env_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(or_null(Type::Object, true))
        .description(Some("More environment for its runs; names starting CREWSHIP_ are reserved"))
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[^=]+$"))))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
}

/// An optional field's type: `null` reads as absent.
fn or_null(t: Type, nullable: bool) -> SchemaType {
    if nullable { SchemaType::from_iter([t, Type::Null]) } else { SchemaType::Type(t) }
}

/// The statuses a run ends in.
pub fn terminal() -> impl Iterator<Item = &'static str> {
    RunStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| s.as_str())
}

pub fn terminal_status() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(terminal())).description(Some("How it ended"))
}
