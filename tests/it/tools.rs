//! Helpers for the /metrics acceptance tests: the external validators
//! (promtool, prometheus, Python's prometheus_client) with the
//! fail-under-CI rule, a raw HTTP/1.1 client that no library normalizes,
//! and a small parser for exposition pages.
//!
//! The rule for external tools: when a tool is missing, a test FAILS if
//! `CI=true` (the README's test command installs every tool, so a missing
//! one there is a broken setup, not a reason to pass), and otherwise skips
//! with a loud message on stderr.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::common::PATIENCE;

/// The Accept header Prometheus 2.42 sends by default (STACK.md).
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A tool is missing: fail under CI, skip loudly elsewhere. Returns None
/// so callers can `let Some(x) = ... else { return };`.
pub fn missing<T>(what: &str, hint: &str) -> Option<T> {
    if ci() {
        panic!("{what} is required under CI=true but is missing: {hint}");
    }
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPING: {what} is missing ({hint}).");
    eprintln!("!!! This test proves nothing here; run scripts/test.sh to install it.");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!();
    None
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(std::iter::once(Path::new("/usr/bin").join(name)))
        .find(|p| p.is_file())
}

/// `promtool`, or None (skip) outside CI.
pub fn promtool() -> Option<PathBuf> {
    find_in_path("promtool").or_else(|| missing("promtool", "apt-get install prometheus (scripts/test.sh does)"))
}

/// The `prometheus` server binary, or None (skip) outside CI.
pub fn prometheus() -> Option<PathBuf> {
    find_in_path("prometheus").or_else(|| missing("prometheus", "apt-get install prometheus (scripts/test.sh does)"))
}

/// The `sqlite3` shell, or None (skip) outside CI.
pub fn sqlite3() -> Option<PathBuf> {
    find_in_path("sqlite3").or_else(|| missing("sqlite3", "apt-get install sqlite3 (scripts/test.sh does)"))
}

/// A Python with prometheus_client importable: `CREWSHIP_TEST_PYTHON`
/// (set by scripts/test.sh), else the repository's `.venv`.
pub async fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("CREWSHIP_TEST_PYTHON").map(PathBuf::from).or_else(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        venv.is_file().then_some(venv)
    });
    let Some(python) = candidate else {
        return missing("Python with prometheus_client", "CREWSHIP_TEST_PYTHON is unset and there is no .venv");
    };
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client.openmetrics.parser, prometheus_client.parser"])
        .stdin(Stdio::null())
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else {
        missing("Python with prometheus_client", &format!("{} cannot import prometheus_client", python.display()))
    }
}

/// Output of an external command fed `stdin`.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run_with_stdin(program: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = tokio::spawn(async move {
        let _ = input.write_all(&data).await;
        drop(input);
    });
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish in time", program.display()))
        .expect("wait for child");
    writer.await.unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `promtool check metrics` must exit 0 and print nothing (no lint finding).
pub async fn assert_promtool_clean(promtool: &Path, body: &str) {
    let r = run_with_stdin(promtool, &["check", "metrics"], body.as_bytes()).await;
    assert!(
        r.code == Some(0) && r.stdout.trim().is_empty() && r.stderr.trim().is_empty(),
        "promtool check metrics: exit {:?}\nstdout:\n{}\nstderr:\n{}\nbody:\n{body}",
        r.code,
        r.stdout,
        r.stderr
    );
}

/// One sample as a Python parser saw it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PySample {
    pub family: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Python's repr of the float value.
    pub value: String,
}

impl PySample {
    pub fn value(&self) -> f64 {
        self.value.parse().unwrap_or_else(|_| panic!("python value {:?}", self.value))
    }
}

const PY_PARSE: &str = r#"
import json, sys
mode = sys.argv[1]
text = sys.stdin.buffer.read().decode("utf-8")
if mode == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name,
                    "labels": dict(s.labels), "value": repr(float(s.value))})
json.dump(out, sys.stdout, ensure_ascii=True)
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PyParser {
    /// `prometheus_client.openmetrics.parser` (strict).
    OpenMetrics,
    /// `prometheus_client.parser` (text 0.0.4).
    Text,
}

/// Parses `body` with the chosen Python parser; panics with the parser's
/// error if it rejects the page.
pub async fn python_parse(python: &Path, parser: PyParser, body: &str) -> Vec<PySample> {
    let mode = match parser {
        PyParser::OpenMetrics => "openmetrics",
        PyParser::Text => "text",
    };
    let r = run_with_stdin(python, &["-c", PY_PARSE, mode], body.as_bytes()).await;
    assert_eq!(
        r.code,
        Some(0),
        "the {mode} parser of prometheus_client rejected the page:\n{}\nbody:\n{body}",
        r.stderr
    );
    serde_json::from_str(&r.stdout).expect("parser output")
}

// ---------------------------------------------------------------- raw HTTP

/// A response exactly as it came off the socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status_line: String,
    /// Header lines in wire order, as sent (name and value unmodified).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl RawResponse {
    pub fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {:?}", self.status_line))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Everything but the Date header, for byte comparisons.
    pub fn without_date(&self) -> (String, Vec<(String, String)>, Vec<u8>) {
        (
            self.status_line.clone(),
            self.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("date")).cloned().collect(),
            self.body.clone(),
        )
    }
}

/// Sends one hand-written HTTP/1.1 request (`Connection: close` is added)
/// and reads the whole answer until the server closes.
pub async fn raw_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    raw_request_bytes(addr, method, path, &headers).await
}

/// `raw_request` with header values as arbitrary bytes (obs-text included).
pub async fn raw_request_bytes(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &[u8])]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    let raw = tokio::time::timeout(PATIENCE, async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&req).await.expect("write request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("read response");
        buf
    })
    .await
    .unwrap_or_else(|_| panic!("no complete answer to {method} {path} in time"));
    parse_raw(raw)
}

fn parse_raw(raw: Vec<u8>) -> RawResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..end].to_vec()).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.to_string(), v.trim_start().to_string())
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse { status_line, headers, body, raw }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("chunk size");
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// The socket address of a daemon's base URL.
pub fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap_or_else(|_| panic!("socket address in {base}"))
}

// ---------------------------------------------------------- page parsing

/// One sample line of a text or OpenMetrics page.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    /// Labels in page order, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value exactly as printed.
    pub raw_value: String,
    /// An OpenMetrics exemplar after the value (`{labels} value timestamp`).
    pub exemplar: Option<String>,
}

impl Line {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    pub fn value(&self) -> f64 {
        match self.raw_value.as_str() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}")),
        }
    }

    /// Name and labels without hostname: identifies a series on one host.
    pub fn key(&self) -> String {
        let labels: Vec<String> =
            self.labels.iter().filter(|(k, _)| k != "hostname").map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// A parsed page: HELP and TYPE per family name, samples in order.
#[derive(Debug, Default)]
pub struct Page {
    pub help: BTreeMap<String, String>,
    pub types: BTreeMap<String, String>,
    /// Family names in the order their TYPE lines appear.
    pub family_order: Vec<String>,
    pub samples: Vec<Line>,
}

impl Page {
    /// Samples of one sample name.
    pub fn series(&self, name: &str) -> Vec<&Line> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The single sample of `name` whose labels include `label`.
    pub fn value(&self, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && label.is_none_or(|(k, v)| s.label(k) == Some(v)))
            .map(Line::value)
    }

    /// `value`, panicking with the page when the series is absent.
    pub fn must(&self, name: &str, label: Option<(&str, &str)>) -> f64 {
        self.value(name, label).unwrap_or_else(|| panic!("no series {name} {label:?} on the page"))
    }
}

/// A strict little parser of what this daemon prints: panics on any line it
/// does not understand, so format slips are caught here too.
pub fn parse_page(text: &str) -> Page {
    let mut page = Page::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(page.help.insert(name.to_string(), help.to_string()).is_none(), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(page.types.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice for {name}");
            page.family_order.push(name.to_string());
        } else if line == "# EOF" {
        } else if line.starts_with('#') {
            panic!("unexpected comment line {line:?}");
        } else {
            page.samples.push(parse_sample(line));
        }
    }
    page
}

fn parse_sample(line: &str) -> Line {
    let split = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in {line:?}"));
    let (name, mut rest) = line.split_at(split);
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut it = inner.chars();
        loop {
            let r = it.as_str();
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find("=\"").unwrap_or_else(|| panic!("label without =\" in {line:?}"));
            let key = r[..eq].to_string();
            it = r[eq + 2..].chars();
            let mut value = String::new();
            loop {
                match it.next() {
                    Some('\\') => match it.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("invalid escape {other:?} in {line:?}"),
                    },
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            }
            labels.push((key, value));
            match it.next() {
                Some(',') => continue,
                Some('}') => {
                    rest = it.as_str();
                    break;
                }
                other => panic!("unexpected {other:?} after a label in {line:?}"),
            }
        }
    }
    let raw_value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
    let (raw_value, exemplar) = match raw_value.split_once(" # ") {
        Some((v, e)) => (v, Some(e.to_string())),
        None => (raw_value, None),
    };
    assert!(
        !raw_value.is_empty() && !raw_value.contains(' '),
        "a missing value, or timestamps or junk after it, in {line:?}"
    );
    Line { name: name.to_string(), labels, raw_value: raw_value.to_string(), exemplar }
}

/// The highest migration version the source tree knows, from the file
/// names under src/store/sqlite/migrations (`<version>_<name>.sql`).
pub fn latest_migration_version() -> i64 {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/sqlite/migrations");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
        .expect("at least one migration")
}

/// Polls `probe` until it returns Some, failing after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let found = poll_for(within, || {
        let probe = probe();
        async { probe.await.ok_or(()) }
    });
    found.await.unwrap_or_else(|()| panic!("timed out after {within:?} waiting for {what}"))
}

/// Polls `probe` until it returns Ok; after `within`, hands back the last
/// Err, for a caller that reports, or keeps, what it saw last.
pub async fn poll_for<T, L, F, Fut>(within: Duration, mut probe: F) -> Result<T, L>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, L>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return Ok(v),
            Err(last) if tokio::time::Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0) until its parent reaps it; look at
    // its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits, with a deadline, until an OS process is gone: the kernel has no
/// event for that, so this polls /proc.
pub async fn gone(pid: i32) -> bool {
    poll_for(PATIENCE, || async { if alive(pid) { Err(()) } else { Ok(()) } }).await.is_ok()
}
