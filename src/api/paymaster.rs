//! /api/v1/llm-calls and /api/v1/paymaster/spend: the cost ledger.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::ApiResult;
use super::extract::{JsonBody, Params, Validate};
use super::refs;
use super::state::AppState;
use crate::config::Config;
use crate::domain::kinds::BillingMode;
use crate::domain::named::Named as _;
use crate::domain::pricing::{self, Tokens};
use crate::domain::types::LlmCallRecorded;
use crate::domain::{DomainError, Result, provider, time};
use crate::store::ledger::{self, GroupBy, NewCall};

#[derive(Deserialize)]
pub struct RecordCall {
    provider: String,
    model: String,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: Option<i64>,
    cache_creation_tokens: Option<i64>,
    cost_usd: Option<f64>,
    billing_mode: Option<String>,
    crew: Option<String>,
    agent: Option<String>,
    run_id: Option<String>,
}

impl RecordCall {
    fn tokens(&self) -> Tokens {
        Tokens {
            input: self.input_tokens,
            output: self.output_tokens,
            cached_input: self.cached_input_tokens.unwrap_or(0),
            cache_creation: self.cache_creation_tokens.unwrap_or(0),
        }
    }

    fn billing_mode(&self) -> Result<BillingMode> {
        self.billing_mode.as_deref().map_or(Ok(BillingMode::Metered), |m| BillingMode::parse_field("billing_mode", m))
    }
}

impl Validate for RecordCall {
    fn validate(&self, _: &Config) -> Result<()> {
        provider::normalize(&self.provider)?;
        let model = self.model.trim();
        if model.is_empty() || model.len() > 200 {
            return Err(DomainError::invalid("model must be 1-200 characters"));
        }
        let t = self.tokens();
        for (field, v) in [
            ("input_tokens", t.input),
            ("output_tokens", t.output),
            ("cached_input_tokens", t.cached_input),
            ("cache_creation_tokens", t.cache_creation),
        ] {
            pricing::check_tokens(field, v)?;
        }
        self.billing_mode()?;
        self.cost_usd.map(pricing::usd_to_nanos).transpose().map(drop)
    }
}

pub async fn record(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(b): JsonBody<RecordCall>,
) -> ApiResult<(StatusCode, Json<LlmCallRecorded>)> {
    let provider = provider::normalize(&b.provider)?;
    let model = b.model.trim().to_string();
    let tokens = b.tokens();
    let billing_mode = b.billing_mode()?;
    // Flat-rate calls cost nothing per call but still count as calls. An
    // unpriced model is recorded at 0 USD with `priced: false`, not refused:
    // the call happened and must count.
    let (cost_nanos, priced) = match (billing_mode, b.cost_usd) {
        (BillingMode::FlatRate, _) => (0, true),
        (_, Some(usd)) => (pricing::usd_to_nanos(usd)?, true),
        (_, None) => match app.rate_card.price(&provider, &model, tokens)? {
            Some(n) => (n, true),
            None => {
                tracing::warn!(provider, model, "no rate card price; recording the call at 0 USD");
                (0, false)
            }
        },
    };
    let recorded = app
        .store
        .write(move |tx| {
            // A run's own call is recorded against it, whatever the body says.
            let (crew, agent, run_id) = match &caller {
                Caller::Run(run) => (run.crew.clone(), run.agent.clone(), Some(run.run_id.clone())),
                Caller::Operator => {
                    let (crew, agent) = refs::scope(tx, b.crew.as_deref(), b.agent.as_deref())?;
                    if let Some(run) = &b.run_id
                        && !ledger::run_exists(tx, run)?
                    {
                        return Err(DomainError::invalid(format!("unknown run {run:?}")));
                    }
                    (crew, agent, b.run_id)
                }
            };
            let call = NewCall {
                provider,
                model,
                tokens,
                cost_nanos,
                priced,
                billing_mode,
                crew_id: crew.map(|c| c.id),
                agent_id: agent.map(|a| a.id),
                run_id,
            };
            ledger::record(tx, call)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(recorded)))
}

pub async fn spend(State(app): State<AppState>, params: Params) -> ApiResult<Json<Value>> {
    let group_by = GroupBy::parse_field("group_by", params.get("group_by").unwrap_or("provider"))?;
    let since = params.time("since")?;
    let until = params.time("until")?;
    let rows = app.store.read(move |c| ledger::spend(c, group_by, since, until)).await?;
    Ok(Json(json!({
        "rows": rows,
        "since": time::rfc3339_opt(since),
        "until": time::rfc3339_opt(until),
    })))
}
