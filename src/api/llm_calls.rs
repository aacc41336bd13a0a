//! /api/v1/llm-calls: LLM calls recorded in the cost ledger.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::error::ApiResult;
use super::extract::{JsonBody, Validate};
use super::gate::Caller;
use super::settings::Limits;
use super::state::{App, AppState};
use super::telemetry::Observed;
use crate::domain::kinds::BillingMode;
use crate::domain::named::Named as _;
use crate::domain::pricing::{self, Tokens};
use crate::domain::types::LlmCallRecorded;
use crate::domain::validate::{self, ModelSchema};
use crate::domain::{DomainError, Result, provider};
use crate::otel::{self, Value as Attr};
use crate::store::ledger::NewCall;
use crate::store::posted;
use crewship_wire::requests::RecordCall;

/// A day: no call an agent makes takes longer.
const MAX_CALL_MS: i64 = 86_400_000;

/// A call's tokens, the optional counts 0 unless it says.
fn tokens(b: &RecordCall) -> Tokens {
    Tokens {
        input: b.input_tokens,
        output: b.output_tokens,
        cached_input: b.cached_input_tokens.unwrap_or(0),
        cache_creation: b.cache_creation_tokens.unwrap_or(0),
    }
}

/// How a call is billed: `metered` unless it says.
fn billing_mode(b: &RecordCall) -> Result<BillingMode> {
    Ok(b.billing_mode.as_deref().map_or(Ok(BillingMode::Metered), |m| BillingMode::parse_field("billing_mode", m))?)
}

impl Validate for RecordCall {
    fn validate(&self, _: &Limits) -> Result<()> {
        provider::normalize(&self.provider)?;
        validate::text("model", &self.model, ModelSchema::MAX)?;
        let t = tokens(self);
        for (field, v) in [
            ("input_tokens", t.input),
            ("output_tokens", t.output),
            ("cached_input_tokens", t.cached_input),
            ("cache_creation_tokens", t.cache_creation),
        ] {
            pricing::check_tokens(field, v)?;
        }
        billing_mode(self)?;
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

/// Record an LLM call in the cost ledger.
#[utoipa::path(post, path = "/llm-calls", tag = "paymaster", request_body = RecordCall, responses(
    (status = 201, description = "The call as recorded, with its cost", body = LlmCallRecorded),
))]
pub async fn record(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(observed): Extension<Arc<Observed>>,
    JsonBody(b): JsonBody<RecordCall>,
) -> ApiResult<(StatusCode, Json<LlmCallRecorded>)> {
    let duration_ms = b.duration_ms.unwrap_or(0);
    let provider = provider::normalize(&b.provider)?;
    let model = validate::trimmed(&b.model).to_string();
    let tokens = tokens(&b);
    let billing_mode = billing_mode(&b)?;
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
    let by = super::journal::poster(&caller, b.crew, b.agent);
    let call = NewCall {
        provider,
        model,
        tokens,
        cost_nanos,
        priced,
        billing_mode,
        crew_id: None,
        agent_id: None,
        run_id: b.run_id,
    };
    let (recorded, run_id) = app.store.write(move |tx| posted::llm_call(tx, by, call)).await?;
    if app.tracer.is_on() {
        trace_call(&app, &observed, run_id.as_deref(), &recorded, tokens, duration_ms);
    }
    Ok((StatusCode::CREATED, Json(recorded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The description's bounds (literals, as the derive needs) are the
    /// ones `validate` enforces.
    #[test]
    fn the_described_bounds_are_the_enforced_ones() {
        let schema = serde_json::to_value(<RecordCall as utoipa::PartialSchema>::schema()).unwrap();
        let max = |field: &str| schema["properties"][field]["maximum"].as_f64();
        for field in ["input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_tokens"] {
            assert_eq!(max(field), Some(pricing::MAX_TOKENS_PER_CALL as f64), "{field}: {schema}");
        }
        assert_eq!(max("cost_usd"), Some(pricing::MAX_USD_PER_CALL));
        assert_eq!(max("duration_ms"), Some(MAX_CALL_MS as f64));
    }
}
