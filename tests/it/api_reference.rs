//! The API reference: `GET /api/v1/openapi.json` covers the contract's
//! routes, and schemathesis, fuzzing a live daemon from that document,
//! finds no 5xx and no answer that breaks it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::process::Command;

use crate::common::Daemon;
use crate::common::fake_docker::FakeDocker;
use crate::tools;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `METHOD /path` of every operation the document describes.
pub fn operations(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    out
}

pub async fn document(d: &Daemon) -> Value {
    let r = d.get("/api/v1/openapi.json").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

#[tokio::test]
async fn the_description_covers_the_contract_and_only_what_is_served() {
    let d = Daemon::start().await;
    let doc = document(&d).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    assert_eq!(d.anonymous(reqwest::Method::GET, "/api/v1/openapi.json", None).await.status, 401);
    let ops = operations(&doc);

    // Every route API.md fixes is described: "`GET|PATCH|DELETE /api/v1/crews/{crew}`".
    let spec = repo("../shared/spec/API.md");
    let Ok(contract) = std::fs::read_to_string(&spec) else {
        return tools::missing("the contract", &format!("{} (../shared beside the repository)", spec.display()))
            .unwrap_or(());
    };
    let mut named = BTreeSet::new();
    for quoted in contract.split('`').skip(1).step_by(2) {
        let Some((methods, path)) = quoted.split_once(' ') else { continue };
        let path = path.split(['?', ' ']).next().unwrap_or_default();
        if !(path.starts_with("/api/v1/") || path == "/healthz" || path == "/readyz") {
            continue;
        }
        if !methods.split('|').all(|m| ["GET", "POST", "PATCH", "DELETE", "PUT"].contains(&m)) {
            continue;
        }
        for m in methods.split('|') {
            named.insert(format!("{m} {path}"));
        }
    }
    assert!(named.len() >= 30, "the contract's routes were not read: {named:?}");
    let undescribed: Vec<_> = named.difference(&ops).collect();
    assert!(undescribed.is_empty(), "routes of API.md with no description: {undescribed:?}");

    // Every described operation is served: none answers "no such route", and
    // its id is unique.
    let mut ids = BTreeSet::new();
    for op in &ops {
        let (method, path) = op.split_once(' ').unwrap();
        let concrete = path.replace("{crew}", "nope").replace("{agent}", "nope").replace("{slug}", "nope");
        let concrete = concrete.replace("{id}", "nope");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE).then(|| json!({}));
        let r = d.request(method, &concrete, body).await;
        assert!(r.body["error"]["message"] != "no such route", "{op} is described but not served: {:?}", r.body);
        let item = &doc["paths"][path][op.split_once(' ').unwrap().0.to_lowercase()];
        assert!(ids.insert(item["operationId"].as_str().unwrap_or_default().to_string()), "{op}: duplicate id");
        for (status, response) in item["responses"].as_object().unwrap() {
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            assert!(!status.starts_with(['4', '5']) || schema.is_string(), "{op} {status} has no body: {response}");
        }
    }
}

/// schemathesis, from the test venv.
async fn schemathesis() -> Option<PathBuf> {
    let python = tools::python().await?;
    let bin = python.with_file_name("schemathesis");
    if bin.is_file() {
        Some(bin)
    } else {
        tools::missing("schemathesis", "pip install -r scripts/requirements.txt (scripts/test.sh does)")
    }
}

/// A figure of schemathesis's summary: `Tested: 39`, `2085 generated, ...`.
fn summary_figure(out: &str, label: &str) -> Option<usize> {
    let line = out.lines().find(|l| l.contains(label))?.trim();
    let figure = match line.strip_prefix(label) {
        Some(after) => after.trim().split('/').next()?,
        None => line.split_whitespace().next()?,
    };
    figure.parse().ok()
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let Some(schemathesis) = schemathesis().await else { return };
    let engine = FakeDocker::start().await;
    // Generated agents run generated commands: with no PATH, none of them
    // names a program that exists.
    let d = Daemon::start_with(&[("DOCKER_HOST", &engine.host()), ("PATH", "/nonexistent")]).await;
    d.ok("/api/v1/crews", json!({"slug": "research", "name": "Research"}), 201).await;
    let writer = json!({"slug": "writer", "name": "Writer", "command": ["/bin/true"]});
    d.ok("/api/v1/crews/research/agents", writer, 201).await;
    let described = operations(&document(&d).await).len();

    let seed = std::env::var("CREWSHIP_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let config = repo("tests/it/schemathesis/schemathesis.toml");
    let out = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &d.url("/api/v1/openapi.json"), "--url", &d.url("")])
        .args(["-H", &format!("Authorization: {}", d.bearer()), "--max-examples", "25", "--seed", &seed])
        // One worker: with two, Hypothesis (under Python 3.11) can parse
        // lambda sources in two threads at once and fail with "AST
        // constructor recursion depth mismatch", an error of the tool's own.
        .args(["--workers", "1", "--no-color"])
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found failures (seed {seed}):\n{text}");
    // All but the one that serves the document, which schemathesis leaves out.
    assert_eq!(summary_figure(&text, "Tested:"), Some(described - 1), "every operation is tested:\n{text}");
    let cases = summary_figure(&text, " generated, ").unwrap_or(0);
    assert!(cases >= 10 * described, "{cases} cases for {described} operations:\n{text}");
    eprintln!("schemathesis (seed {seed}): {cases} cases over {} operations, all passed", described - 1);
    assert_eq!(d.get("/readyz").await.status, 200, "the daemon is still ready after the run");
}
