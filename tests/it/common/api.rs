//! The API's entities as the story tests read them: typed, so a test says
//! `crew.max_concurrent_agents` instead of poking at JSON, and a renamed
//! or retyped field fails loudly.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct Crew {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub max_concurrent_agents: i64,
    pub runtime: String,
    pub image: Option<String>,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Assignment {
    pub id: String,
    pub crew: String,
    pub agent: String,
    pub task: String,
    pub status: String,
    pub run_id: Option<String>,
    pub attempts: i64,
    pub result_summary: Option<String>,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub crew: Option<String>,
    pub agent: Option<String>,
    pub assignment_id: Option<String>,
    pub error: Option<String>,
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    pub entry_type: String,
    pub severity: String,
    pub crew: Option<String>,
    pub agent: Option<String>,
    pub trace_id: Option<String>,
    pub summary: String,
    pub payload: Value,
    pub archived: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
