//! A real Prometheus server scrapes the daemon the way the seed page's
//! `prometheus.yml` says (bearer token through `authorization.credentials`,
//! loopback access switched off so the token path is really used), and
//! the seed page's two alert expressions are evaluated, exactly as
//! written, against real work done through the API (METRICS.md §6).
//!
//! Prometheus is an external process: its HTTP API (`/-/ready`,
//! `/api/v1/targets`, `/api/v1/query`) is polled with deadlines, which is
//! the only synchronisation it offers.
//!
//! Formats: Prometheus negotiates OpenMetrics by default; that is proved
//! through its metadata API (OpenMetrics names a counter family without
//! `_total`). A second job pinned to `scrape_protocols: [PrometheusText0.0.4]`
//! runs when the installed Prometheus supports it (2.49 and later). Debian
//! bookworm ships 2.42, which does not: there the text format is proved by
//! `promtool check metrics` on a token-authorized scrape instead, and the
//! test says so on stderr.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::common::Daemon;
use crate::tools::{self, eventually};

const TOKEN: &str = "e2e-scrape-token-7f3a";
/// How long Prometheus may take to start, scrape and ingest.
const PROM_PATIENCE: Duration = Duration::from_secs(90);

/// The seed page's alerts, character for character.
const FAILURE_RATIO_ALERT: &str = "sum(rate(crewshipd_agent_run_events_total{event=\"failed\"}[10m]))\n/\nsum(rate(crewshipd_agent_run_events_total{event=\"started\"}[10m])) > 0.2";
const SPEND_ALERT: &str = "sum(increase(crewshipd_llm_cost_usd_total[1h])) > 5";

/// The shipped Prometheus files (deploy/prometheus/), read as they are.
fn deploy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The alert rules, as shipped.
fn rules() -> String {
    deploy("rules.yml")
}

/// A shipped prometheus.yml aimed at `target`: its placeholder target and
/// token replaced, and its intervals shortened so a test sees scrapes.
fn shipped_config(name: &str, target: &str, token_file: &Path) -> String {
    let text = deploy(name);
    for placeholder in ["crewship.example.com:8080", "30s"] {
        assert!(text.contains(placeholder), "{name} has no {placeholder}");
    }
    text.replace("crewship.example.com:8080", target)
        .replace("CHANGE-ME-metrics-token", TOKEN)
        .replace("/etc/prometheus/crewshipd.token", &token_file.display().to_string())
        .replace("30s", "1s")
}

/// The PromQL of the first block under `heading` in docs/metrics.md,
/// one expression a line.
fn promql_under(heading: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md")).unwrap();
    let section = doc.split(heading).nth(1).unwrap_or_else(|| panic!("no {heading} in docs/metrics.md"));
    let block = section.split("```promql\n").nth(1).and_then(|b| b.split("```").next()).expect("a promql block");
    block.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// The PromQL of docs/metrics.md's fleet section.
fn fleet_recipes() -> Vec<String> {
    let lines = promql_under("### In a fleet");
    assert_eq!(lines.len(), 3, "{lines:?}");
    lines
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Query-string encoding (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (major, minor) of the installed Prometheus.
async fn prometheus_version(bin: &Path) -> (u32, u32) {
    let out = Command::new(bin).arg("--version").output().await.expect("prometheus --version");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    let mut parts = v.split(['.', '+', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    /// Kills the server (kill_on_drop would too; this says so explicitly).
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Prometheus {
    /// Starts a server with `config` (and the documented rules as rules.yml beside it),
    /// and waits until it is ready.
    async fn start(bin: &Path, config: &str) -> Prometheus {
        Prometheus::start_with(bin, config, &[]).await
    }

    /// `start`, with more flags (feature flags).
    async fn start_with(bin: &Path, config: &str, flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules()).unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        // A port picked free may be taken before Prometheus binds it.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let mut child = Command::new(bin)
                .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(flags)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("spawn prometheus");
            let base = format!("http://127.0.0.1:{port}");
            // Ok(None) once ready, Ok(Some(status)) if it exited first.
            let up = tools::poll_for(PROM_PATIENCE, || {
                let exited = child.try_wait().ok().flatten();
                let (client, base) = (&client, &base);
                async move {
                    if exited.is_some() {
                        return Ok(exited);
                    }
                    let ready = client.get(format!("{base}/-/ready")).send().await;
                    if ready.is_ok_and(|r| r.status() == 200) { Ok(None) } else { Err(()) }
                }
            });
            let log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            match up.await {
                Ok(None) => return Prometheus { child, base, dir, client },
                Ok(Some(status)) => {
                    let log = log();
                    assert!(log.contains("address already in use"), "prometheus exited with {status}:\n{log}");
                }
                Err(()) => panic!("prometheus not ready in time:\n{}", log()),
            }
        }
        panic!("no free port for prometheus after three tries");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn api(&self, path_and_query: &str) -> Value {
        let r = self.client.get(format!("{}{path_and_query}", self.base)).send().await.expect("prometheus api");
        let status = r.status();
        let body: Value = r.json().await.expect("prometheus json");
        assert!(status == 200 && body["status"] == "success", "{path_and_query}: {status} {body}");
        body["data"].clone()
    }

    /// An instant query: (labels, value) per result element.
    async fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr))).await;
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let labels = serde_json::from_value(e["metric"].clone()).unwrap();
                let v = e["value"][1].as_str().unwrap();
                let v = match v {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    v => v.parse().unwrap(),
                };
                (labels, v)
            })
            .collect()
    }

    /// The value of a query returning exactly one element, if it does.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).await;
        assert!(r.len() <= 1, "{expr} returned {r:?}");
        r.first().map(|(_, v)| *v)
    }

    /// Waits until Prometheus reports `expr` = `want`.
    async fn await_value(&self, expr: &str, want: f64) {
        // The last value seen at all: a series may be absent from the last answer.
        let last = std::cell::Cell::new(None);
        let seen = tools::poll_for(PROM_PATIENCE, || async {
            let v = self.scalar(expr).await;
            last.set(v.or(last.get()));
            if v.is_some_and(|v| (v - want).abs() < 1e-9) { Ok(()) } else { Err(()) }
        });
        if seen.await.is_err() {
            panic!("prometheus never saw {expr} = {want} (last {:?})\n{}", last.get(), self.log());
        }
    }

    /// Waits until the job's only target is up with no error.
    async fn await_target_up(&self, job: &str) -> Value {
        let up = tools::poll_for(PROM_PATIENCE, || async {
            let data = self.api("/api/v1/targets?state=active").await;
            let target = data["activeTargets"].as_array().unwrap().iter().find(|t| t["labels"]["job"] == job).cloned();
            match target {
                Some(t) if t["health"] == "up" && t["lastError"] == "" => Ok(t),
                other => Err(other),
            }
        });
        up.await.unwrap_or_else(|target| panic!("target of job {job} never came up: {target:?}\n{}", self.log()))
    }

    /// Metadata Prometheus keeps for `metric` (a family name) from `job`.
    async fn metadata(&self, job: &str, metric: &str) -> Vec<Value> {
        let q = format!(
            "/api/v1/targets/metadata?match_target={}&metric={}",
            encode(&format!("{{job=\"{job}\"}}")),
            encode(metric)
        );
        self.api(&q).await.as_array().cloned().unwrap_or_default()
    }
}

fn scrape_config(job: &str, target: &str, extra: &str) -> String {
    format!(
        r#"  - job_name: {job}
    scrape_interval: 1s
    scrape_timeout: 1s
{extra}    authorization:
      credentials: "{TOKEN}"
    static_configs:
      - targets: ["{target}"]
"#
    )
}

fn config(jobs: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n{jobs}"
    )
}

/// Runs `n` assignments of `crew`'s worker to their end, concurrently.
async fn runs(d: &Daemon, crew: &str, n: usize, want: &str) {
    let tasks: Vec<String> = (0..n).map(|i| format!("task {i}")).collect();
    let all = tasks.iter().map(|t| d.run_to_end(crew, "worker", t));
    for a in futures::future::join_all(all).await {
        assert_eq!(a["status"], want, "{a}");
    }
}

/// A daemon whose /metrics only the token opens (loopback too), with a
/// short cache so Prometheus sees changes within seconds.
async fn token_only_daemon() -> Daemon {
    Daemon::start_with(&[
        ("CREWSHIP_METRICS_ALLOW_LOOPBACK", "false"),
        ("CREWSHIP_METRICS_TOKEN", TOKEN),
        ("CREWSHIP_METRICS_CACHE_TTL", "200ms"),
    ])
    .await
}

const HOSTILE: &str = "we\"ird\\back\nline\ttab-ünï";

#[tokio::test]
async fn real_prometheus_scrapes_and_the_seed_alerts_work() {
    let Some(prometheus) = tools::prometheus() else { return };
    let Some(promtool) = tools::promtool() else { return };
    let d = token_only_daemon().await;
    // The token path is the only way in.
    assert_eq!(d.get("/metrics").await.status, 404);
    let target = format!("127.0.0.1:{}", d.port);

    let version = prometheus_version(&prometheus).await;
    let text_job_supported = version >= (2, 49);
    // The shipped prometheus.yml, aimed at this daemon.
    let none = Path::new("/nonexistent");
    let prom = Prometheus::start(&prometheus, &shipped_config("prometheus.yml", &target, none)).await;
    let t = prom.await_target_up("crewshipd").await;
    let prom = &prom;
    assert_eq!(t["scrapeUrl"], format!("http://{target}/metrics"));

    // Prometheus negotiated OpenMetrics: it keeps counter metadata under
    // the family name without _total.
    let md = eventually("counter metadata in prometheus", PROM_PATIENCE, move || async move {
        let md = prom.metadata("crewshipd", "crewshipd_agent_run_events").await;
        (!md.is_empty()).then_some(md)
    })
    .await;
    assert_eq!(md[0]["type"], "counter", "{md:?}");
    assert!(
        prom.metadata("crewshipd", "crewshipd_agent_run_events_total").await.is_empty(),
        "metadata under the 0.0.4 name: Prometheus did not get OpenMetrics"
    );

    // The text format, to a token holder.
    if text_job_supported {
        let text_prom = Prometheus::start(
            &prometheus,
            &config(&scrape_config("crewshipd_text", &target, "    scrape_protocols: [PrometheusText0.0.4]\n")),
        )
        .await;
        text_prom.await_target_up("crewshipd_text").await;
        let text_prom = &text_prom;
        let md = eventually("text-format counter metadata", PROM_PATIENCE, move || async move {
            let md = text_prom.metadata("crewshipd_text", "crewshipd_agent_run_events_total").await;
            (!md.is_empty()).then_some(md)
        })
        .await;
        assert_eq!(md[0]["type"], "counter");
    } else {
        eprintln!(
            "prometheus {}.{} has no scrape_protocols (2.49+): proving the 0.0.4 text format with promtool instead",
            version.0, version.1
        );
    }
    let r = d.client().get(d.url("/metrics")).header("authorization", format!("Bearer {TOKEN}")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], tools::TEXT_CONTENT_TYPE);
    tools::assert_promtool_clean(&promtool, &r.text().await.unwrap()).await;

    // Nothing ran yet: 0/0 is no alert.
    assert!(prom.query(FAILURE_RATIO_ALERT).await.is_empty());
    assert!(prom.query(SPEND_ALERT).await.is_empty());

    // The provider series must exist in Prometheus before the spend that
    // should count: increase() cannot see the value a series is born with.
    d.llm_call("anthropic", 0.01).await;
    d.ok(
        "/api/v1/llm-calls",
        json!({"provider": HOSTILE, "model": "m", "input_tokens": 1, "output_tokens": 1, "billing_mode": "flat_rate"}),
        201,
    )
    .await;
    prom.await_value("sum(crewshipd_llm_cost_usd_total)", 0.01).await;
    prom.await_value("sum(crewshipd_llm_calls_total)", 2.0).await;
    let hostile = prom.query("crewshipd_llm_calls_total").await;
    assert!(
        hostile.iter().any(|(l, v)| l.get("provider").map(String::as_str) == Some(HOSTILE) && *v == 1.0),
        "the hostile provider label did not survive the scrape: {hostile:?}"
    );

    // Phase A: 1 failed run of 6, and 4 USD spent.
    d.crew_with_agent("good", 6, "echo ok; exit 0").await;
    d.crew_with_agent("bad", 6, "echo broken >&2; exit 1").await;
    runs(&d, "good", 5, "completed").await;
    runs(&d, "bad", 1, "failed").await;
    d.llm_call("anthropic", 2.5).await;
    d.llm_call("anthropic", 1.5).await;
    prom.await_value("crewshipd_agent_run_events_total{event=\"started\"}", 6.0).await;
    prom.await_value("crewshipd_agent_run_events_total{event=\"failed\"}", 1.0).await;
    prom.await_value("crewshipd_agent_run_events_total{event=\"completed\"}", 5.0).await;
    prom.await_value("sum(crewshipd_llm_cost_usd_total)", 4.01).await;
    // Enough samples since the provider appeared that increase()'s
    // extrapolation stays within 10 %.
    eventually("12 samples of the cost series", PROM_PATIENCE, move || async move {
        let n = prom.scalar("count_over_time(crewshipd_llm_cost_usd_total{provider=\"anthropic\"}[1h])").await;
        n.is_some_and(|n| n >= 12.0).then_some(())
    })
    .await;

    let ratio = prom
        .scalar(
            "sum(rate(crewshipd_agent_run_events_total{event=\"failed\"}[10m]))\n/\nsum(rate(crewshipd_agent_run_events_total{event=\"started\"}[10m]))",
        )
        .await
        .expect("a failure ratio");
    assert!((ratio - 1.0 / 6.0).abs() < 0.03, "ratio {ratio}, want about 1/6");
    assert!(prom.query(FAILURE_RATIO_ALERT).await.is_empty(), "1 of 6 failed must not fire");
    let spend = prom.scalar("sum(increase(crewshipd_llm_cost_usd_total[1h]))").await.expect("spend");
    assert!((4.0..4.5).contains(&spend), "spend {spend}, want 4 USD (+ extrapolation)");
    assert!(prom.query(SPEND_ALERT).await.is_empty(), "4 USD must not fire");

    // Phase B: 4 more failures (5 of 10) and 2 USD more (6 USD).
    runs(&d, "bad", 4, "failed").await;
    d.llm_call("anthropic", 2.0).await;
    prom.await_value("crewshipd_agent_run_events_total{event=\"started\"}", 10.0).await;
    prom.await_value("crewshipd_agent_run_events_total{event=\"failed\"}", 5.0).await;
    prom.await_value("sum(crewshipd_llm_cost_usd_total)", 6.01).await;

    let fired = prom.query(FAILURE_RATIO_ALERT).await;
    assert_eq!(fired.len(), 1, "5 of 10 failed must fire: {fired:?}");
    assert!((fired[0].1 - 0.5).abs() < 0.05, "ratio {}, want about 0.5", fired[0].1);
    let fired = prom.query(SPEND_ALERT).await;
    assert_eq!(fired.len(), 1, "6 USD must fire: {fired:?}");
    assert!((6.0..6.6).contains(&fired[0].1), "spend {}, want 6 USD (+ extrapolation)", fired[0].1);

    // The underlying series, with the labels Prometheus attached.
    let failed = prom.query("crewshipd_agent_run_events_total{event=\"failed\"}").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (labels, v) = &failed[0];
    assert_eq!(*v, 5.0);
    assert_eq!(labels.get("hostname").map(String::as_str), Some("test-host"));
    assert_eq!(labels.get("job").map(String::as_str), Some("crewshipd"));
    assert_eq!(labels.get("instance"), Some(&target));
    assert_eq!(prom.scalar("crewshipd_llm_calls_total{provider=\"anthropic\"}").await, Some(4.0));
    assert_eq!(prom.scalar("crewshipd_llm_cost_usd_total{provider=\"anthropic\"}").await, Some(6.01));
    assert_eq!(prom.scalar("crewshipd_db_migration_version").await, Some(tools::latest_migration_version() as f64));
    assert_eq!(prom.scalar("crewshipd_assignments{status=\"failed\"}").await, Some(5.0));
    // The container recipe is quiet with no containers.
    assert_eq!(prom.scalar("crewshipd_containers_tracked - crewshipd_containers_reporting").await, Some(0.0));
    assert!(prom.query("crewshipd_containers_tracked - crewshipd_containers_reporting > 0").await.is_empty());
    assert_eq!(prom.scalar("up{job=\"crewshipd\"}").await, Some(1.0));
    // The fleet recipes of docs/metrics.md, as written: each parses and
    // answers (the skew one stays empty while the versions agree).
    for expr in fleet_recipes() {
        let r = prom.query(&expr).await;
        if expr.ends_with("> 1") {
            assert!(r.is_empty(), "{expr}: {r:?}");
        } else {
            assert!(!r.is_empty(), "{expr} answered nothing");
        }
    }

    // The same rules, loaded into this Prometheus, fire too.
    eventually("both seed alerts firing in prometheus", PROM_PATIENCE, move || async move {
        let alerts = prom.api("/api/v1/alerts").await;
        let firing: Vec<String> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect();
        (firing.contains(&"CrewshipdAgentFailureRatio".to_string())
            && firing.contains(&"CrewshipdLLMSpend".to_string()))
        .then_some(())
    })
    .await;
    let rules = prom.api("/api/v1/rules").await;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    // Still up, never an error, after all of that.
    let t = prom.await_target_up("crewshipd").await;
    assert_eq!(t["lastError"], "");
}

async fn promtool_in(dir: &Path, args: &[&str]) -> tools::Run {
    let promtool: PathBuf = tools::promtool().expect("checked by the caller");
    let out =
        Command::new(promtool).args(args).current_dir(dir).stdin(Stdio::null()).output().await.expect("run promtool");
    tools::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn promtool_checks_and_unit_tests_the_alert_rules() {
    if tools::promtool().is_none() {
        return;
    }
    // The failure-ratio rule is the seed expression verbatim; the spend
    // rule is the seed's, made robust against young series.
    let rules = rules();
    let indented: String = FAILURE_RATIO_ALERT.lines().map(|l| format!("          {l}\n")).collect();
    assert!(rules.contains(&indented), "the failure-ratio rule is not the seed expression");
    assert!(rules.contains("increase(crewshipd_llm_cost_usd_total[1h])") && rules.contains(") > 5\n"));
    let rule_tests = deploy("rules_test.yml");

    let dir = tempfile::tempdir().unwrap();
    for name in ["rules.yml", "rules_test.yml", "prometheus.yml", "prometheus-credentials-file.yml"] {
        std::fs::write(dir.path().join(name), deploy(name)).unwrap();
    }
    let r = promtool_in(dir.path(), &["check", "rules", "rules.yml"]).await;
    assert_eq!(r.code, Some(0), "promtool check rules:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("SUCCESS: 11 rules found"), "{}", r.stdout);
    for config in ["prometheus.yml", "prometheus-credentials-file.yml"] {
        let r = promtool_in(dir.path(), &["check", "config", "--syntax-only", config]).await;
        assert_eq!(r.code, Some(0), "promtool check config {config}:\n{}\n{}", r.stdout, r.stderr);
    }
    let r = promtool_in(dir.path(), &["test", "rules", "rules_test.yml"]).await;
    assert_eq!(r.code, Some(0), "promtool test rules:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("SUCCESS"), "{}", r.stdout);

    // The unit tests can fail: expecting the opposite is an error.
    let inverted = rule_tests.replacen(
        "      - eval_time: 5m\n        alertname: CrewshipdAgentFailureRatio\n        exp_alerts: []",
        "      - eval_time: 5m\n        alertname: CrewshipdAgentFailureRatio\n        exp_alerts:\n          - exp_labels:\n              severity: warning",
        1,
    );
    assert_ne!(inverted, rule_tests);
    std::fs::write(dir.path().join("rules_test.yml"), inverted).unwrap();
    let r = promtool_in(dir.path(), &["test", "rules", "rules_test.yml"]).await;
    assert_ne!(r.code, Some(0), "an inverted expectation passed:\n{}", r.stdout);
}

/// METRICS.md §7: Prometheus, with exemplar storage on, keeps the run
/// histograms' exemplars, and each names one of the runs as its trace id.
#[tokio::test]
async fn prometheus_keeps_the_run_histograms_exemplars() {
    let Some(prometheus) = tools::prometheus() else { return };
    let d = token_only_daemon().await;
    let target = format!("127.0.0.1:{}", d.port);
    // The shipped variant that reads the token from a file.
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("crewshipd.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let prom = Prometheus::start_with(
        &prometheus,
        &shipped_config("prometheus-credentials-file.yml", &target, &token_file),
        &["--enable-feature=exemplar-storage"],
    )
    .await;
    prom.await_target_up("crewshipd").await;
    let prom = &prom;
    // Runs while Prometheus watches, so their buckets rise between scrapes.
    prom.await_value("sum(crewshipd_run_duration_seconds_count)", 0.0).await;
    d.crew_with_agent("ex", 2, "cat").await;
    let mut runs = std::collections::BTreeSet::new();
    for i in 0..3 {
        let a = d.run_to_end("ex", "worker", &format!("t{i}")).await;
        runs.insert(a["run_id"].as_str().unwrap().to_string());
    }
    let now = crewship::internals::domain::time::now_ms() / 1000;
    let found = eventually("exemplars in prometheus", PROM_PATIENCE, move || async move {
        let q = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            encode("crewshipd_run_duration_seconds_bucket"),
            now - 3600,
            now + 3600
        );
        let data = prom.api(&q).await;
        let exemplars: Vec<Value> =
            data.as_array()?.iter().flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default()).collect();
        (!exemplars.is_empty()).then_some(exemplars)
    })
    .await;
    for e in &found {
        let id = e["labels"]["trace_id"].as_str().unwrap();
        assert!(runs.contains(id), "exemplar {e} names one of the runs {runs:?}");
    }
    // The docs' quantile recipe answers, for the completed runs.
    let recipe = promql_under("### Latency, requests and traces");
    assert_eq!(recipe.len(), 1, "{recipe:?}");
    let p95 = eventually("the p95 recipe", PROM_PATIENCE, || async {
        let r = prom.query(&recipe[0]).await;
        r.into_iter().find(|(l, v)| l.get("outcome").is_some_and(|o| o == "completed") && v.is_finite())
    })
    .await;
    assert!(p95.1 > 0.0, "{p95:?}");
}

/// The Grafana dashboard (deploy/grafana): every panel's expression, read
/// from the shipped JSON, parses and returns data in a real Prometheus
/// scraping a live daemon that did work, and names only series the daemon
/// exports; every panel uses the provisioned data source.
#[tokio::test]
async fn every_dashboard_panel_answers_from_a_live_daemon() {
    let Some(prometheus) = tools::prometheus() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("dashboards/crewshipd.json")).unwrap()).unwrap();
    let datasources = std::fs::read_to_string(root.join("provisioning/datasources/crewshipd.yml")).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        let uid = panel["datasource"]["uid"].as_str().unwrap();
        assert!(datasources.contains(&format!("uid: {uid}\n")), "panel {} uses data source {uid}", panel["title"]);
        for t in panel["targets"].as_array().unwrap() {
            exprs.push((panel["title"].as_str().unwrap().to_string(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(exprs.len() >= 20, "{exprs:?}");

    let d = token_only_daemon().await;
    let target = format!("127.0.0.1:{}", d.port);
    let prom =
        Prometheus::start(&prometheus, &shipped_config("prometheus.yml", &target, Path::new("/nonexistent"))).await;
    prom.await_target_up("crewshipd").await;
    let prom = &prom;
    prom.await_value("sum(crewshipd_agent_run_events_total{event=\"started\"})", 0.0).await;
    // Work while Prometheus watches: runs that pass and fail, LLM calls.
    d.crew_with_agent("dash", 3, "read t; [ \"$t\" = fail ] && { echo no >&2; exit 1; }; echo ok").await;
    for task in ["a", "fail", "b", "c", "fail"] {
        d.run_to_end("dash", "worker", task).await;
    }
    let call = json!({"provider": "anthropic", "model": "claude-sonnet-4", "input_tokens": 900, "output_tokens": 100});
    d.ok("/api/v1/llm-calls", call, 201).await;
    prom.await_value("sum(crewshipd_agent_run_events_total{event=\"started\"})", 5.0).await;
    prom.await_value("sum(crewshipd_llm_calls_total)", 1.0).await;
    // A few scrapes since the last change, so every rate has two samples.
    eventually("three scrapes after the work", PROM_PATIENCE, || async {
        let n = prom.scalar("count_over_time(crewshipd_http_requests_total{route=\"/api/v1/llm-calls\"}[5m])").await;
        n.is_some_and(|n| n >= 3.0).then_some(())
    })
    .await;

    let page = String::from_utf8(
        d.client().get(d.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap().bytes().await.unwrap().to_vec(),
    )
    .unwrap();
    let exported = tools::parse_page(&page);
    for (title, expr) in &exprs {
        // Only series the daemon exports.
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("crewshipd_") || w.starts_with("process_"))
        {
            assert!(!exported.series(name).is_empty(), "{title}: {name} is not on the daemon's page");
        }
        let answer = prom.query(expr).await;
        assert!(answer.iter().any(|(_, v)| v.is_finite()), "{title}: {expr} returned no data: {answer:?}");
    }
}
