//! Every request's span and its HTTP series. The outermost layer (axum
//! layers each route after routing, so the template that matched is known)
//! times the request and reads its `traceparent`; what only the inner
//! layers learn (the run a run token belongs to, an answer that must look
//! like no route) they write into the request's `Observed`, which the
//! outer layer reads once the answer is out.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::state::AppState;
use crate::latency::{self, UNMATCHED};
use crate::otel::{self, SpanContext, SpanKind, Status, Value, context, run};
use crate::sync::lock;

struct Decided {
    /// Counted and named as no route (the unauthorized /metrics answer).
    hidden: bool,
    trace_id: otel::TraceId,
    parent: Option<otel::SpanId>,
    sampled: bool,
}

/// One request as it is being answered.
pub struct Observed {
    /// The caller's `traceparent`, as it came.
    incoming: Option<SpanContext>,
    span_id: otel::SpanId,
    decided: Mutex<Decided>,
}

impl Observed {
    /// The caller's context, for a span link from the work it creates.
    pub fn incoming(&self) -> Option<SpanContext> {
        self.incoming
    }

    /// This request's own span.
    pub fn context(&self) -> SpanContext {
        let d = lock(&self.decided);
        SpanContext { trace_id: d.trace_id, span_id: self.span_id, sampled: d.sampled }
    }

    /// A run token's call: its span joins the run's trace, under the run's
    /// span unless the agent sent a context of that trace itself.
    pub fn joins_run(&self, run_trace: &otel::TraceId, sampled: bool) {
        let mut d = lock(&self.decided);
        if self.incoming.is_some_and(|c| c.trace_id == *run_trace) {
            return;
        }
        d.trace_id = *run_trace;
        d.parent = Some(run::span(run_trace));
        d.sampled = sampled;
    }

    /// Counts the answer as no route's, whatever matched.
    pub fn hide(&self) {
        lock(&self.decided).hidden = true;
    }
}

/// Bytes of a request's path a span keeps: a client's long path must not
/// make every queued span that big.
const MAX_PATH_BYTES: usize = 256;

fn bounded(path: &str) -> &str {
    let mut end = path.len().min(MAX_PATH_BYTES);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// The outermost layer.
pub async fn observe(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let (started, start_ns) = (Instant::now(), otel::now_ns());
    let sampler = *app.tracer.sampler();
    let incoming = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(SpanContext::parse);
    let decided = match incoming {
        // Off: no ids to draw, nothing to record.
        _ if !app.tracer.is_on() => Decided { hidden: false, trace_id: [0; 16], parent: None, sampled: false },
        Some(c) => Decided {
            hidden: false,
            trace_id: c.trace_id,
            parent: Some(c.span_id),
            sampled: sampler.child(&c.trace_id, c.sampled),
        },
        None => {
            let trace_id = context::new_trace_id();
            Decided { hidden: false, trace_id, parent: None, sampled: sampler.root(&trace_id) }
        }
    };
    let observed = Arc::new(Observed { incoming, span_id: context::new_span_id(), decided: Mutex::new(decided) });
    req.extensions_mut().insert(observed.clone());
    let method = latency::method_label(req.method().as_str());
    let path = app.tracer.is_on().then(|| bounded(req.uri().path()).to_string());
    // Fallbacks get no template.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let code = response.status().as_u16();
    let d = lock(&observed.decided);
    let route = matched.as_ref().map(MatchedPath::as_str).filter(|_| !d.hidden);
    app.latencies.request(method, route.unwrap_or(UNMATCHED), code, started.elapsed().as_secs_f64());
    if d.sampled {
        app.tracer.record(|| {
            let mut attributes = vec![
                ("http.request.method", Value::Str(method.to_string())),
                ("url.path", Value::Str(path.unwrap_or_default())),
                ("http.response.status_code", Value::Int(i64::from(code))),
            ];
            attributes.extend(route.map(|r| ("http.route", Value::Str(r.to_string()))));
            otel::Span {
                trace_id: d.trace_id,
                span_id: observed.span_id,
                parent: d.parent,
                name: route.map_or_else(|| method.to_string(), |r| format!("{method} {r}")),
                kind: SpanKind::Server,
                start_ns,
                end_ns: otel::now_ns(),
                attributes,
                links: Vec::new(),
                status: if code >= 500 { Status::Error(format!("answered {code}")) } else { Status::Unset },
            }
        });
    }
    drop(d);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_paths_are_bounded_on_a_char_boundary() {
        assert_eq!(bounded("/api/v1/crews"), "/api/v1/crews");
        let long = format!("/{}", "ü".repeat(300));
        let b = bounded(&long);
        assert!(b.len() <= MAX_PATH_BYTES && b.len() >= MAX_PATH_BYTES - 1, "{}", b.len());
        assert!(long.starts_with(b));
    }
}
