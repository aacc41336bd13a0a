//! The entities as clients see them (API.md field names). They read back
//! too, for the story tests' typed harness.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crew {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub max_concurrent_agents: i64,
    pub runtime: String,
    pub image: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub crew: String,
    pub crew_id: String,
    pub slug: String,
    pub name: String,
    pub role: String,
    pub command: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub timeout_seconds: i64,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assignment {
    pub id: String,
    pub crew: String,
    pub crew_id: String,
    pub agent: String,
    pub agent_id: String,
    pub assigned_by: Option<String>,
    pub task: String,
    pub status: String,
    pub created_at: String,
    pub queued_at: Option<String>,
    pub started_at: Option<String>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub crew: Option<String>,
    pub agent: Option<String>,
    pub assignment_id: Option<String>,
    pub trigger: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
    /// The node that executes (or executed) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A node of the fleet (API.md "Fleet").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub migration_version: i64,
    pub started_at: String,
    pub heartbeat_at: String,
    /// `live` or `expired`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    pub ts: String,
    pub entry_type: String,
    pub severity: String,
    pub crew: Option<String>,
    pub agent: Option<String>,
    pub trace_id: Option<String>,
    pub summary: String,
    pub payload: Value,
    pub archived: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSpec {
    pub id: String,
    pub crew: String,
    pub agent: String,
    pub task: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub max_concurrent_runs: i64,
    pub steps: Vec<StepSpec>,
    pub created_at: String,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRunStep {
    pub id: String,
    pub crew: String,
    pub agent: String,
    pub task: Option<String>,
    pub status: String,
    pub assignment_id: Option<String>,
    pub output: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineRun {
    pub id: String,
    pub pipeline: String,
    pub status: String,
    pub inputs: Value,
    pub dry_run: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub reason: Option<String>,
    pub steps: Vec<PipelineRunStep>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlmCallRecorded {
    pub id: String,
    pub provider: String,
    pub model: String,
    pub cost_usd: f64,
    pub priced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpendRow {
    pub key: Option<String>,
    pub calls: i64,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}
