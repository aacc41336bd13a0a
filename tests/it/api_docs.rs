//! docs/api.md, run: its requests go, in order, to a fresh daemon, and each
//! answer must be the one the page shows. Ids, run ids and times differ
//! from run to run: an id the page shows stands for the one the daemon gave,
//! in later requests too, and a time for any time. A `"...": "..."` key or
//! a last `"..."` item marks an object or list the page shows in part.
//! Every operation of /api/v1/openapi.json has an example on the page.
//!
//! `CREWSHIP_BLESS_API_DOCS=1` writes the daemon's answers into the page
//! instead (keeping its `...` cuts), for review in the diff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::api_reference::{document, operations};
use crate::common::fake_docker::FakeDocker;
use crate::common::{Daemon, Reply};
use crate::tools::poll_for;

const MORE: &str = "...";
/// Values that differ from host to host and from second to second.
const VOLATILE: &[&str] = &[
    "uptime_seconds",
    "free_bytes",
    "path",
    "version",
    "hostname",
    "host",
    "cpu_percent",
    "memory_used_bytes",
    "memory_limit_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "pids",
];

fn page() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")
}

#[derive(Clone)]
struct Exchange {
    /// Where the request's block starts in the page, and where the
    /// answer's starts and ends (exclusive).
    request_start: usize,
    answer_lines: (usize, usize),
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
    status: u16,
    answer: Answer,
}

#[derive(Clone)]
enum Answer {
    Json(Value),
    Text(String),
}

/// The page's ```http blocks, a request then its answer.
fn exchanges(text: &str) -> Vec<Exchange> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i] == "```http" {
            let start = i + 1;
            let end = start + lines[start..].iter().position(|l| *l == "```").expect("an http block ends");
            blocks.push((start, end));
            i = end;
        }
        i += 1;
    }
    let mut out = Vec::new();
    for pair in blocks.chunks(2) {
        let [(rs, re), (as_, ae)] = pair else {
            panic!("docs/api.md line {}: a request without its answer", pair[0].0)
        };
        let request = &lines[*rs..*re];
        let (method, path) = request[0].split_once(' ').unwrap_or_else(|| panic!("line {rs}: {:?}", request[0]));
        let body = request.iter().position(|l| l.is_empty()).map(|blank| request[blank + 1..].join("\n"));
        let body = body.map(|b| serde_json::from_str(&b).unwrap_or_else(|e| panic!("line {rs}: request body: {e}")));
        let answer = &lines[*as_..*ae];
        let status_line = answer[0].strip_prefix("HTTP/1.1 ").unwrap_or_else(|| panic!("line {as_}: {:?}", answer[0]));
        let status = status_line[..3].parse().expect("a status");
        let rest = answer.iter().position(|l| l.is_empty()).map(|b| answer[b + 1..].join("\n")).unwrap_or_default();
        let answer = if rest.trim_start().starts_with(['{', '[']) {
            Answer::Json(serde_json::from_str(&rest).unwrap_or_else(|e| panic!("line {as_}: answer: {e}")))
        } else {
            Answer::Text(rest)
        };
        out.push(Exchange {
            request_start: *rs,
            answer_lines: (*as_, *ae),
            method: method.parse().expect("a method"),
            path: path.to_string(),
            body,
            status,
            answer,
        });
    }
    out
}

fn is_id(key: &str) -> bool {
    key == "id" || key.ends_with("_id") || key == "node"
}

fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') && s.ends_with('Z'))
}

/// Whether `got` is what the page shows as `shown`, learning which id of
/// the daemon's each id of the page stands for.
fn check(shown: &Value, got: &Value, key: &str, ids: &mut HashMap<String, String>, at: &str) -> Result<(), String> {
    let differ = || Err(format!("{at}: the page shows {shown}, the daemon answered {got}"));
    match (shown, got) {
        (Value::String(s), Value::String(g)) if is_id(key) => match ids.get(s) {
            Some(known) if known != g => differ(),
            _ => {
                ids.insert(s.clone(), g.clone());
                Ok(())
            }
        },
        _ if VOLATILE.contains(&key) && std::mem::discriminant(shown) == std::mem::discriminant(got) => Ok(()),
        _ if is_time(shown) && is_time(got) => Ok(()),
        (Value::Number(s), Value::Number(g)) if s.as_f64() == g.as_f64() => Ok(()),
        (Value::Object(s), Value::Object(g)) => {
            let partial = s.contains_key(MORE);
            for (k, v) in s.iter().filter(|(k, _)| *k != MORE) {
                let gv = g.get(k).ok_or_else(|| format!("{at}.{k}: the daemon's answer has no such field"))?;
                check(v, gv, k, ids, &format!("{at}.{k}"))?;
            }
            let extra: Vec<&String> = g.keys().filter(|k| !s.contains_key(*k)).collect();
            if !partial && !extra.is_empty() {
                return Err(format!("{at}: fields the page does not show: {extra:?}"));
            }
            Ok(())
        }
        (Value::Array(s), Value::Array(g)) => {
            let partial = s.last() == Some(&Value::String(MORE.into()));
            let shown_items = if partial { &s[..s.len() - 1] } else { &s[..] };
            if (partial && g.len() < shown_items.len()) || (!partial && g.len() != s.len()) {
                return Err(format!("{at}: the page shows {} items, the daemon answered {}", s.len(), g.len()));
            }
            for (i, (sv, gv)) in shown_items.iter().zip(g).enumerate() {
                check(sv, gv, key, ids, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        // A text naming ids (a container's name) names the daemon's.
        (Value::String(s), Value::String(g)) if substitute(s, ids) == *g => Ok(()),
        _ if shown == got => Ok(()),
        _ => differ(),
    }
}

/// The page's ids replaced by the daemon's.
fn substitute(text: &str, ids: &HashMap<String, String>) -> String {
    let mut longest_first: Vec<_> = ids.iter().collect();
    longest_first.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    longest_first.iter().fold(text.to_string(), |t, (page, daemon)| t.replace(page.as_str(), daemon))
}

/// `got` cut where the page cuts `shown`.
fn cut_like(shown: &Value, got: &Value) -> Value {
    match (shown, got) {
        (Value::Object(s), Value::Object(g)) if s.contains_key(MORE) => {
            let mut out: serde_json::Map<String, Value> =
                g.iter().filter(|(k, _)| s.contains_key(*k)).map(|(k, v)| (k.clone(), cut_like(&s[k], v))).collect();
            out.insert(MORE.into(), MORE.into());
            Value::Object(out)
        }
        (Value::Object(s), Value::Object(g)) => Value::Object(
            g.iter().map(|(k, v)| (k.clone(), s.get(k).map_or_else(|| v.clone(), |sv| cut_like(sv, v)))).collect(),
        ),
        (Value::Array(s), Value::Array(g)) if s.last() == Some(&Value::String(MORE.into())) => {
            let keep = s.len() - 1;
            let mut out: Vec<Value> = s[..keep].iter().zip(g).map(|(sv, gv)| cut_like(sv, gv)).collect();
            out.push(MORE.into());
            Value::Array(out)
        }
        (Value::Array(s), Value::Array(g)) => {
            g.iter().enumerate().map(|(i, gv)| s.get(i).map_or_else(|| gv.clone(), |sv| cut_like(sv, gv))).collect()
        }
        _ => got.clone(),
    }
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("")
}

fn answer_block(r: &Reply, shown: &Answer) -> Vec<String> {
    let status = r.status.as_u16();
    let mut out = vec![format!("HTTP/1.1 {status} {}", reason(status)), String::new()];
    match shown {
        Answer::Json(shown) => {
            out.extend(serde_json::to_string_pretty(&cut_like(shown, &r.body)).unwrap().lines().map(String::from));
        }
        Answer::Text(_) => out.extend(r.text.lines().map(String::from)),
    }
    out
}

/// `/api/v1/crews/research/agents/agt_1` is an example of
/// `/api/v1/crews/{crew}/agents/{agent}`.
fn instance_of(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

/// The page's answer as a sketch: every object shown in part.
fn loosen(answer: &Answer) -> Answer {
    fn walk(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out: serde_json::Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), walk(v))).collect();
                out.insert(MORE.into(), MORE.into());
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(walk).collect()),
            other => other.clone(),
        }
    }
    match answer {
        Answer::Json(v) => Answer::Json(walk(v)),
        Answer::Text(t) => Answer::Text(t.clone()),
    }
}

/// Records, wherever the page and the answer both hold an id, which of
/// the daemon's ids the page's stands for (for blessing, which does not
/// stop at the first difference).
fn learn(shown: &Value, got: &Value, key: &str, ids: &mut HashMap<String, String>) {
    match (shown, got) {
        (Value::String(s), Value::String(g)) if is_id(key) => {
            ids.insert(s.clone(), g.clone());
        }
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in s {
                if let Some(gv) = g.get(k) {
                    learn(v, gv, k, ids);
                }
            }
        }
        (Value::Array(s), Value::Array(g)) => s.iter().zip(g).for_each(|(sv, gv)| learn(sv, gv, key, ids)),
        _ => {}
    }
}

/// Whether `r` is the page's answer; if so, the ids it taught.
fn judge(e: &Exchange, r: &Reply, ids: &HashMap<String, String>) -> Result<HashMap<String, String>, String> {
    let what = format!("{} {} (docs/api.md line {})", e.method, e.path, e.answer_lines.0);
    if r.status.as_u16() != e.status {
        return Err(format!("{what}: status {}, the page shows {}: {}", r.status, e.status, r.text));
    }
    let mut learned = ids.clone();
    match &e.answer {
        Answer::Json(shown) => check(shown, &r.body, "", &mut learned, &what)?,
        Answer::Text(shown) if shown.trim() == r.text.trim() => {}
        Answer::Text(shown) => {
            return Err(format!("{what}: the page shows {shown:?}, the daemon answered {:?}", r.text));
        }
    }
    Ok(learned)
}

/// Asks, and asks again while the answer is not `e`'s, for up to
/// `patience`: a GET may show a later moment (a run that ended).
async fn ask(
    d: &Daemon,
    e: &Exchange,
    path: &str,
    body: Option<Value>,
    ids: &HashMap<String, String>,
    patience: Duration,
) -> Reply {
    let asked = poll_for(patience, || async {
        let r = d.request(e.method.clone(), path, body.clone()).await;
        if judge(e, &r, ids).is_ok() { Ok(r) } else { Err(r) }
    });
    let (Ok(r) | Err(r)) = asked.await;
    r
}

#[tokio::test]
async fn every_example_of_the_api_page_is_what_the_daemon_answers() {
    let bless = std::env::var("CREWSHIP_BLESS_API_DOCS").is_ok_and(|v| v == "1");
    let text = std::fs::read_to_string(page()).expect("docs/api.md");
    let exchanges = exchanges(&text);
    let engine = FakeDocker::start().await;
    let d = Daemon::start_with(&[("DOCKER_HOST", &engine.host()), ("CREWSHIP_STATS_INTERVAL", "100ms")]).await;

    let shown: Vec<String> = exchanges.iter().map(|e| format!("{} {}", e.method, e.path)).collect();
    for op in operations(&document(&d).await) {
        let (method, template) = op.split_once(' ').unwrap();
        let example =
            shown.iter().any(|s| s.split_once(' ').is_some_and(|(m, p)| m == method && instance_of(template, p)));
        assert!(example, "docs/api.md has no example of {op}");
    }

    let mut ids = HashMap::new();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut edits: Vec<((usize, usize), Vec<String>)> = Vec::new();
    for e in &exchanges {
        let path = substitute(&e.path, &ids);
        let body = e.body.as_ref().map(|b| serde_json::from_str(&substitute(&b.to_string(), &ids)).unwrap());
        let patience = if e.method == reqwest::Method::GET { Duration::from_secs(20) } else { Duration::ZERO };
        // Blessing waits for the moment the page shows in the fields it
        // names, and writes down the rest as answered.
        let sketch = Exchange { answer: loosen(&e.answer), ..e.clone() };
        let reply = ask(&d, if bless { &sketch } else { e }, &path, body, &ids, patience).await;
        match judge(e, &reply, &ids) {
            Ok(learned) => ids = learned,
            Err(why) if bless => {
                eprintln!("blessing: {why}");
                // The page's requests name the ids of this run from now on.
                let start = e.request_start;
                let request: Vec<String> = lines[start..e.answer_lines.0].iter().map(|l| substitute(l, &ids)).collect();
                edits.push(((start, e.answer_lines.0), request));
                if let Answer::Json(shown) = &e.answer {
                    learn(shown, &reply.body, "", &mut ids);
                }
                edits.push((e.answer_lines, answer_block(&reply, &e.answer)));
            }
            Err(why) => panic!("{why}\n(CREWSHIP_BLESS_API_DOCS=1 writes the daemon's answers into the page)"),
        }
    }
    if bless {
        for ((start, end), new) in edits.into_iter().rev() {
            lines.splice(start..end, new);
        }
        std::fs::write(page(), lines.join("\n") + "\n").expect("write docs/api.md");
    }
}
