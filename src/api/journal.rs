//! /api/v1/journal: the unified history, live and archived.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiResult;
use super::extract::{JsonBody, Listing, PageParams, Query, Validate, time_param};
use super::gate::Caller;
use super::settings::Limits;
use super::state::AppState;
use crate::domain::kinds::Severity;
use crate::domain::named::Named as _;
use crate::domain::types::JournalEntry;
use crate::domain::validate::{self, EntryTypeSchema, TextSchema};
use crate::domain::{DomainError, Result};
use crate::store::journal::{self, Filter, NewEntry};
use crate::store::posted::{self, Poster};
use crate::store::refs;
use crewship_wire::requests::PostEntry;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only entries of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    entry_type: Option<String>,
    /// Only entries of this trace (a run's id).
    trace_id: Option<String>,
    /// Only this crew's (id or slug).
    crew: Option<String>,
    /// Only entries at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only entries before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
}

/// List journal entries, newest first, archived ones included.
#[utoipa::path(get, path = "/journal", tag = "journal", params(PageParams, ListQuery), responses(
    (status = 200, description = "A page of entries", body = Listing<JournalEntry>),
))]
pub async fn list(
    State(app): State<AppState>,
    Query(page): Query<PageParams>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Listing<JournalEntry>>> {
    let page = page.request()?;
    let mut filter = Filter {
        since: time_param("since", q.since.as_deref())?,
        until: time_param("until", q.until.as_deref())?,
        entry_type: q.entry_type,
        trace_id: q.trace_id,
        crew_id: None,
    };
    let crew = q.crew;
    let list = app
        .store
        .read(move |c| {
            filter.crew_id = crew.map(|k| refs::crew_in_history(c, &k)).transpose()?;
            journal::list(c, &filter, page)
        })
        .await?;
    Ok(Json(list.into()))
}

/// A posted entry's severity: `info` unless it says.
fn severity(b: &PostEntry) -> Result<Severity> {
    Ok(b.severity.as_deref().map_or(Ok(Severity::Info), |s| Severity::parse_field("severity", s))?)
}

impl Validate for PostEntry {
    fn validate(&self, _: &Limits) -> Result<()> {
        validate::text("entry_type", &self.entry_type, EntryTypeSchema::MAX)?;
        if validate::trimmed(&self.entry_type).starts_with("run.") {
            return Err(DomainError::invalid("entry types run.* are reserved for the run endpoints"));
        }
        validate::text("summary", &self.summary, TextSchema::MAX)?;
        severity(self).map(drop)
    }
}

/// Who posts, as the store records it: a run, or an operator naming a
/// crew and an agent in the body.
pub(super) fn poster(caller: &Caller, crew: Option<String>, agent: Option<String>) -> Poster {
    match caller {
        Caller::Run(run) => {
            Poster::Run { run_id: run.run_id.clone(), crew: run.crew.clone(), agent: run.agent.clone() }
        }
        Caller::Operator => Poster::Operator { crew, agent },
    }
}

/// Record a free-form event; with a run token, against that run.
#[utoipa::path(post, path = "/journal", tag = "journal", request_body = PostEntry, responses(
    (status = 201, description = "The entry", body = JournalEntry),
))]
pub async fn post(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<PostEntry>,
) -> ApiResult<(StatusCode, Json<JournalEntry>)> {
    let entry_type = validate::trimmed(&b.entry_type).to_string();
    let severity = severity(&b)?;
    let by = poster(&caller, b.crew, b.agent);
    let new = NewEntry {
        severity,
        trace_id: b.trace_id,
        payload: b.payload.unwrap_or_else(|| serde_json::json!({})),
        ..NewEntry::info(entry_type, b.summary)
    };
    let entry = app.store.write(move |tx| posted::entry(tx, by, new)).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}
