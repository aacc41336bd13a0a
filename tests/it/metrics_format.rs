//! The /metrics page over the real endpoint (METRICS.md §1, §3, §4):
//! formats, negotiation, compression, naming, zero-filling, escaping and
//! the provider cap, checked by our own strict reader and by the real
//! validators (promtool, prometheus_client's two parsers).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::json;

use crate::common::Daemon;
use crate::tools::{
    self, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_ACCEPT, Page, PyParser, TEXT_CONTENT_TYPE, addr_of, parse_page,
    raw_request,
};

/// (family name as 0.0.4 prints it, type): everything METRICS.md names.
const FAMILIES: &[(&str, &str)] = &[
    ("crewshipd_uptime_seconds", "gauge"),
    ("crewshipd_goroutines", "gauge"),
    ("crewshipd_memory_alloc_bytes", "gauge"),
    ("crewshipd_memory_sys_bytes", "gauge"),
    ("crewshipd_gc_runs_total", "counter"),
    ("crewshipd_ws_connections", "gauge"),
    ("process_cpu_seconds_total", "counter"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("crewshipd_build_info", "gauge"),
    ("crewshipd_assignments", "gauge"),
    ("crewshipd_assignment_queue_depth", "gauge"),
    ("crewshipd_assignment_queue_crews", "gauge"),
    ("crewshipd_assignment_queue_depth_max", "gauge"),
    ("crewshipd_assignment_queue_oldest_age_seconds", "gauge"),
    ("crewshipd_pipeline_runs", "gauge"),
    ("crewshipd_agent_run_events_total", "counter"),
    ("crewshipd_llm_calls_total", "counter"),
    ("crewshipd_llm_cost_usd_total", "counter"),
    ("crewshipd_llm_tokens_total", "counter"),
    ("crewshipd_containers_tracked", "gauge"),
    ("crewshipd_containers_reporting", "gauge"),
    ("crewshipd_db_migration_version", "gauge"),
    ("crewshipd_metrics_collector_up", "gauge"),
    ("crewshipd_metrics_collector_errors_total", "counter"),
    ("crewshipd_metrics_snapshot_age_seconds", "gauge"),
    ("crewshipd_metrics_snapshot_computations_total", "counter"),
    ("crewshipd_run_duration_seconds", "histogram"),
    ("crewshipd_assignment_queue_wait_seconds", "histogram"),
    ("crewshipd_http_requests_total", "counter"),
    ("crewshipd_http_request_duration_seconds", "histogram"),
    ("crewshipd_otlp_spans_dropped_total", "counter"),
];

const ASSIGNMENT_STATUSES: &[&str] = &["pending", "queued", "running", "completed", "failed", "cancelled", "other"];
const PIPELINE_STATUSES: &[&str] =
    &["queued", "running", "completed", "failed", "cancelled", "dry_run", "interrupted", "other"];
const RUN_EVENTS: &[&str] = &["started", "completed", "failed", "cancelled", "timeout"];

async fn scrape(d: &Daemon, headers: &[(reqwest::header::HeaderName, &str)]) -> reqwest::Response {
    let mut req = d.client().get(d.url("/metrics"));
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let r = req.send().await.expect("scrape");
    assert_eq!(r.status(), 200);
    r
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

async fn text_page(d: &Daemon) -> String {
    let r = scrape(d, &[]).await;
    assert_eq!(content_type(&r), TEXT_CONTENT_TYPE);
    r.text().await.unwrap()
}

async fn om_page(d: &Daemon) -> String {
    let r = scrape(d, &[(ACCEPT, PROMETHEUS_ACCEPT)]).await;
    assert_eq!(content_type(&r), OPENMETRICS_CONTENT_TYPE);
    r.text().await.unwrap()
}

/// Structural rules every text-format page must meet.
fn check_text_page(text: &str, hostname: &str) -> Page {
    assert!(text.ends_with('\n'), "page must end with a newline");
    assert!(!text.contains("# EOF"), "# EOF in the 0.0.4 format");
    let page = parse_page(text);
    for (name, kind) in FAMILIES {
        assert_eq!(page.types.get(*name).map(String::as_str), Some(*kind), "TYPE of {name}:\n{text}");
    }
    check_help_and_types(&page, text);
    for s in &page.samples {
        // 0.0.4: the family is named like its samples (a histogram's, less
        // their suffix).
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|x| s.name.strip_suffix(x).filter(|f| page.types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(&s.name);
        assert!(page.types.contains_key(family), "sample {} has no TYPE of its own:\n{text}", s.name);
        assert!(s.exemplar.is_none(), "an exemplar in the 0.0.4 format: {}", s.key());
        if page.types[family] == "counter" {
            assert!(s.name.ends_with("_total"), "counter {} without _total", s.name);
        }
        check_common_sample(s, hostname);
    }
    page
}

fn check_help_and_types(page: &Page, text: &str) {
    for name in &page.family_order {
        let help = page.help.get(name).unwrap_or_else(|| panic!("no HELP for {name}:\n{text}"));
        assert!(!help.trim().is_empty(), "empty HELP for {name}");
        assert!(!help.contains('\\'), "HELP of {name} has a backslash");
    }
    let helped: BTreeSet<&String> = page.help.keys().collect();
    let typed: BTreeSet<&String> = page.types.keys().collect();
    assert_eq!(helped, typed, "HELP and TYPE name different families");
    // HELP comes right before TYPE, and samples follow their TYPE.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                i > 0 && lines[i - 1].starts_with(&format!("# HELP {name} ")),
                "TYPE {name} is not preceded by its HELP"
            );
        }
    }
}

fn check_common_sample(s: &tools::Line, hostname: &str) {
    assert_eq!(s.label("hostname"), Some(hostname), "series {} without hostname={hostname:?}", s.key());
    let v = s.raw_value.as_str();
    let plain = v.strip_prefix('-').unwrap_or(v);
    let decimal = !plain.is_empty()
        && plain.split('.').count() <= 2
        && plain.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    assert!(decimal || matches!(v, "+Inf" | "-Inf" | "NaN"), "value of {} is not plain decimal: {v:?}", s.key());
    // Every label value is printed once per label name.
    let names: BTreeSet<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names.len(), s.labels.len(), "duplicate label on {}", s.key());
}

/// Values of a labelled family as label -> value.
fn by_label(page: &Page, name: &str, label: &str) -> BTreeMap<String, f64> {
    page.series(name)
        .into_iter()
        .map(|s| (s.label(label).unwrap_or_else(|| panic!("{} without {label}", s.key())).to_string(), s.value()))
        .collect()
}

#[tokio::test]
async fn text_format_by_default_zero_filled_on_an_empty_store() {
    let d = Daemon::start().await;
    let text = text_page(&d).await;
    let page = check_text_page(&text, "test-host");

    // Closed label sets, all present and zero on an empty store.
    let cases = [
        ("crewshipd_assignments", "status", ASSIGNMENT_STATUSES),
        ("crewshipd_pipeline_runs", "status", PIPELINE_STATUSES),
        ("crewshipd_agent_run_events_total", "event", RUN_EVENTS),
    ];
    for (name, label, closed) in cases {
        let got = by_label(&page, name, label);
        let want: BTreeMap<String, f64> = closed.iter().map(|l| (l.to_string(), 0.0)).collect();
        assert_eq!(got, want, "{name}");
    }
    for name in [
        "crewshipd_assignment_queue_depth",
        "crewshipd_assignment_queue_crews",
        "crewshipd_assignment_queue_depth_max",
        "crewshipd_assignment_queue_oldest_age_seconds",
        "crewshipd_containers_tracked",
        "crewshipd_containers_reporting",
        "crewshipd_ws_connections",
    ] {
        assert_eq!(page.must(name, None), 0.0, "{name}");
        assert_eq!(page.series(name).len(), 1, "{name}");
    }
    // No LLM calls yet: the rate card's providers, at zero from the first
    // scrape on (so their first increase is seen), and no other.
    for name in ["crewshipd_llm_calls_total", "crewshipd_llm_cost_usd_total"] {
        let got = by_label(&page, name, "provider");
        let want: BTreeMap<String, f64> = ["anthropic", "openai", "google"].map(|p| (p.to_string(), 0.0)).into();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(page.series("crewshipd_llm_tokens_total").len(), 3 * 4);
    assert!(page.series("crewshipd_llm_tokens_total").iter().all(|s| s.value() == 0.0));

    // The migration version: the newest migration, as a plain integer.
    let version = tools::latest_migration_version();
    let line = format!("crewshipd_db_migration_version{{hostname=\"test-host\"}} {version}\n");
    assert!(text.contains(&line), "want {line:?} in:\n{text}");

    // Build info is 1 with version and revision.
    let build = page.series("crewshipd_build_info");
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].value(), 1.0);
    assert_eq!(build[0].label("version"), Some(env!("CARGO_PKG_VERSION")));
    assert!(build[0].label("revision").is_some_and(|r| !r.is_empty()));

    // Every collector is up, with no errors.
    for c in page.series("crewshipd_metrics_collector_up") {
        assert_eq!(c.value(), 1.0, "{}", c.key());
    }
    assert!(page.series("crewshipd_metrics_collector_up").len() >= 6);
    for c in page.series("crewshipd_metrics_collector_errors_total") {
        assert_eq!(c.value(), 0.0, "{}", c.key());
    }
    // Plausible process figures.
    assert!(page.must("crewshipd_uptime_seconds", None) > 0.0);
    assert!(page.must("crewshipd_goroutines", None) >= 1.0);
    assert!(page.must("crewshipd_memory_alloc_bytes", None) > 0.0);
    assert!(page.must("crewshipd_memory_sys_bytes", None) >= page.must("crewshipd_memory_alloc_bytes", None));
    assert!(page.must("process_resident_memory_bytes", None) > 0.0);
    assert!(page.must("process_open_fds", None) >= 3.0);
    assert!(page.must("process_start_time_seconds", None) > 1.6e9);

    // The page is deterministic: same series, same label order, same
    // DB-derived values on a second scrape inside the cache window.
    let again = parse_page(&text_page(&d).await);
    let keys = |p: &Page| -> Vec<String> {
        p.samples
            .iter()
            .map(|s| {
                let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}}", s.name, labels.join(","))
            })
            .collect()
    };
    assert_eq!(keys(&page), keys(&again));
}

#[tokio::test]
async fn hostname_label_follows_the_environment() {
    let d = Daemon::start_with(&[("CREWSHIP_HOSTNAME", "node-7.example")]).await;
    check_text_page(&text_page(&d).await, "node-7.example");
    drop(d);
    // Unset (empty): the OS hostname.
    let os = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let d = Daemon::start_with(&[("CREWSHIP_HOSTNAME", "")]).await;
    check_text_page(&text_page(&d).await, os.trim());
}

#[tokio::test]
async fn openmetrics_when_prometheus_asks_for_it() {
    let d = Daemon::start().await;
    let text = om_page(&d).await;
    assert!(text.ends_with("# EOF\n"), "# EOF must be last:\n{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    let page = parse_page(&text);
    check_help_and_types(&page, &text);
    for (name, kind) in FAMILIES {
        // Counter families are named without _total, their samples with it.
        let family = if *kind == "counter" { name.strip_suffix("_total").unwrap() } else { name };
        assert_eq!(page.types.get(family).map(String::as_str), Some(*kind), "TYPE of {family}:\n{text}");
        assert!(!page.types.contains_key(&format!("{family}_total")) || *kind != "counter");
    }
    for s in &page.samples {
        check_common_sample(s, "test-host");
        let family = s.name.strip_suffix("_total").filter(|f| page.types.get(*f).is_some_and(|t| t == "counter"));
        let histogram = ["_bucket", "_sum", "_count"]
            .iter()
            .any(|x| s.name.strip_suffix(x).is_some_and(|f| page.types.get(f).is_some_and(|t| t == "histogram")));
        assert!(
            family.is_some() || histogram || page.types.get(&s.name).is_some_and(|t| t == "gauge"),
            "sample {} belongs to no family",
            s.name
        );
    }
    // Other Accept headers get the text format.
    for accept in
        ["text/plain;version=0.0.4", "*/*", "application/json", "application/openmetrics-text;q=0.1, text/plain"]
    {
        let r = scrape(&d, &[(ACCEPT, accept)]).await;
        assert_eq!(content_type(&r), TEXT_CONTENT_TYPE, "Accept: {accept}");
    }
    let r = scrape(&d, &[(ACCEPT, "application/openmetrics-text; version=1.0.0")]).await;
    assert_eq!(content_type(&r), OPENMETRICS_CONTENT_TYPE);
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut out).expect("a valid gzip body");
    out
}

/// Whether a series describes this process as it goes (not the DB
/// block): the process figures, and what each request and run observes.
fn is_live(name: &str) -> bool {
    let live = [
        "crewshipd_uptime_seconds",
        "crewshipd_goroutines",
        "crewshipd_memory_alloc_bytes",
        "crewshipd_memory_sys_bytes",
        "crewshipd_gc_runs_total",
        "crewshipd_ws_connections",
        "crewshipd_metrics_snapshot_age_seconds",
        "crewshipd_metrics_snapshot_computations_total",
        "crewshipd_otlp_spans_dropped_total",
    ];
    let observed = ["process_", "crewshipd_http_", "crewshipd_run_duration_", "crewshipd_assignment_queue_wait_"];
    live.contains(&name) || observed.iter().any(|p| name.starts_with(p))
}

/// The DB-derived part of a page (identical inside one cache window).
fn db_block(page: &Page) -> Vec<(String, String)> {
    page.samples.iter().filter(|s| !is_live(&s.name)).map(|s| (s.key(), s.raw_value.clone())).collect()
}

#[tokio::test]
async fn gzip_when_asked() {
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "60s")]).await;
    d.ok(
        "/api/v1/llm-calls",
        json!({"provider": "anthropic", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5}),
        201,
    )
    .await;
    for (accept, ctype) in [(None, TEXT_CONTENT_TYPE), (Some(PROMETHEUS_ACCEPT), OPENMETRICS_CONTENT_TYPE)] {
        let mut plain_h = vec![];
        if let Some(a) = accept {
            plain_h.push((ACCEPT, a));
        }
        let plain = scrape(&d, &plain_h).await.text().await.unwrap();
        let mut gz_h = plain_h.clone();
        gz_h.push((ACCEPT_ENCODING, "gzip"));
        let r = scrape(&d, &gz_h).await;
        assert_eq!(content_type(&r), ctype);
        assert_eq!(r.headers().get(CONTENT_ENCODING).map(|v| v.to_str().unwrap()), Some("gzip"), "{:?}", r.headers());
        let bytes = r.bytes().await.unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "not a gzip stream");
        let unzipped = gunzip(&bytes);
        let (a, b) = (parse_page(&plain), parse_page(&unzipped));
        assert_eq!(a.family_order, b.family_order);
        assert_eq!(a.help, b.help);
        assert_eq!(db_block(&a), db_block(&b), "same snapshot, same DB block");
        // The same series, but for the requests this test itself made.
        let keys = |p: &Page| {
            p.samples.iter().filter(|s| !s.name.starts_with("crewshipd_http_")).map(|s| s.key()).collect::<Vec<_>>()
        };
        assert_eq!(keys(&a), keys(&b));
        assert_eq!(b.must("crewshipd_llm_cost_usd_total", Some(("provider", "anthropic"))), 0.5);
    }
}

#[tokio::test]
async fn head_has_headers_and_no_body() {
    let d = Daemon::start().await;
    let addr = addr_of(&d.base);
    for (accept, ctype) in
        [(vec![], TEXT_CONTENT_TYPE), (vec![("Accept", PROMETHEUS_ACCEPT)], OPENMETRICS_CONTENT_TYPE)]
    {
        let r = raw_request(addr, "HEAD", "/metrics", &accept).await;
        assert_eq!(r.status(), 200, "{}", String::from_utf8_lossy(&r.raw));
        assert_eq!(r.header("content-type"), Some(ctype));
        assert!(r.body.is_empty(), "HEAD body: {:?}", String::from_utf8_lossy(&r.body));
    }
}

/// Some real data on the page: runs, pipelines, assignments, LLM calls.
async fn populate(d: &Daemon) {
    d.crew_with_agent("okcrew", 2, "echo done").await;
    d.run_to_end("okcrew", "worker", "t1").await;
    d.crew_with_agent("badcrew", 2, "exit 3").await;
    let failed = d.run_to_end("badcrew", "worker", "t2").await;
    assert_eq!(failed["status"], "failed");
    let run = d.ok("/api/v1/runs", json!({"trigger": "external"}), 201).await;
    let id = run["id"].as_str().unwrap();
    let r = d.patch(&format!("/api/v1/runs/{id}"), json!({"status": "timeout"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    d.ok(
        "/api/v1/pipelines",
        json!({"slug": "pipe", "name": "P", "steps": [{"id": "s1", "crew": "okcrew", "agent": "worker", "task": "x"}]}),
        201,
    )
    .await;
    d.ok("/api/v1/pipelines/pipe/runs", json!({"dry_run": true}), 201).await;
    for (p, cost) in [("Anthropic", 1.25), ("openai", 0.0000001), ("anthropic", 2e6)] {
        d.ok(
            "/api/v1/llm-calls",
            json!({"provider": p, "model": "m", "input_tokens": 10, "output_tokens": 5, "cost_usd": cost}),
            201,
        )
        .await;
    }
}

#[tokio::test]
async fn real_validators_accept_both_formats() {
    let promtool = tools::promtool();
    let python = tools::python().await;
    let d = Daemon::start().await;
    populate(&d).await;
    let text = text_page(&d).await;
    let page = check_text_page(&text, "test-host");
    let om = om_page(&d).await;

    // The data we wrote is on the page, in plain decimal.
    assert_eq!(page.must("crewshipd_agent_run_events_total", Some(("event", "started"))), 3.0);
    assert_eq!(page.must("crewshipd_agent_run_events_total", Some(("event", "failed"))), 1.0);
    assert_eq!(page.must("crewshipd_agent_run_events_total", Some(("event", "timeout"))), 1.0);
    assert_eq!(page.must("crewshipd_pipeline_runs", Some(("status", "dry_run"))), 1.0);
    assert!(
        text.contains("crewshipd_llm_cost_usd_total{hostname=\"test-host\",provider=\"anthropic\"} 2000001.25\n"),
        "{text}"
    );
    assert!(
        text.contains("crewshipd_llm_cost_usd_total{hostname=\"test-host\",provider=\"openai\"} 0.0000001\n"),
        "{text}"
    );

    if let Some(promtool) = &promtool {
        tools::assert_promtool_clean(promtool, &text).await;
        // An empty store is clean too.
        let empty = Daemon::start().await;
        tools::assert_promtool_clean(promtool, &text_page(&empty).await).await;
    }
    if let Some(python) = &python {
        let from_om = tools::python_parse(python, PyParser::OpenMetrics, &om).await;
        let from_text = tools::python_parse(python, PyParser::Text, &text).await;
        for samples in [&from_om, &from_text] {
            let started = samples
                .iter()
                .find(|s| {
                    s.name == "crewshipd_agent_run_events_total"
                        && s.labels.get("event").is_some_and(|e| e == "started")
                })
                .expect("started events parsed");
            assert_eq!(started.value(), 3.0);
            assert!(samples.iter().all(|s| s.labels.get("hostname").is_some_and(|h| h == "test-host")));
        }
        // The strict parser saw counters as counters.
        let kinds: BTreeMap<&str, &str> = from_om.iter().map(|s| (s.family.as_str(), s.kind.as_str())).collect();
        assert_eq!(kinds.get("crewshipd_agent_run_events"), Some(&"counter"));
        assert_eq!(kinds.get("crewshipd_llm_cost_usd"), Some(&"counter"));
        assert_eq!(kinds.get("crewshipd_db_migration_version"), Some(&"gauge"));
        let version = from_om.iter().find(|s| s.name == "crewshipd_db_migration_version").unwrap();
        assert_eq!(version.value() as i64, tools::latest_migration_version());
    }
}

/// Provider names a client may send, each a fixed point of the daemon's
/// normalization (trimmed, lower-case) so the label must equal it exactly.
const HOSTILE: &[&str] = &[
    "quote\"d",
    "back\\slash",
    "new\nline",
    "tab\there",
    "ünïcödé-日本-😀",
    "all\"of\\them\n\tü",
    "trailing-backslash\\",
    "{curly},=\"x\"",
    "carriage\rreturn",
    "ctrl\u{1}\u{7f}-bidi\u{202e}-zw\u{200b}",
];

#[tokio::test]
async fn hostile_provider_names_round_trip() {
    let promtool = tools::promtool();
    let python = tools::python().await;
    let d = Daemon::start().await;
    for (i, p) in HOSTILE.iter().enumerate() {
        let cost = (i + 1) as f64 * 0.25;
        d.ok(
            "/api/v1/llm-calls",
            json!({"provider": p, "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": cost}),
            201,
        )
        .await;
    }
    let text = text_page(&d).await;
    let om = om_page(&d).await;
    // The rate card's providers are there too, at zero.
    let uncalled = ["anthropic", "openai", "google"].map(|p| (p.to_string(), (0.0, 0.0)));
    let want: BTreeMap<String, (f64, f64)> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, p)| (p.to_string(), (1.0, (i + 1) as f64 * 0.25)))
        .chain(uncalled)
        .collect();

    // Our strict reader (unescapes exactly three sequences).
    for body in [&text, &om] {
        let page = parse_page(body);
        let calls = by_label(&page, "crewshipd_llm_calls_total", "provider");
        let cost = by_label(&page, "crewshipd_llm_cost_usd_total", "provider");
        let got: BTreeMap<String, (f64, f64)> = calls.iter().map(|(k, v)| (k.clone(), (*v, cost[k]))).collect();
        assert_eq!(got, want, "page:\n{body}");
        // One physical line per series.
        assert_eq!(page.series("crewshipd_llm_calls_total").len(), HOSTILE.len() + 3);
    }
    if let Some(promtool) = &promtool {
        tools::assert_promtool_clean(promtool, &text).await;
    }
    if let Some(python) = &python {
        for (parser, body) in [(PyParser::OpenMetrics, &om), (PyParser::Text, &text)] {
            let samples = tools::python_parse(python, parser, body).await;
            let mut got: BTreeMap<String, (f64, f64)> = BTreeMap::new();
            for s in &samples {
                let Some(p) = s.labels.get("provider") else { continue };
                let e = got.entry(p.clone()).or_default();
                match s.name.as_str() {
                    "crewshipd_llm_calls_total" => e.0 = s.value(),
                    "crewshipd_llm_cost_usd_total" => e.1 = s.value(),
                    // Its own test checks the values; here the labels parse.
                    "crewshipd_llm_tokens_total" => {}
                    other => panic!("provider label on {other}"),
                }
            }
            assert_eq!(got, want, "{parser:?} parser");
        }
    }
}

#[tokio::test]
async fn provider_label_set_is_capped_at_25() {
    let d = Daemon::start().await;
    // 100 distinct providers in order of first appearance; every even one
    // is written a second time in upper case (the same provider), and one
    // is literally "Other". Costs are whole cents, tracked in nano-USD.
    let mut calls: Vec<(String, i64)> = Vec::new();
    for i in 0..100 {
        let name = if i == 3 { "Other".to_string() } else { format!("prov-{i:02}") };
        let cost_nanos = (i as i64 + 1) * 10_000_000;
        calls.push((name.clone(), cost_nanos));
        if i % 2 == 0 {
            calls.push((name.to_uppercase(), cost_nanos + 1_000_000));
        }
    }
    // The rate card's providers take the first places, in its order, at
    // zero from the start (METRICS.md §7).
    let mut own: Vec<String> = ["anthropic", "openai", "google"].map(String::from).to_vec();
    let mut want: BTreeMap<String, (i64, i64)> = own.iter().map(|p| (p.clone(), (0, 0))).collect();
    for (name, nanos) in &calls {
        let norm = name.to_lowercase();
        let label = if norm == "other" {
            "other".to_string()
        } else if own.contains(&norm) || own.len() < 24 {
            if !own.contains(&norm) {
                own.push(norm.clone());
            }
            norm
        } else {
            "other".to_string()
        };
        let e = want.entry(label).or_default();
        e.0 += 1;
        e.1 += nanos;
        let usd = *nanos as f64 / 1e9;
        d.ok(
            "/api/v1/llm-calls",
            json!({"provider": name, "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": usd}),
            201,
        )
        .await;
    }
    assert_eq!(own.len(), 24);
    assert!(!own.contains(&"other".to_string()));
    assert_eq!(own[3], "prov-00");
    assert_eq!(own[6], "prov-04", "the literal Other took no own slot");

    let text = text_page(&d).await;
    let page = check_text_page(&text, "test-host");
    for name in ["crewshipd_llm_calls_total", "crewshipd_llm_cost_usd_total"] {
        let series = page.series(name);
        assert!(series.len() <= 25, "{name} has {} series", series.len());
        assert_eq!(series.len(), 25, "{name}");
        // The own series keep their names, in order of first appearance.
        let labels: Vec<&str> = series.iter().map(|s| s.label("provider").unwrap()).collect();
        let own_labels: Vec<&str> = labels.iter().copied().filter(|l| *l != "other").collect();
        assert_eq!(own_labels, own.iter().map(String::as_str).collect::<Vec<_>>(), "{name}");
    }
    let calls_by = by_label(&page, "crewshipd_llm_calls_total", "provider");
    let cost_by = by_label(&page, "crewshipd_llm_cost_usd_total", "provider");
    for (label, (n, nanos)) in &want {
        assert_eq!(calls_by.get(label), Some(&(*n as f64)), "calls of {label}");
        assert_eq!(cost_by.get(label), Some(&(*nanos as f64 / 1e9)), "cost of {label}");
    }
    let total_calls: f64 = calls_by.values().sum();
    assert_eq!(total_calls, calls.len() as f64);
    let total_nanos: i64 = calls.iter().map(|(_, n)| n).sum();
    let total_cost: f64 = cost_by.values().sum();
    assert!((total_cost - total_nanos as f64 / 1e9).abs() < 1e-6, "{total_cost}");
    if let Some(promtool) = tools::promtool() {
        tools::assert_promtool_clean(&promtool, &text).await;
    }

    // The label set is stable for good: after a restart, a new provider
    // still folds into `other` and an own one keeps its series.
    let d = d.restart().await;
    for (p, usd) in [("late-comer", 0.5), ("PROV-00", 0.25)] {
        d.ok(
            "/api/v1/llm-calls",
            json!({"provider": p, "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": usd}),
            201,
        )
        .await;
    }
    let page = check_text_page(&text_page(&d).await, "test-host");
    let after = by_label(&page, "crewshipd_llm_calls_total", "provider");
    assert_eq!(after.len(), 25, "{after:?}");
    assert!(!after.contains_key("late-comer"));
    assert_eq!(after["other"], want["other"].0 as f64 + 1.0);
    assert_eq!(after["prov-00"], want["prov-00"].0 as f64 + 1.0);
    let cost = by_label(&page, "crewshipd_llm_cost_usd_total", "provider");
    assert_eq!(cost["other"], (want["other"].1 + 500_000_000) as f64 / 1e9);
}

/// The cap under writers that commit at once (PostgreSQL's pool; SQLite's
/// one writer serializes them anyway): 60 providers, two calls each, all
/// in flight together. 24 providers keep their own series (the rate card's
/// three, at zero, and 21 of these), every call of a provider lands in one
/// series, and nothing is counted twice or lost.
#[tokio::test]
async fn the_provider_cap_holds_under_concurrent_writers() {
    let d = Daemon::start().await;
    let posts = (0..120).map(|i| {
        let body = json!({"provider": format!("c-{:02}", i % 60), "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 1.0});
        d.post("/api/v1/llm-calls", body)
    });
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let page = check_text_page(&text_page(&d).await, "test-host");
    let calls = by_label(&page, "crewshipd_llm_calls_total", "provider");
    assert_eq!(calls.len(), 25, "{calls:?}");
    assert_eq!(calls.values().sum::<f64>(), 120.0, "{calls:?}");
    for (label, n) in &calls {
        match label.as_str() {
            "other" => assert_eq!(*n, 78.0, "{calls:?}"),
            "anthropic" | "openai" | "google" => assert_eq!(*n, 0.0, "{calls:?}"),
            _ => assert_eq!(*n, 2.0, "both calls of {label} in its own series: {calls:?}"),
        }
    }
}

#[tokio::test]
async fn compatibility_names_say_what_they_measure() {
    let d = Daemon::start().await;
    let page = parse_page(&text_page(&d).await);
    let goroutines = page.help["crewshipd_goroutines"].to_lowercase();
    assert!(
        goroutines.contains("task") && goroutines.contains("compatib"),
        "HELP of crewshipd_goroutines must say it counts async tasks under a compatibility name: {goroutines:?}"
    );
    let gc = page.help["crewshipd_gc_runs_total"].to_lowercase();
    assert!(
        gc.contains("compatib") && (gc.contains("purge") || gc.contains("reclaim")),
        "HELP of crewshipd_gc_runs_total must say what it honestly counts: {gc:?}"
    );
    // A counter: never below zero, never backwards between two scrapes.
    let first = page.must("crewshipd_gc_runs_total", None);
    let second = parse_page(&text_page(&d).await).must("crewshipd_gc_runs_total", None);
    assert!(first >= 0.0 && second >= first, "{first} then {second}");
}

/// Queue gauges from real queued work; deleted crews drop out.
#[tokio::test]
async fn queue_gauges_follow_the_work() {
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "100ms")]).await;
    let release = d.data_dir().join("release");
    // The agent holds its slot until the test creates the release file.
    let hold = format!("while [ ! -f '{}' ]; do sleep 0.05; done", release.display());
    d.crew_with_agent("alpha", 1, &hold).await;
    d.crew_with_agent("beta", 1, &hold).await;
    let mut ids = Vec::new();
    for crew in ["alpha", "alpha", "alpha", "alpha", "beta", "beta"] {
        let a = d.ok("/api/v1/assignments", json!({"crew": crew, "agent": "worker", "task": "t"}), 201).await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    let want = |running: f64, queued: f64, depth: f64, crews: f64, max: f64| {
        move |p: &Page| {
            p.value("crewshipd_assignments", Some(("status", "running"))) == Some(running)
                && p.value("crewshipd_assignments", Some(("status", "queued"))) == Some(queued)
                && p.value("crewshipd_assignment_queue_depth", None) == Some(depth)
                && p.value("crewshipd_assignment_queue_crews", None) == Some(crews)
                && p.value("crewshipd_assignment_queue_depth_max", None) == Some(max)
        }
    };
    await_page(&d, "2 running, 4 queued in 2 crews, 3 at most", want(2.0, 4.0, 4.0, 2.0, 3.0)).await;

    // Deleting beta cancels its queued work: it leaves the queue gauges.
    assert_eq!(d.delete("/api/v1/crews/beta").await.status, 200);
    await_page(&d, "beta's queue gone", want(2.0, 3.0, 3.0, 1.0, 3.0)).await;
    // Cancelling a queued assignment of alpha shrinks the backlog.
    let r = d.post(&format!("/api/v1/assignments/{}/cancel", ids[3]), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    await_page(&d, "alpha's backlog shrunk", want(2.0, 2.0, 2.0, 1.0, 2.0)).await;

    std::fs::write(&release, "").unwrap();
    await_page(&d, "everything drained", want(0.0, 0.0, 0.0, 0.0, 0.0)).await;
    let p = parse_page(&text_page(&d).await);
    assert_eq!(p.must("crewshipd_assignments", Some(("status", "cancelled"))), 2.0);
    let total: f64 = p.series("crewshipd_assignments").iter().map(|s| s.value()).sum();
    assert_eq!(total, 6.0, "every assignment in exactly one status");
}

async fn await_page(d: &Daemon, what: &str, ok: impl Fn(&Page) -> bool) {
    let seen = tools::poll_for(crate::common::PATIENCE, || async {
        let text = text_page(d).await;
        if ok(&parse_page(&text)) { Ok(()) } else { Err(text) }
    });
    if let Err(text) = seen.await {
        panic!("never saw {what}:\n{text}");
    }
}

/// Labels stored behind the API's back (a manual fix-up, an older or
/// newer build) are folded as METRICS.md §4 says: trimmed, lower-cased,
/// unknown ones into `other` (run events have no `other`: unknown events
/// are not invented).
#[tokio::test]
async fn stored_labels_are_normalized_and_folded() {
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "100ms")]).await;
    d.database
        .exec(
            "INSERT INTO counters (family, label, value) VALUES ('assignments', ' Queued ', 2);
             INSERT INTO counters (family, label, value) VALUES ('assignments', 'paused', 3);
             INSERT INTO counters (family, label, value) VALUES ('pipeline_runs', 'DRY_RUN', 4);
             INSERT INTO counters (family, label, value) VALUES ('pipeline_runs', 'exploded', 5);
             INSERT INTO counters (family, label, value) VALUES ('run_events', 'exploded', 6);",
        )
        .await;
    let text = text_page(&d).await;
    let page = check_text_page(&text, "test-host");
    let statuses = by_label(&page, "crewshipd_assignments", "status");
    assert_eq!(statuses.len(), 7, "{statuses:?}");
    assert_eq!(statuses["queued"], 2.0);
    assert_eq!(statuses["other"], 3.0);
    let pipeline = by_label(&page, "crewshipd_pipeline_runs", "status");
    assert_eq!(pipeline.len(), 8, "{pipeline:?}");
    assert_eq!(pipeline["dry_run"], 4.0);
    assert_eq!(pipeline["other"], 5.0);
    let events = by_label(&page, "crewshipd_agent_run_events_total", "event");
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events.values().all(|v| *v == 0.0), "{events:?}");
    if let Some(promtool) = tools::promtool() {
        tools::assert_promtool_clean(&promtool, &text).await;
    }
}

/// "Whatever bytes the database holds" (METRICS.md §1): SQLite TEXT can
/// hold bytes that are not UTF-8. Such a row must neither break the page
/// nor silence its family: it is still counted (under a lossily decoded
/// label or under `other`), and the collector stays up.
#[tokio::test]
async fn non_utf8_bytes_in_the_database_neither_break_nor_silence_the_page() {
    if crate::common::db::sqlite_only("PostgreSQL text refuses bytes that are not UTF-8, so none can be stored") {
        return;
    }
    let promtool = tools::promtool();
    let python = tools::python().await;
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "100ms")]).await;
    d.ok(
        "/api/v1/llm-calls",
        json!({"provider": "anthropic", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 1.0}),
        201,
    )
    .await;
    d.database
        .exec(
            "INSERT INTO llm_series (label, position, calls, cost_nanos)
                 VALUES (CAST(x'66ff6f22' AS TEXT), 90, 2, 500000000);
             INSERT INTO counters (family, label, value)
                 VALUES ('assignments', CAST(x'c328' AS TEXT), 7);",
        )
        .await;
    let check = |p: &Page| {
        let calls: f64 = p.series("crewshipd_llm_calls_total").iter().map(|s| s.value()).sum();
        calls == 3.0 && p.value("crewshipd_assignments", Some(("status", "other"))) == Some(7.0)
    };
    await_page(&d, "the rows counted (3 LLM calls, 7 assignments in other)", check).await;
    let text = text_page(&d).await;
    let page = check_text_page(&text, "test-host");
    for c in page.series("crewshipd_metrics_collector_up") {
        assert_eq!(c.value(), 1.0, "{}", c.key());
    }
    let cost: f64 = page.series("crewshipd_llm_cost_usd_total").iter().map(|s| s.value()).sum();
    assert_eq!(cost, 1.5);
    if let Some(promtool) = &promtool {
        tools::assert_promtool_clean(promtool, &text).await;
    }
    if let Some(python) = &python {
        tools::python_parse(python, PyParser::Text, &text).await;
        tools::python_parse(python, PyParser::OpenMetrics, &om_page(&d).await).await;
    }
}

/// METRICS.md §7: tokens by provider and type, maintained with each call,
/// and the age of the oldest queued assignment (0 while none is queued).
#[tokio::test]
async fn tokens_by_type_and_the_oldest_queued_age() {
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "0s")]).await;
    for (provider, input, output, cached, creation) in
        [("anthropic", 100, 20, 30, 5), ("openai", 7, 3, 0, 0), ("ANTHROPIC", 1, 1, 1, 1)]
    {
        let call = json!({"provider": provider, "model": "m", "input_tokens": input, "output_tokens": output,
            "cached_input_tokens": cached, "cache_creation_tokens": creation, "cost_usd": 0.01});
        d.ok("/api/v1/llm-calls", call, 201).await;
    }
    let page = check_text_page(&text_page(&d).await, "test-host");
    let mut tokens = BTreeMap::new();
    for s in page.series("crewshipd_llm_tokens_total") {
        tokens.insert((s.label("provider").unwrap().to_string(), s.label("type").unwrap().to_string()), s.value());
    }
    let want: BTreeMap<(String, String), f64> = [
        ("anthropic", "input", 101.0),
        ("anthropic", "output", 21.0),
        ("anthropic", "cached_input", 31.0),
        ("anthropic", "cache_creation", 6.0),
        ("openai", "input", 7.0),
        ("openai", "output", 3.0),
        ("openai", "cached_input", 0.0),
        ("openai", "cache_creation", 0.0),
        // On the rate card, not called: at zero.
        ("google", "input", 0.0),
        ("google", "output", 0.0),
        ("google", "cached_input", 0.0),
        ("google", "cache_creation", 0.0),
    ]
    .into_iter()
    .map(|(p, t, n)| ((p.to_string(), t.to_string()), n))
    .collect();
    assert_eq!(tokens, want);
    assert_eq!(page.must("crewshipd_assignment_queue_oldest_age_seconds", None), 0.0);

    // One slot, held by a long run: the second assignment stays queued.
    d.ok("/api/v1/crews", json!({"slug": "held", "name": "H", "max_concurrent_agents": 1}), 201).await;
    d.ok("/api/v1/crews/held/agents", json!({"slug": "ww", "name": "W", "command": ["sleep", "60"]}), 201).await;
    let before = crewship::internals::domain::time::now_ms();
    for task in ["runs", "waits"] {
        d.ok("/api/v1/assignments", json!({"crew": "held", "agent": "ww", "task": task}), 201).await;
    }
    let queued = tools::eventually("the assignment queued", crate::common::PATIENCE, || async {
        let page = check_text_page(&text_page(&d).await, "test-host");
        (page.must("crewshipd_assignment_queue_depth", None) == 1.0).then_some(page)
    })
    .await;
    let first = queued.must("crewshipd_assignment_queue_oldest_age_seconds", None);
    let waited = (crewship::internals::domain::time::now_ms() - before) as f64 / 1000.0;
    assert!((0.0..=waited).contains(&first), "age {first} s, at most {waited} s since it was submitted");
    let later = tools::eventually("the age growing", crate::common::PATIENCE, || async {
        let age = check_text_page(&text_page(&d).await, "test-host")
            .must("crewshipd_assignment_queue_oldest_age_seconds", None);
        (age > first).then_some(age)
    })
    .await;
    assert!(later > first);
}

/// The cumulative buckets of one histogram series, by `le`.
fn buckets(page: &Page, name: &str, label: Option<(&str, &str)>) -> Vec<(String, f64)> {
    page.series(&format!("{name}_bucket"))
        .into_iter()
        .filter(|s| label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| (s.label("le").unwrap().to_string(), s.value()))
        .collect()
}

/// METRICS.md §7: the run and queue-wait histograms count exactly this
/// node's run events, their buckets are the contract's, and in OpenMetrics
/// (only) a bucket carries its latest run's trace id; both formats pass
/// promtool (text) and the strict Python parsers.
#[tokio::test]
async fn run_histograms_agree_with_the_run_events_and_carry_exemplars() {
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "0s"), ("CREWSHIP_METRICS_LIVE_WINDOW", "0s")]).await;
    d.crew_with_agent("hx", 4, "read t; [ \"$t\" = fail ] && exit 3; echo ok").await;
    let mut ids = BTreeSet::new();
    for task in ["a", "fail", "b", "fail", "c"] {
        let a = d.run_to_end("hx", "worker", task).await;
        ids.insert(a["run_id"].as_str().unwrap().to_string());
    }
    let text = text_page(&d).await;
    let page = check_text_page(&text, "test-host");
    let events = by_label(&page, "crewshipd_agent_run_events_total", "event");
    for (outcome, n) in [("completed", 3.0), ("failed", 2.0), ("cancelled", 0.0), ("timeout", 0.0)] {
        let count = page.must("crewshipd_run_duration_seconds_count", Some(("outcome", outcome)));
        assert_eq!(count, n, "{outcome}");
        assert_eq!(count, events[outcome], "{outcome}: the histogram counts this node's run events");
        let b = buckets(&page, "crewshipd_run_duration_seconds", Some(("outcome", outcome)));
        let les: Vec<&str> = b.iter().map(|(le, _)| le.as_str()).collect();
        assert_eq!(
            les,
            [
                "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "30.0", "60.0", "120.0", "300.0", "600.0", "1800.0",
                "3600.0", "7200.0", "14400.0", "+Inf"
            ]
        );
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {b:?}");
        assert_eq!(b.last().unwrap().1, n);
    }
    assert_eq!(page.must("crewshipd_assignment_queue_wait_seconds_count", None), events["started"]);
    assert!(page.must("crewshipd_assignment_queue_wait_seconds_sum", None) >= 0.0);
    if let Some(promtool) = tools::promtool() {
        tools::assert_promtool_clean(&promtool, &text).await;
    }

    let om = om_page(&d).await;
    let page = parse_page(&om);
    let exemplars: Vec<&tools::Line> = page
        .series("crewshipd_run_duration_seconds_bucket")
        .into_iter()
        .chain(page.series("crewshipd_assignment_queue_wait_seconds_bucket"))
        .filter(|s| s.exemplar.is_some())
        .collect();
    assert!(!exemplars.is_empty(), "{om}");
    for s in exemplars {
        let e = s.exemplar.as_deref().unwrap();
        let id = e.strip_prefix("{trace_id=\"").and_then(|r| r.split('"').next()).unwrap();
        assert!(ids.contains(id), "exemplar {e} names one of our runs");
        let parts: Vec<&str> = e.rsplitn(3, ' ').collect();
        let (value, at): (f64, f64) = (parts[1].parse().unwrap(), parts[0].parse().unwrap());
        let le = s.label("le").unwrap();
        assert!(le == "+Inf" || value <= le.parse::<f64>().unwrap(), "{e} in bucket {le}");
        assert!(at > 1.7e9, "a timestamp in seconds: {e}");
    }
    assert!(page.series("crewshipd_http_request_duration_seconds_bucket").iter().all(|s| s.exemplar.is_none()));
    if let Some(python) = tools::python().await {
        let samples = tools::python_parse(&python, tools::PyParser::OpenMetrics, &om).await;
        assert!(samples.iter().any(|s| s.name == "crewshipd_run_duration_seconds_bucket"));
        tools::python_parse(&python, tools::PyParser::Text, &text).await;
    }
}

/// METRICS.md §7: requests by method, route template and code; no match
/// and the unauthorized /metrics answer are both `unmatched`, so nothing
/// on the page tells that /metrics exists.
#[tokio::test]
async fn http_requests_by_route_template_with_hidden_metrics_unmatched() {
    let d = Daemon::start_with(&[
        ("CREWSHIP_METRICS_TOKEN", "scrape-me"),
        ("CREWSHIP_METRICS_ALLOW_LOOPBACK", "false"),
        ("CREWSHIP_METRICS_LIVE_WINDOW", "0s"),
    ])
    .await;
    d.ok("/api/v1/crews", json!({"slug": "one", "name": "One", "max_concurrent_agents": 1}), 201).await;
    for path in ["/api/v1/crews/one", "/api/v1/crews/nope", "/api/v1/crews/one"] {
        d.get(path).await;
    }
    assert_eq!(d.get("/no/such/path").await.status, 404);
    assert_eq!(d.request(reqwest::Method::PUT, "/api/v1/crews", None).await.status, 405);
    let unauthorized = d.client().get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 404);
    let scrape = || async {
        let r = d.client().get(d.url("/metrics")).bearer_auth("scrape-me").send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    scrape().await;
    let page = check_text_page(&scrape().await, "test-host");
    let mut requests = BTreeMap::new();
    for s in page.series("crewshipd_http_requests_total") {
        let key = (s.label("method").unwrap(), s.label("route").unwrap(), s.label("code").unwrap());
        requests.insert((key.0.to_string(), key.1.to_string(), key.2.to_string()), s.value());
    }
    let get = |m: &str, r: &str, c: &str| requests.get(&(m.to_string(), r.to_string(), c.to_string())).copied();
    assert_eq!(get("POST", "/api/v1/crews", "201"), Some(1.0), "{requests:?}");
    assert_eq!(get("GET", "/api/v1/crews/{crew}", "200"), Some(2.0));
    assert_eq!(get("GET", "/api/v1/crews/{crew}", "404"), Some(1.0));
    assert_eq!(get("PUT", "/api/v1/crews", "405"), Some(1.0));
    assert_eq!(get("GET", "unmatched", "404"), Some(2.0), "an unknown path and the hidden /metrics");
    assert_eq!(get("GET", "/metrics", "200"), Some(1.0), "the scrape before this one");
    assert!(requests.keys().all(|(_, r, c)| !(r == "/metrics" && c == "404")), "{requests:?}");
    let b = buckets(&page, "crewshipd_http_request_duration_seconds", Some(("route", "/api/v1/crews/{crew}")));
    assert_eq!(b.len(), 15);
    assert_eq!(b[0].0, "0.0005");
    assert_eq!(b.last().unwrap(), &("+Inf".to_string(), 3.0));
    assert_eq!(page.must("crewshipd_http_request_duration_seconds_count", Some(("route", "unmatched"))), 2.0);
}
