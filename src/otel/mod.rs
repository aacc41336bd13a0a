//! Traces: OpenTelemetry spans exported over OTLP/HTTP protobuf. A leaf:
//! the layers above hand it finished spans (`Tracer::record`), with the
//! ids and times they decide, which is what lets a run's trace id be the
//! run's own id and a span start at a time read from the database.
//! Without an endpoint the tracer is off: `record` returns at once and
//! nothing is built.

pub mod context;
mod export;
pub mod proto;
pub mod sampler;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use context::{SpanContext, SpanId, TraceId};
pub use export::Export;
pub use proto::{Link, Span, SpanKind, Status, Value};
pub use sampler::Sampler;

struct On {
    queue: export::Queue,
}

/// Cheap to clone; every layer that makes spans holds one.
#[derive(Clone)]
pub struct Tracer {
    on: Option<Arc<On>>,
    sampler: Sampler,
}

/// The parts of a run's trace, named alike on every node.
pub mod run {
    use super::context::{SpanId, TraceId, derived_span};

    /// The trace's root: the run's attempt at its assignment, from queued to ended.
    pub fn root(trace: &TraceId) -> SpanId {
        derived_span(trace, "assignment")
    }

    /// The run itself, from start to end: the agent's spans are its children.
    pub fn span(trace: &TraceId) -> SpanId {
        derived_span(trace, "run")
    }
}

impl Tracer {
    /// A tracer that exports nothing; its sampler still decides the flags
    /// of the context agents get.
    pub fn off(sampler: Sampler) -> Tracer {
        Tracer { on: None, sampler }
    }

    /// Starts exporting to `export` (needs the async runtime).
    pub fn exporting(export: Export, sampler: Sampler) -> Result<(Tracer, tokio::task::JoinHandle<()>), String> {
        let (queue, task) = export::start(export)?;
        Ok((Tracer { on: Some(Arc::new(On { queue })), sampler }, task))
    }

    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Queues a finished span, if tracing is on and its trace is sampled
    /// (the caller says). Never waits: a full queue drops it, counted.
    pub fn record(&self, span: impl FnOnce() -> Span) {
        if let Some(on) = &self.on {
            on.queue.push(span());
        }
    }

    /// Sends what is queued and stops exporting; waits at most `grace`.
    pub async fn close(&self, task: tokio::task::JoinHandle<()>, grace: std::time::Duration) {
        if let Some(on) = &self.on {
            on.queue.close();
        }
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!(?grace, "spans still unsent at shutdown were dropped");
        }
    }

    /// Spans dropped so far: the queue was full, or their batch failed.
    pub fn dropped(&self) -> u64 {
        self.on.as_ref().map_or(0, |on| on.queue.dropped.load(Ordering::Relaxed))
    }

    /// Whether the trace of a run (a root) is recorded.
    pub fn samples_root(&self, trace: &TraceId) -> bool {
        self.sampler.root(trace)
    }

    /// The context an agent of run `trace` continues (`TRACEPARENT`).
    pub fn run_context(&self, trace: &TraceId) -> SpanContext {
        SpanContext { trace_id: *trace, span_id: run::span(trace), sampled: self.samples_root(trace) }
    }
}

/// Nanoseconds since the epoch, from the milliseconds the store keeps.
pub fn ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
