//! The entities as clients see them (API.md field names). They read back
//! too, for the story tests' typed harness.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::kinds::{LeaseState, Role, Runtime, Severity};
use crate::status::{AssignmentStatus, PipelineRunStatus, RunStatus, StepStatus};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Crew {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub max_concurrent_agents: i64,
    pub runtime: Runtime,
    pub image: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub crew: String,
    pub crew_id: String,
    pub slug: String,
    pub name: String,
    pub role: Role,
    pub command: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub timeout_seconds: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub id: String,
    pub crew: String,
    pub crew_id: String,
    pub agent: String,
    pub agent_id: String,
    pub assigned_by: Option<String>,
    pub task: String,
    pub status: AssignmentStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub queued_at: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub result_summary: Option<String>,
    pub error_message: Option<String>,
    pub run_id: Option<String>,
    pub attempts: i64,
    pub pipeline_run_id: Option<String>,
    /// The node that executes (or executed) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: String,
    pub status: RunStatus,
    pub crew: Option<String>,
    pub agent: Option<String>,
    pub assignment_id: Option<String>,
    pub trigger: Option<String>,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// The node that executes (or executed) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A node of the fleet (API.md "Fleet").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub migration_version: i64,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub heartbeat_at: String,
    /// `live` or `expired`.
    pub state: LeaseState,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JournalEntry {
    pub id: String,
    #[schema(format = DateTime)]
    pub ts: String,
    pub entry_type: String,
    pub severity: Severity,
    pub crew: Option<String>,
    pub agent: Option<String>,
    pub trace_id: Option<String>,
    pub summary: String,
    pub payload: Value,
    pub archived: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepSpec {
    /// Unique in the pipeline; not blank, without `.`, `{` or `}`.
    #[schema(pattern = "^[^.{}]*[^ \t\n\r.{}][^.{}]*$")]
    pub id: String,
    /// The crew's id or slug.
    pub crew: String,
    /// The agent's id or slug, within the crew.
    pub agent: String,
    /// May use `{{inputs.NAME}}` and `{{steps.STEP_ID.output}}`.
    #[schema(value_type = crate::schema::TextSchema)]
    pub task: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Pipeline {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub max_concurrent_runs: i64,
    pub steps: Vec<StepSpec>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PipelineRunStep {
    pub id: String,
    pub crew: String,
    pub agent: String,
    pub task: Option<String>,
    pub status: StepStatus,
    pub assignment_id: Option<String>,
    pub output: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PipelineRun {
    pub id: String,
    pub pipeline: String,
    pub status: PipelineRunStatus,
    pub inputs: Value,
    pub dry_run: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    pub reason: Option<String>,
    pub steps: Vec<PipelineRunStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LlmCallRecorded {
    pub id: String,
    pub provider: String,
    pub model: String,
    pub cost_usd: f64,
    pub priced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendRow {
    pub key: Option<String>,
    pub calls: i64,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}
