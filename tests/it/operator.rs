//! The operator's kit around the daemon: `crewshipd --check-config`, and
//! the systemd unit with its environment file, checked by systemd's own
//! verifier and by the daemon's configuration check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::bin;
use crate::tools;

fn deploy(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `crewshipd --check-config` with exactly `env` (and a HOME in `home`).
fn check_config(home: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("--check-config")
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run crewshipd --check-config")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn check_config_prints_the_effective_settings_with_secrets_redacted() {
    let home = tempfile::tempdir().unwrap();
    let o = check_config(
        home.path(),
        &[
            ("CREWSHIP_API_TOKEN", "api-secret-4711"),
            ("CREWSHIP_METRICS_TOKEN", "scrape-secret-4711"),
            ("CREWSHIP_DATABASE_URL", "postgres://app:pw-secret-4711@127.0.0.1:5432/crew"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20otlp-secret-4711"),
            ("CREWSHIP_PORT", "9090"),
        ],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(!format!("{out}{err}").contains("secret-4711"), "a secret was printed:\n{out}\n{err}");
    for line in [
        "CREWSHIP_PORT=9090  (CREWSHIP_PORT)",
        "CREWSHIP_HOST=0.0.0.0  (default)",
        "CREWSHIP_API_TOKEN=<redacted>  (CREWSHIP_API_TOKEN)",
        "CREWSHIP_METRICS_TOKEN=<redacted>  (CREWSHIP_METRICS_TOKEN)",
        "CREWSHIP_DATABASE_URL=postgres://app:<redacted>@127.0.0.1:5432/crew  (CREWSHIP_DATABASE_URL)",
        "OTEL_EXPORTER_OTLP_HEADERS=<redacted>  (OTEL_EXPORTER_OTLP_HEADERS)",
        "OTEL_TRACES_SAMPLER=parentbased_always_on  (default)",
        "# configuration OK",
    ] {
        assert!(out.lines().any(|l| l == line), "no line {line:?} in:\n{out}");
    }
    // One line a setting, as many as the README's table has rows.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rows = readme.split("\n## Configuration\n").nth(1).unwrap().lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), rows, "{out}");
    // It only looks: nothing was created, no port was bound.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0, "--check-config wrote into HOME");
}

#[test]
fn check_config_fails_naming_what_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    let o = check_config(home.path(), &[("CREWSHIP_PORT", "80a")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("CREWSHIP_PORT") && err.contains("80a"), "{err}");
    assert!(out.contains("CREWSHIP_PORT=80a  (CREWSHIP_PORT)") && !out.contains("configuration OK"), "{out}");

    let card = home.path().join("card.json");
    std::fs::write(&card, "{not json").unwrap();
    let o = check_config(home.path(), &[("CREWSHIP_RATE_CARD", card.to_str().unwrap())]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("card.json"), "the bad file is named: {err}");
}

/// The unit's hardening, as the issue lists it, and systemd's verifier.
#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = deploy("systemd/crewshipd.service");
    for key in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/crewshipd",
        "Delegate=yes",
        "EnvironmentFile=/etc/crewshipd/crewshipd.env",
        "ExecStart=/usr/local/bin/crewshipd",
    ] {
        assert!(unit.lines().any(|l| l == key), "{key} missing from the unit");
    }
    let Some(analyze) = systemd_analyze() else { return };
    // The verifier wants the executable to exist: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crewshipd.service");
    let verify = |unit: &str| {
        std::fs::write(&path, unit.replace("/usr/local/bin/crewshipd", bin())).unwrap();
        let o = Command::new(&analyze).arg("verify").arg(&path).output().expect("systemd-analyze verify");
        let (out, err) = text(&o);
        // It reports a unit's problems on stderr, naming the unit file.
        let findings: Vec<String> = err.lines().filter(|l| l.contains("crewshipd.service")).map(String::from).collect();
        (o.status.success(), findings, format!("{out}\n{err}"))
    };
    let (ok, findings, all) = verify(&unit);
    assert!(ok && findings.is_empty(), "systemd-analyze verify:\n{all}");
    // The verifier does find a mistake here.
    let (_, findings, _) = verify(&unit.replace("ProtectSystem=strict", "ProtectSystem=sideways"));
    assert!(!findings.is_empty(), "a bad ProtectSystem went unnoticed");
}

/// The environment file example passes the daemon's own check, with its
/// paths moved into a scratch directory.
#[test]
fn the_environment_file_example_checks_out() {
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("metrics-token"), "a-scrape-token\n").unwrap();
    let file = deploy("systemd/crewshipd.env").replace("/etc/crewshipd", etc.path().to_str().unwrap());
    let vars: Vec<(String, String)> = file
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(vars.len() >= 4, "{vars:?}");
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o = check_config(etc.path(), &env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(out.contains("CREWSHIP_METRICS_TOKEN_FILE="), "{out}");
}

fn systemd_analyze() -> Option<PathBuf> {
    let found = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].iter().map(PathBuf::from).find(|p| p.is_file());
    found.or_else(|| tools::missing("systemd-analyze", "apt-get install systemd (scripts/test.sh does)"))
}

/// A stand-in for an OpenAI-compatible API: answers chat completions with
/// fixed usage (or `status`), and keeps the headers it was sent.
async fn fake_llm(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<axum::http::HeaderMap>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<serde_json::Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(headers);
                let task = body["messages"][0]["content"].as_str().unwrap_or_default().to_string();
                let answer = serde_json::json!({
                    "model": "gpt-4o-mini-2024-07-18",
                    "choices": [{"message": {"role": "assistant", "content": format!("summary of: {}", task.trim())}}],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "prompt_tokens_details": {"cached_tokens": 400}},
                });
                (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

/// The JSON examples of docs/agents.md, in order.
fn agents_doc_examples() -> Vec<serde_json::Value> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/agents.md")).unwrap();
    doc.split("```json\n")
        .skip(1)
        .map(|b| serde_json::from_str(b.split("```").next().unwrap()).unwrap_or_else(|e| panic!("{e}: {b}")))
        .collect()
}

/// docs/agents.md's worked agent (`examples/agents/llm_agent.py`), created
/// with the page's own JSON, run against a fake LLM API: its answer is the
/// result, its call is in the ledger against it, priced by the rate card,
/// and a refusal fails the run with the agent's own reason. The page's
/// LLM-call body is recorded as written too.
#[tokio::test]
async fn the_worked_agent_records_its_llm_call_against_its_run() {
    let [call, agent] = <[serde_json::Value; 2]>::try_from(agents_doc_examples()).expect("two JSON examples");
    let d = crate::common::Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "0s")]).await;
    let recorded = d.ok("/api/v1/llm-calls", call, 201).await;
    assert_eq!(recorded["priced"], true, "{recorded}");

    let (base, seen) = fake_llm(200).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agents/llm_agent.py");
    let mut agent = agent;
    agent["command"][1] = script.to_str().unwrap().into();
    agent["env"]["LLM_API_URL"] = base.clone().into();
    d.ok("/api/v1/crews", serde_json::json!({"slug": "writers", "name": "W", "max_concurrent_agents": 1}), 201).await;
    d.ok("/api/v1/crews/writers/agents", agent, 201).await;
    let before = d.get("/api/v1/paymaster/spend?group_by=agent").await.body;
    assert!(before["rows"].as_array().unwrap().iter().all(|r| r["key"] != "writer"), "{before}");
    let a = d.run_to_end("writers", "writer", "the quarterly report").await;
    assert_eq!(a["status"], "completed", "{a}");
    assert_eq!(a["result_summary"], "summary of: the quarterly report");
    let headers = seen.lock().unwrap().clone();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0]["authorization"], "Bearer sk-your-key");
    let run_id = a["run_id"].as_str().unwrap();
    assert!(headers[0]["traceparent"].to_str().unwrap().starts_with(&format!("00-{run_id}-")));

    // Booked against the run's agent, the cached prompt tokens apart.
    let spend = d.get("/api/v1/paymaster/spend?group_by=agent").await.body;
    let row =
        spend["rows"].as_array().unwrap().iter().find(|r| r["key"] == "writer").cloned().expect("the agent's row");
    assert_eq!(row["calls"], 1);
    assert_eq!(row["input_tokens"], 600);
    assert_eq!(row["output_tokens"], 200);
    assert!(row["cost_usd"].as_f64().unwrap() > 0.0, "priced by the rate card: {row}");
    let page = tools::parse_page(&d.metrics().await);
    let cached = page
        .series("crewshipd_llm_tokens_total")
        .into_iter()
        .find(|s| s.label("provider") == Some("openai") && s.label("type") == Some("cached_input"));
    assert_eq!(cached.map(|s| s.value()), Some(800.0), "the page's call (400) and the agent's (400)");

    // The API refuses: the run fails, saying why.
    let (bad, _) = fake_llm(401).await;
    let patch = serde_json::json!({"env": {"LLM_API_URL": bad, "LLM_API_KEY": "sk-wrong"}});
    assert_eq!(d.patch("/api/v1/crews/writers/agents/writer", patch).await.status, 200);
    let failed = d.run_to_end("writers", "writer", "again").await;
    assert_eq!(failed["status"], "failed");
    let msg = failed["error_message"].as_str().unwrap();
    assert!(msg.starts_with("exit status 1: the LLM API answered 401"), "{msg}");
}

/// The README's install commands, run into a scratch root: every line but
/// the `cargo install` ones as written, with `/usr` and `/etc` moved under
/// the scratch directory and the binaries this test build made. The
/// `cargo install` lines, release builds, run at the end of scripts/test.sh
/// (scripts/install_check.sh): here they would wait on the build lock of
/// the suite's own cargo.
#[test]
fn the_readme_install_commands_work() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Install\n").nth(1).expect("an Install section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    let (builds, lines): (Vec<&str>, Vec<&str>) = block.lines().partition(|l| l.starts_with("cargo install "));
    assert_eq!(
        builds,
        [
            "cargo install --path . --locked --root /usr/local",
            "cargo install --path crates/cli --locked --root /usr/local"
        ]
    );
    let root = tempfile::tempdir().unwrap();
    let bin_dir = root.path().join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    // What `cargo install` would put there: this build's binaries, linked
    // rather than copied (an executable written while other tests fork
    // can be refused with ETXTBSY).
    for b in [Path::new(bin()), crate::common::cli_bin()] {
        let name = b.file_name().unwrap();
        std::os::unix::fs::symlink(b, bin_dir.join(name)).unwrap();
    }
    std::fs::create_dir_all(root.path().join("usr/share/bash-completion/completions")).unwrap();
    let r = root.path().to_str().unwrap();
    for line in &lines {
        let line = line.replace(" /usr/", &format!(" {r}/usr/")).replace(" /etc/", &format!(" {r}/etc/"));
        let o = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("HOME", root.path())
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{line}:\n{out}\n{err}");
    }
    for f in [
        "usr/share/bash-completion/completions/crewship",
        "usr/local/share/man/man1/crewship.1",
        "usr/local/share/man/man8/crewshipd.8",
        "etc/systemd/system/crewshipd.service",
        "etc/crewshipd/crewshipd.env",
    ] {
        assert!(root.path().join(f).is_file(), "{f} was not installed");
    }
}
