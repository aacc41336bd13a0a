-- Trace context (docs/tracing.md): the `traceparent` of whatever created
-- an assignment or a pipeline run, which their traces link to, and a
-- pipeline run's own trace id.
ALTER TABLE assignments ADD COLUMN trace_link TEXT;
ALTER TABLE pipeline_runs ADD COLUMN trace_id TEXT;
ALTER TABLE pipeline_runs ADD COLUMN trace_link TEXT;
