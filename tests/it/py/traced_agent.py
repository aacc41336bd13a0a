"""A test agent that continues its run's trace, as an agent with its own
OpenTelemetry SDK would: it reads TRACEPARENT, exports one span of its own
(child of the context it was given) to OTLP_TEST_URL as protobuf, records
an LLM call with its run token, and prints what it was given."""

import json
import os
import secrets
import time
import urllib.request

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

traceparent = os.environ["TRACEPARENT"]
_, trace_id, parent_id, flags = traceparent.split("-")

now = time.time_ns()
req = ExportTraceServiceRequest()
rs = req.resource_spans.add()
kv = rs.resource.attributes.add()
kv.key, kv.value.string_value = "service.name", "test-agent"
span = rs.scope_spans.add().spans.add()
span.trace_id = bytes.fromhex(trace_id)
span.span_id = secrets.token_bytes(8)
span.parent_span_id = bytes.fromhex(parent_id)
span.name = "agent.work"
span.kind = 1
span.start_time_unix_nano = now - 1_000_000
span.end_time_unix_nano = now
urllib.request.urlopen(urllib.request.Request(
    os.environ["OTLP_TEST_URL"], data=req.SerializeToString(),
    headers={"Content-Type": "application/x-protobuf"}, method="POST")).read()

call = {"provider": "anthropic", "model": "claude-test", "input_tokens": 120, "output_tokens": 30,
        "cost_usd": 0.25, "duration_ms": 40}
urllib.request.urlopen(urllib.request.Request(
    os.environ["CREWSHIP_API_URL"] + "/api/v1/llm-calls", data=json.dumps(call).encode(),
    headers={"Content-Type": "application/json",
             "Authorization": "Bearer " + os.environ["CREWSHIP_RUN_TOKEN"]}, method="POST")).read()
print(json.dumps({"traceparent": traceparent, "agent_span": span.span_id.hex()}))
