//! /api/v1/paymaster/spend and /api/v1/paymaster/rates: what the cost ledger
//! sums, and the rate card it prices with (calls are recorded in `llm_calls`).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiResult;
use super::extract::{Query, time_param};
use super::state::AppState;
use crate::domain::named::Named as _;
use crate::domain::time;
use crate::store::ledger::{self, GroupBy};
use crewship_wire::answers::{Rates, Spend};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpendQuery {
    /// What a row sums (default `provider`).
    #[param(value_type = Option<GroupBy>, inline)]
    group_by: Option<String>,
    /// Only calls at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<String>,
    /// Only calls before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<String>,
}

/// Spend and tokens, summed by provider, crew, agent or model.
#[utoipa::path(get, path = "/paymaster/spend", tag = "paymaster", params(SpendQuery), responses(
    (status = 200, description = "The sums", body = Spend),
))]
pub async fn spend(State(app): State<AppState>, Query(q): Query<SpendQuery>) -> ApiResult<Json<Spend>> {
    let group_by = GroupBy::parse_field("group_by", q.group_by.as_deref().unwrap_or("provider"))?;
    let since = time_param("since", q.since.as_deref())?;
    let until = time_param("until", q.until.as_deref())?;
    let rows = app.store.read(move |c| ledger::spend(c, group_by, since, until)).await?;
    Ok(Json(Spend { rows, since: time::rfc3339_opt(since), until: time::rfc3339_opt(until) }))
}

/// The rate card that prices calls recorded without a cost.
#[utoipa::path(get, path = "/paymaster/rates", tag = "paymaster", responses(
    (status = 200, description = "The rate card in effect", body = Rates),
))]
pub async fn rates(State(app): State<AppState>) -> Json<Rates> {
    Json(Rates { rates: app.rate_card.rates().to_vec() })
}
