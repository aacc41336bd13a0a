//! /api/v1/journal: the unified history, live and archived.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiResult;
use super::extract::{JsonBody, Listing, Params, Validate};
use super::refs;
use super::state::AppState;
use crate::config::Config;
use crate::domain::kinds::Severity;
use crate::domain::named::Named as _;
use crate::domain::types::JournalEntry;
use crate::domain::{DomainError, Result};
use crate::store::journal::{self, Filter, NewEntry};

pub async fn list(State(app): State<AppState>, params: Params) -> ApiResult<Json<Listing<JournalEntry>>> {
    let page = params.page()?;
    let mut filter = Filter {
        entry_type: params.get("type").map(str::to_string),
        trace_id: params.get("trace_id").map(str::to_string),
        crew_id: None,
        since: params.time("since")?,
        until: params.time("until")?,
    };
    let crew = params.get("crew").map(str::to_string);
    let list = app
        .store
        .read(move |c| {
            filter.crew_id = crew.map(|k| refs::crew_in_history(c, &k)).transpose()?;
            journal::list(c, &filter, page)
        })
        .await?;
    Ok(Json(list.into()))
}

#[derive(Deserialize)]
pub struct PostEntry {
    entry_type: String,
    summary: String,
    severity: Option<String>,
    crew: Option<String>,
    agent: Option<String>,
    trace_id: Option<String>,
    payload: Option<serde_json::Value>,
}

impl PostEntry {
    fn severity(&self) -> Result<Severity> {
        self.severity.as_deref().map_or(Ok(Severity::Info), |s| Severity::parse_field("severity", s))
    }
}

impl Validate for PostEntry {
    fn validate(&self, _: &Config) -> Result<()> {
        let entry_type = self.entry_type.trim();
        if entry_type.is_empty() || entry_type.len() > 100 {
            return Err(DomainError::invalid("entry_type must be 1-100 characters"));
        }
        if entry_type.starts_with("run.") {
            return Err(DomainError::invalid("entry types run.* are reserved for the run endpoints"));
        }
        if self.summary.trim().is_empty() {
            return Err(DomainError::invalid("summary must not be empty"));
        }
        self.severity().map(drop)
    }
}

pub async fn post(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<PostEntry>,
) -> ApiResult<(StatusCode, Json<JournalEntry>)> {
    let entry_type = b.entry_type.trim().to_string();
    let severity = b.severity()?;
    let entry = app
        .store
        .write(move |tx| {
            // A run's own entry is recorded against it, whatever the body says.
            let (crew, agent, trace_id) = match &caller {
                Caller::Run(run) => (run.crew.clone(), run.agent.clone(), Some(run.run_id.clone())),
                Caller::Operator => {
                    let (crew, agent) = refs::scope(tx, b.crew.as_deref(), b.agent.as_deref())?;
                    (crew, agent, b.trace_id)
                }
            };
            let new = NewEntry {
                entry_type,
                severity,
                crew,
                agent,
                trace_id,
                summary: b.summary,
                payload: b.payload.unwrap_or_else(|| serde_json::json!({})),
            };
            journal::append(tx, new)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(entry)))
}
