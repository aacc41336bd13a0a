//! /api/v1/llm-calls and /api/v1/paymaster/spend: the cost ledger.

use std::sync::Arc;

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
use super::state::{App, AppState};
use super::telemetry::Observed;
use crate::config::Config;
use crate::domain::kinds::BillingMode;
use crate::domain::named::Named as _;
use crate::domain::pricing::{self, Tokens};
use crate::domain::types::LlmCallRecorded;
use crate::domain::{DomainError, Result, provider, time};
use crate::otel::{self, Value as Attr};
use crate::store::ledger::{self, GroupBy, NewCall};

/// A day: no call an agent makes takes longer.
const MAX_CALL_MS: i64 = 86_400_000;

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
    /// How long the call took, for its span (which ends when it is recorded).
    duration_ms: Option<i64>,
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
        if self.duration_ms.is_some_and(|d| !(0..=MAX_CALL_MS).contains(&d)) {
            return Err(DomainError::invalid(format!("duration_ms must be from 0 to {MAX_CALL_MS}")));
        }
        self.cost_usd.map(pricing::usd_to_nanos).transpose().map(drop)
    }
}

/// The call's `llm.call` span: in its run's trace (under this request's
/// span when the run itself calls, else under the run's span), or under
/// this request's span when no run is named.
fn trace_call(app: &App, observed: &Observed, run_id: Option<&str>, call: &LlmCallRecorded, t: Tokens, ms: i64) {
    let here = observed.context();
    let (trace, parent, sampled) = match run_id.and_then(otel::context::trace_id) {
        Some(run) if run == here.trace_id => (run, here.span_id, here.sampled),
        Some(run) => (run, otel::run::span(&run), app.tracer.samples_root(&run)),
        None => (here.trace_id, here.span_id, here.sampled),
    };
    if !sampled {
        return;
    }
    app.tracer.record(|| {
        let end = otel::now_ns();
        otel::Span {
            trace_id: trace,
            span_id: otel::context::new_span_id(),
            parent: Some(parent),
            name: "llm.call".into(),
            kind: otel::SpanKind::Internal,
            start_ns: end.saturating_sub(ms as u64 * 1_000_000),
            end_ns: end,
            attributes: vec![
                ("gen_ai.provider.name", Attr::Str(call.provider.clone())),
                ("gen_ai.request.model", Attr::Str(call.model.clone())),
                ("gen_ai.usage.input_tokens", Attr::Int(t.input)),
                ("gen_ai.usage.output_tokens", Attr::Int(t.output)),
                ("gen_ai.usage.cache_read.input_tokens", Attr::Int(t.cached_input)),
                ("gen_ai.usage.cache_creation.input_tokens", Attr::Int(t.cache_creation)),
                ("crewship.llm.cost_usd", Attr::Double(call.cost_usd)),
                ("crewship.llm.priced", Attr::Bool(call.priced)),
                ("crewship.llm_call.id", Attr::Str(call.id.clone())),
            ],
            links: Vec::new(),
            status: otel::Status::Unset,
        }
    });
}

pub async fn record(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(observed): Extension<Arc<Observed>>,
    JsonBody(b): JsonBody<RecordCall>,
) -> ApiResult<(StatusCode, Json<LlmCallRecorded>)> {
    let duration_ms = b.duration_ms.unwrap_or(0);
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
            let traced_run = run_id.clone();
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
            ledger::record(tx, call).map(|r| (r, traced_run))
        })
        .await?;
    let (recorded, run_id) = recorded;
    if app.tracer.is_on() {
        trace_call(&app, &observed, run_id.as_deref(), &recorded, tokens, duration_ms);
    }
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

/// The rate card that prices calls recorded without a cost.
pub async fn rates(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "rates": app.rate_card.rates() }))
}
