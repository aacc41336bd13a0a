//! Traces through a real OTLP receiver (`py/otlp_receiver.py`, which
//! decodes the daemon's protobuf with the reference bindings): the span
//! tree of a run from its queue to its agent's own span, links to callers,
//! pipelines, the sampler, and the bounds of the exporter.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{Daemon, PATIENCE};
use crate::tools::{self, eventually};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/py").join(name)
}

/// The test venv's Python, with opentelemetry-proto importable.
async fn python() -> Option<PathBuf> {
    let python = tools::python().await?;
    let ok = Command::new(&python)
        .args(["-c", "import opentelemetry.proto.collector.trace.v1.trace_service_pb2"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if ok { Some(python) } else { tools::missing("opentelemetry-proto", "pip install -r scripts/requirements.txt") }
}

struct Receiver {
    _child: Child,
    base: String,
    client: reqwest::Client,
}

impl Receiver {
    async fn start(python: &Path) -> Receiver {
        let mut child = Command::new(python)
            .arg(script("otlp_receiver.py"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(PATIENCE, lines.next_line()).await.expect("receiver port").unwrap().unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Receiver { _child: child, base: format!("http://127.0.0.1:{}", port.trim()), client }
    }

    async fn received(&self) -> Value {
        self.client.get(format!("{}/spans", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn spans(&self) -> Vec<Value> {
        self.received().await["spans"].as_array().cloned().unwrap_or_default()
    }

    /// Every span of `trace`, once the named ones have all arrived.
    async fn trace(&self, trace: &str, names: &[&str]) -> Vec<Value> {
        eventually(&format!("spans {names:?} of trace {trace}"), PATIENCE, || async {
            let spans: Vec<Value> = self.spans().await.into_iter().filter(|s| s["trace_id"] == trace).collect();
            names.iter().all(|n| spans.iter().any(|s| s["name"] == *n)).then_some(spans)
        })
        .await
    }

    async fn control(&self, path: &str) {
        let r = self.client.post(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

/// A daemon exporting to `r` within 50 ms of each span, plus `env`.
async fn traced_daemon(r: &Receiver, env: &[(&str, &str)]) -> Daemon {
    let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", r.base.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "50")];
    all.extend_from_slice(env);
    Daemon::start_with(&all).await
}

/// Submits an assignment carrying `traceparent` and waits for its end.
async fn run_with_traceparent(d: &Daemon, crew: &str, traceparent: &str) -> Value {
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let r = d
        .client()
        .post(d.url("/api/v1/assignments"))
        .header("authorization", d.bearer())
        .header("traceparent", traceparent)
        .json(&json!({"crew": crew, "agent": "worker", "task": "go"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let a: Value = r.json().await.unwrap();
    d.await_assignment(&mut ws, a["id"].as_str().unwrap(), &["completed", "failed", "cancelled"]).await
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_run_is_one_trace_from_its_queue_to_its_agents_own_span() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    let d = traced_daemon(
        &r,
        &[
            ("OTEL_SERVICE_NAME", "crewshipd-under-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=a%20b"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=crew%20one"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    )
    .await;
    assert!(d.log().contains(&format!("{}/v1/traces", r.base)), "the start-up log names the URL:\n{}", d.log());
    d.ok("/api/v1/crews", json!({"slug": "tr", "name": "T", "max_concurrent_agents": 1}), 201).await;
    let agent = json!({
        "slug": "worker", "name": "W",
        "command": [python.to_str().unwrap(), script("traced_agent.py").to_str().unwrap()],
        "env": {"OTLP_TEST_URL": format!("{}/v1/traces", r.base)},
    });
    d.ok("/api/v1/crews/tr/agents", agent, 201).await;
    let a = run_with_traceparent(&d, "tr", &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")).await;
    assert_eq!(a["status"], "completed", "{a}");
    let run_id = a["run_id"].as_str().unwrap();

    // The agent got the run's context: the trace id is the run id.
    let given: Value = serde_json::from_str(a["result_summary"].as_str().unwrap().trim()).unwrap();
    let tp = given["traceparent"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{run_id}-")) && tp.ends_with("-01"), "{tp}");

    let spans =
        r.trace(run_id, &["assignment", "queue.wait", "run", "agent.work", "POST /api/v1/llm-calls", "llm.call"]).await;
    let (root, wait, run) = (named(&spans, "assignment"), named(&spans, "queue.wait"), named(&spans, "run"));
    assert_eq!(root["parent_span_id"], "", "the run's trace starts at its root");
    assert_eq!(root["links"], json!([{"trace_id": CALLER_TRACE, "span_id": CALLER_SPAN}]), "a link, not a parent");
    assert_eq!(root["attributes"]["crewship.assignment.id"], a["id"]);
    assert_eq!(wait["parent_span_id"], root["span_id"]);
    assert_eq!(run["parent_span_id"], root["span_id"]);
    assert_eq!(run["attributes"]["crewship.run.outcome"], "completed");
    assert_eq!(run["attributes"]["process.exit.code"], 0);
    // The wait ends where the run starts; both sit inside the root.
    assert_eq!(wait["end"], run["start"]);
    assert_eq!(wait["start"], root["start"]);
    assert_eq!(run["end"], root["end"]);
    assert!(wait["start"].as_u64() <= wait["end"].as_u64());
    // TRACEPARENT names the run span: the agent's span is its child.
    assert_eq!(tp.split('-').nth(2).unwrap(), run["span_id"]);
    let own = named(&spans, "agent.work");
    assert_eq!(own["parent_span_id"], run["span_id"]);
    assert_eq!(own["resource"]["service.name"], "test-agent");
    // The agent's call with its run token joined the run's trace.
    let http = named(&spans, "POST /api/v1/llm-calls");
    assert_eq!(http["parent_span_id"], run["span_id"]);
    assert_eq!(http["kind"], 2, "a server span");
    assert_eq!(http["attributes"]["http.route"], "/api/v1/llm-calls");
    assert_eq!(http["attributes"]["http.response.status_code"], 201);
    let call = named(&spans, "llm.call");
    assert_eq!(call["parent_span_id"], http["span_id"]);
    let at = &call["attributes"];
    assert_eq!(at["gen_ai.provider.name"], "anthropic");
    assert_eq!(at["gen_ai.request.model"], "claude-test");
    assert_eq!(at["gen_ai.usage.input_tokens"], 120);
    assert_eq!(at["gen_ai.usage.output_tokens"], 30);
    assert_eq!(at["crewship.llm.cost_usd"], 0.25);
    assert_eq!(call["end"].as_u64().unwrap() - call["start"].as_u64().unwrap(), 40_000_000);

    // The POST that created the assignment is a server span in the caller's trace.
    let caller = r.trace(CALLER_TRACE, &["POST /api/v1/assignments"]).await;
    let post = named(&caller, "POST /api/v1/assignments");
    assert_eq!(post["parent_span_id"], CALLER_SPAN);
    assert_eq!(post["attributes"]["http.response.status_code"], 201);

    // What the daemon's resource and requests say.
    let res = &root["resource"];
    assert_eq!(res["service.name"], "crewshipd-under-test");
    assert_eq!(res["deployment.environment"], "test");
    assert_eq!(res["team"], "a b");
    assert_eq!(root["scope"], "crewshipd");
    let requests = r.received().await["requests"].as_array().cloned().unwrap();
    let ours: Vec<&Value> = requests.iter().filter(|q| q["headers"]["x-tenant"] == "crew one").collect();
    assert!(!ours.is_empty(), "{requests:#?}");
    assert!(ours.iter().all(|q| q["content_type"] == "application/x-protobuf" && q["content_encoding"] == "gzip"));
    // The agent did not inherit the daemon's headers or service name.
    assert_ne!(own["resource"]["service.name"], "crewshipd-under-test");
}

#[tokio::test]
async fn a_pipeline_runs_span_parents_its_steps_and_links_their_runs() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    let d = traced_daemon(&r, &[]).await;
    d.crew_with_agent("pl", 2, "cat").await;
    let step = |id: &str, task: &str| json!({"id": id, "crew": "pl", "agent": "worker", "task": task});
    let body =
        json!({"slug": "two", "name": "Two", "steps": [step("a", "first"), step("b", "then {{steps.a.output}}")]});
    d.ok("/api/v1/pipelines", body, 201).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["pipeline_runs"]).await;
    let run = d.ok("/api/v1/pipelines/two/runs", json!({}), 201).await;
    let id = run["id"].as_str().unwrap();
    ws.next_matching(|f| {
        f["channel"] == "pipeline_runs" && f["data"]["id"] == id && f["data"]["status"] == "completed"
    })
    .await;
    let all = eventually("the pipeline's spans", PATIENCE, || async {
        let spans = r.spans().await;
        let root =
            spans.iter().find(|s| s["name"] == "pipeline.run" && s["attributes"]["crewship.pipeline_run.id"] == id)?;
        let trace = root["trace_id"].clone();
        let mine: Vec<Value> = spans.iter().filter(|s| s["trace_id"] == trace).cloned().collect();
        (mine.iter().filter(|s| s["name"] == "pipeline.step").count() == 2).then_some(mine)
    })
    .await;
    let root = named(&all, "pipeline.run");
    assert_eq!(root["parent_span_id"], "");
    assert_eq!(root["attributes"]["crewship.pipeline_run.status"], "completed");
    for step in all.iter().filter(|s| s["name"] == "pipeline.step") {
        assert_eq!(step["parent_span_id"], root["span_id"], "{step}");
        let run_id = step["attributes"]["crewship.run.id"].as_str().unwrap();
        let links = step["links"].as_array().unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0]["trace_id"], run_id, "the step links to its run's own trace");
        // And the run's root links back to the step.
        let run_spans = r.trace(run_id, &["assignment", "run"]).await;
        let run_root = named(&run_spans, "assignment");
        assert_eq!(links[0]["span_id"], run_root["span_id"]);
        assert_eq!(run_root["links"], json!([{"trace_id": root["trace_id"], "span_id": step["span_id"]}]));
    }
}

#[tokio::test]
async fn a_zero_ratio_sampler_exports_nothing_and_tells_agents_so() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    let d = traced_daemon(&r, &[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0")]).await;
    d.crew_with_agent("zr", 1, "printf %s \"$TRACEPARENT\"").await;
    let a = run_with_traceparent(&d, "zr", &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")).await;
    let tp = a["result_summary"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{}-", a["run_id"].as_str().unwrap())) && tp.ends_with("-00"), "{tp}");
    d.llm_call("openai", 0.5).await;
    // Shutdown sends whatever is queued: after it, nothing may have come.
    let (status, _dir) = d.terminate().await;
    assert!(status.success());
    let got = r.received().await;
    assert_eq!(got["requests"], json!([]), "{got}");
}

/// Without `OTEL_EXPORTER_OTLP_COMPRESSION`, bodies go uncompressed.
#[tokio::test]
async fn export_bodies_are_plain_unless_gzip_is_asked_for() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    let d = traced_daemon(&r, &[]).await;
    d.get("/api/v1/nodes").await;
    let got = eventually("an export", PATIENCE, || async {
        let got = r.received().await;
        got["requests"].as_array().is_some_and(|a| !a.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got["requests"][0]["content_encoding"], Value::Null, "{got}");
    assert!(r.spans().await.iter().any(|s| s["name"] == "GET /api/v1/nodes"));
}

#[tokio::test]
async fn without_an_endpoint_agents_still_get_a_context() {
    let d = Daemon::start().await;
    d.crew_with_agent("ne", 1, "printf %s \"$TRACEPARENT\"").await;
    let a = d.run_to_end("ne", "worker", "go").await;
    let tp = a["result_summary"].as_str().unwrap();
    assert!(tp.starts_with(&format!("00-{}-", a["run_id"].as_str().unwrap())) && tp.ends_with("-01"), "{tp}");
    assert!(d.log().contains("traces are off"), "{}", d.log());
}

fn dropped(page: &str) -> f64 {
    tools::parse_page(page).must("crewshipd_otlp_spans_dropped_total", None)
}

#[tokio::test]
async fn failed_exports_are_counted_and_logged_once_a_minute() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    r.control("/fail?status=503").await;
    let d = traced_daemon(&r, &[("CREWSHIP_METRICS_LIVE_WINDOW", "0s")]).await;
    for _ in 0..5 {
        d.get("/api/v1/crews").await;
        // Each refused batch is counted as soon as its answer is in.
        let before = dropped(&d.metrics().await);
        eventually("a refused batch counted", PATIENCE, || async {
            (dropped(&d.metrics().await) > before).then_some(())
        })
        .await;
    }
    let failures = d.log().matches("could not export spans").count();
    assert_eq!(failures, 1, "one log line for many failures within a minute:\n{}", d.log());
    // The receiver recovers: spans flow again.
    r.control("/fail?status=0").await;
    d.request(Method::GET, "/api/v1/nodes", None).await;
    // A hostile path is cut to its first 256 bytes in the span.
    let long = format!("/{}", "x".repeat(4000));
    assert_eq!(d.request(Method::GET, &long, None).await.status, 404);
    let unmatched = eventually("spans after recovery", PATIENCE, || async {
        let spans = r.spans().await;
        let ok = spans.iter().any(|s| s["name"] == "GET /api/v1/nodes");
        spans.into_iter().find(|s| s["name"] == "GET").filter(|_| ok)
    })
    .await;
    assert_eq!(unmatched["attributes"]["url.path"].as_str().unwrap(), &long[..256]);
    assert_eq!(unmatched["attributes"].get("http.route"), None, "no route matched");
}

#[tokio::test]
async fn a_full_export_queue_drops_spans_without_waiting() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    r.control("/stall").await;
    let d = traced_daemon(
        &r,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
            ("CREWSHIP_METRICS_LIVE_WINDOW", "0s"),
        ],
    )
    .await;
    // The first span's export hangs; the queue holds 4 more; the rest of
    // these 20 requests (and every scrape's span) must be dropped, and
    // every request is still answered.
    for _ in 0..20 {
        assert_eq!(d.get("/api/v1/crews").await.status, 200);
    }
    let page = d.metrics().await;
    assert!(dropped(&page) >= 15.0, "{page}");
    r.control("/release").await;
}

/// docs/tracing.md's setup line, run: its variables, with the receiver's
/// address for the documented one.
#[tokio::test]
async fn the_documented_setup_exports() {
    let Some(python) = python().await else { return };
    let r = Receiver::start(&python).await;
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/tracing.md")).unwrap();
    let line = doc.split("```sh\n").nth(1).and_then(|b| b.lines().next()).expect("a sh block").to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.last(), Some(&"crewshipd"), "{line}");
    let env: Vec<(String, String)> = words[..words.len() - 1]
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap();
            (k.to_string(), v.replace("http://127.0.0.1:4318", &r.base))
        })
        .collect();
    assert!(env.iter().any(|(k, v)| k == "OTEL_EXPORTER_OTLP_ENDPOINT" && *v == r.base), "{line}");
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("OTEL_BSP_SCHEDULE_DELAY", "50"));
    let d = Daemon::start_with(&all).await;
    d.get("/api/v1/nodes").await;
    let span = eventually("the documented setup's span", PATIENCE, || async {
        r.spans().await.into_iter().find(|s| s["name"] == "GET /api/v1/nodes")
    })
    .await;
    let service = env.iter().find(|(k, _)| k == "OTEL_SERVICE_NAME").map(|(_, v)| v.as_str());
    assert_eq!(span["resource"]["service.name"].as_str(), service);
    assert!(d.log().contains(&format!("url={}/v1/traces", r.base)), "{}", d.log());
}
