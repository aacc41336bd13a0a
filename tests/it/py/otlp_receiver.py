"""An OTLP/HTTP trace receiver for the tests: accepts POST /v1/traces,
decodes the ExportTraceServiceRequest with the reference protobuf bindings
(opentelemetry-proto), and serves every span received as JSON at GET /spans.
`POST /fail?status=N` makes it answer N to exports until `POST /fail?status=0`;
`POST /stall` holds every export unanswered until `POST /release`.
Prints its port on the first line of stdout."""

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

lock = threading.Lock()
spans = []
requests = []
fail_with = [0]
released = threading.Event()
released.set()


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path != "/spans":
            return self.answer(404, b"{}")
        with lock:
            body = json.dumps({"spans": spans, "requests": requests}).encode()
        self.answer(200, body)

    def do_POST(self):
        url = urlparse(self.path)
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path == "/stall":
            released.clear()
            return self.answer(200, b"{}")
        if url.path == "/release":
            released.set()
            return self.answer(200, b"{}")
        if url.path == "/fail":
            fail_with[0] = int(parse_qs(url.query)["status"][0])
            return self.answer(200, b"{}")
        if url.path != "/v1/traces":
            return self.answer(404, b"{}")
        released.wait()
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        with lock:
            requests.append({"content_type": self.headers.get("Content-Type"),
                             "content_encoding": self.headers.get("Content-Encoding"),
                             "headers": {k.lower(): v for k, v in self.headers.items()},
                             "failed": fail_with[0] != 0})
        if fail_with[0]:
            return self.answer(fail_with[0], b"{}")
        req = ExportTraceServiceRequest()
        try:
            req.ParseFromString(data)
        except DecodeError as e:
            return self.answer(400, json.dumps({"error": str(e)}).encode())
        got = []
        for rs in req.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attributes(s.attributes),
                        "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in s.links],
                        "status": {"code": s.status.code, "message": s.status.message},
                        "resource": resource,
                        "scope": ss.scope.name,
                    })
        with lock:
            spans.extend(got)
        self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
