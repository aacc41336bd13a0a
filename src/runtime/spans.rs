//! The spans of runs and pipeline runs (docs/tracing.md), and the
//! histograms their ends feed. A run's trace id is the run id: its root
//! (`assignment`, from queued to ended) holds `queue.wait` then `run`, and
//! links to the context of whoever created the assignment. A pipeline
//! run's own trace holds `pipeline.run`, parent of one `pipeline.step`
//! span per step's assignment, each linked to its run's trace.

use std::sync::Arc;

use crate::domain::status::{PipelineRunStatus, RunStatus};
use crate::latency::Latencies;
use crate::otel::{self, Link, SpanContext, SpanKind, Status, Tracer, Value, context, run};
use crate::store::assignments::{AssignmentRow, Claimed};
use crate::store::pipelines::PipelineRunRow;
use crate::store::runs::RunRow;

/// What the workers report through: spans, and this node's histograms.
#[derive(Clone)]
pub struct Telemetry {
    pub tracer: Tracer,
    pub latencies: Arc<Latencies>,
}

/// What a run's spans say about it, kept from its claim to its end.
#[derive(Debug, Clone)]
pub struct RunTrace {
    trace: Option<otel::TraceId>,
    run_id: String,
    assignment: String,
    crew: String,
    agent: String,
    attempt: i64,
    queued_at: Option<i64>,
    link: Option<SpanContext>,
}

fn link_to(c: &SpanContext) -> Link {
    Link { trace_id: c.trace_id, span_id: c.span_id, attributes: Vec::new() }
}

fn status_of(outcome: RunStatus, error: Option<&str>) -> Status {
    match outcome {
        RunStatus::Completed => Status::Unset,
        _ => Status::Error(error.unwrap_or(outcome.as_str()).to_string()),
    }
}

impl Telemetry {
    /// A claimed run starts: its queue wait is observed and its span sent;
    /// the returned value carries what its end needs.
    pub fn run_started(&self, c: &Claimed) -> RunTrace {
        let a = &c.assignment;
        let t = RunTrace {
            trace: context::trace_id(&c.run.id),
            run_id: c.run.id.clone(),
            assignment: a.public_id(),
            crew: a.crew.slug.clone(),
            agent: a.agent.slug.clone(),
            attempt: a.attempts,
            queued_at: a.queued_at,
            link: a.trace_link.as_deref().and_then(SpanContext::parse),
        };
        let started = c.run.started_at;
        if let Some(queued) = a.queued_at {
            self.latencies.queue_waited(started - queued, &c.run.id, started);
        }
        if let (Some(trace), Some(queued)) = (t.trace, t.queued_at)
            && self.tracer.samples_root(&trace)
        {
            self.tracer.record(|| otel::Span {
                trace_id: trace,
                span_id: context::new_span_id(),
                parent: Some(run::root(&trace)),
                name: "queue.wait".into(),
                kind: SpanKind::Internal,
                start_ns: otel::ns(queued),
                end_ns: otel::ns(started),
                attributes: vec![("crewship.crew", Value::Str(t.crew.clone()))],
                links: Vec::new(),
                status: Status::Unset,
            });
        }
        t
    }

    /// The context the run's agent continues (`TRACEPARENT`).
    pub fn agent_context(&self, t: &RunTrace) -> Option<String> {
        t.trace.map(|trace| self.tracer.run_context(&trace).header())
    }

    /// The run's end as this node recorded it: the duration histogram, and
    /// the trace's root and `run` spans.
    pub fn run_ended(&self, t: &RunTrace, run: &RunRow) {
        let Some(finished) = run.finished_at else {
            return;
        };
        self.latencies.run_ended(run.status, finished - run.started_at, &run.id, finished);
        let Some(trace) = t.trace.filter(|trace| self.tracer.samples_root(trace)) else {
            return;
        };
        let status = status_of(run.status, run.error.as_deref());
        self.tracer.record(|| otel::Span {
            trace_id: trace,
            span_id: run::root(&trace),
            parent: None,
            name: "assignment".into(),
            kind: SpanKind::Internal,
            start_ns: otel::ns(t.queued_at.unwrap_or(run.started_at)),
            end_ns: otel::ns(finished),
            attributes: vec![
                ("crewship.assignment.id", Value::Str(t.assignment.clone())),
                ("crewship.assignment.attempt", Value::Int(t.attempt)),
                ("crewship.crew", Value::Str(t.crew.clone())),
                ("crewship.agent", Value::Str(t.agent.clone())),
            ],
            links: t.link.iter().map(link_to).collect(),
            status: status.clone(),
        });
        self.tracer.record(|| {
            let mut attributes = vec![
                ("crewship.run.id", Value::Str(t.run_id.clone())),
                ("crewship.run.outcome", Value::Str(run.status.as_str().to_string())),
            ];
            attributes.extend(run.exit_code.map(|c| ("process.exit.code", Value::Int(c))));
            attributes.extend(run.node.as_ref().map(|n| ("crewship.node", Value::Str(n.id.clone()))));
            otel::Span {
                trace_id: trace,
                span_id: run::span(&trace),
                parent: Some(run::root(&trace)),
                name: "run".into(),
                kind: SpanKind::Internal,
                start_ns: otel::ns(run.started_at),
                end_ns: otel::ns(finished),
                attributes,
                links: Vec::new(),
                status,
            }
        });
    }

    /// What the assignment of step `idx` of `run` links to: its step's span.
    pub fn step_link(&self, run: &PipelineRunRow, idx: i64) -> Option<String> {
        let trace = run.trace_id.as_deref().and_then(context::trace_id)?;
        let sampled = self.tracer.samples_root(&trace);
        Some(SpanContext { trace_id: trace, span_id: pipeline::step(&trace, idx), sampled }.header())
    }

    /// A pipeline run ended: its span, and one per step that got an
    /// assignment (`steps`, in order).
    pub fn pipeline_ended(&self, run: &PipelineRunRow, steps: &[(i64, String, AssignmentRow)]) {
        let Some(trace) = run.trace_id.as_deref().and_then(context::trace_id) else {
            return;
        };
        if !self.tracer.samples_root(&trace) {
            return;
        }
        let end = run.finished_at.unwrap_or_else(crate::domain::time::now_ms);
        let root = pipeline::root(&trace);
        for (idx, step, a) in steps {
            self.tracer.record(|| {
                let mut attributes = vec![
                    ("crewship.pipeline.step", Value::Str(step.clone())),
                    ("crewship.assignment.id", Value::Str(a.public_id())),
                    ("crewship.assignment.status", Value::Str(a.status.as_str().to_string())),
                ];
                let run_trace = a.run_id.as_deref().and_then(context::trace_id);
                attributes.extend(a.run_id.clone().map(|r| ("crewship.run.id", Value::Str(r))));
                otel::Span {
                    trace_id: trace,
                    span_id: pipeline::step(&trace, *idx),
                    parent: Some(root),
                    name: "pipeline.step".into(),
                    kind: SpanKind::Internal,
                    start_ns: otel::ns(a.created_at),
                    end_ns: otel::ns(a.finished_at.unwrap_or(end)),
                    attributes,
                    links: run_trace
                        .map(|rt| Link { trace_id: rt, span_id: run::root(&rt), attributes: Vec::new() })
                        .into_iter()
                        .collect(),
                    status: Status::Unset,
                }
            });
        }
        self.tracer.record(|| otel::Span {
            trace_id: trace,
            span_id: root,
            parent: None,
            name: "pipeline.run".into(),
            kind: SpanKind::Internal,
            start_ns: otel::ns(run.started_at.unwrap_or(run.created_at)),
            end_ns: otel::ns(end),
            attributes: vec![
                ("crewship.pipeline", Value::Str(run.pipeline.clone())),
                ("crewship.pipeline_run.id", Value::Str(run.public_id())),
                ("crewship.pipeline_run.status", Value::Str(run.status.as_str().to_string())),
            ],
            links: run.trace_link.as_deref().and_then(SpanContext::parse).iter().map(link_to).collect(),
            status: match run.status {
                PipelineRunStatus::Completed => Status::Unset,
                s => Status::Error(run.reason.clone().unwrap_or_else(|| s.as_str().to_string())),
            },
        });
    }
}

/// The spans of a pipeline run's trace, named alike on every node.
mod pipeline {
    use crate::otel::context::{SpanId, TraceId, derived_span};

    pub fn root(trace: &TraceId) -> SpanId {
        derived_span(trace, "pipeline")
    }

    pub fn step(trace: &TraceId, idx: i64) -> SpanId {
        derived_span(trace, &format!("step/{idx}"))
    }
}
