//! The harness the story tests share: the real `crewshipd` binary on a free
//! loopback port with a temporary data directory, an HTTP client, and a
//! WebSocket client for awaiting events instead of sleeping.

#![allow(dead_code)]

pub mod api;
pub mod db;
pub mod fake_docker;
pub mod pg;
pub mod ws;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Longest any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How the daemon process is started, beyond its environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Launch {
    /// RLIMIT_NOFILE (soft and hard) for the daemon.
    pub open_files: Option<u64>,
    /// Standard error is a pipe whose reading end is closed at once.
    pub closed_stderr: bool,
}

pub struct Daemon {
    child: Child,
    launch: Launch,
    pub base: String,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
    env: Vec<(String, String)>,
    client: reqwest::Client,
    /// The API token every /api and /ws request of the harness sends.
    pub token: String,
    /// The database it runs on.
    pub database: db::Database,
}

/// A response: status, headers and the body as JSON (or a string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The `error.code` of an error reply.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_crewshipd")
}

/// The CLI's binary, `crewship`, beside the daemon's: another crate's, so
/// cargo builds it for these tests only when asked (`cargo build
/// --workspace`, as scripts/test.sh does first; a nested build would wait
/// on this run's own build lock). One older than the CLI's sources fails.
pub fn cli_bin() -> &'static std::path::Path {
    static FOUND: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let cli = std::path::Path::new(bin()).with_file_name("crewship");
        let built = std::fs::metadata(&cli).and_then(|m| m.modified()).unwrap_or_else(|e| {
            panic!("{}: {e}; build it with `cargo build --workspace` (scripts/test.sh does)", cli.display())
        });
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
        let newest = newest_change(&root);
        assert!(
            built >= newest,
            "{} is older than the sources under crates/: rebuild it with `cargo build --workspace`",
            cli.display()
        );
        cli
    })
}

/// The latest modification of any file under `dir`.
fn newest_change(dir: &std::path::Path) -> std::time::SystemTime {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { newest_change(&path) } else { e.metadata().and_then(|m| m.modified()).unwrap() }
        })
        .max()
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

impl Daemon {
    pub async fn start() -> Daemon {
        Daemon::start_with(&[]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Daemon {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Daemon::start_in(dir, env).await
    }

    /// Starts on an existing data directory (a restart).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> Daemon {
        Daemon::launch(dir, env, Launch::default()).await
    }

    pub async fn launch(dir: Arc<tempfile::TempDir>, env: &[(&str, &str)], launch: Launch) -> Daemon {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Daemon::spawn(dir, env, launch).await
    }

    async fn spawn(dir: Arc<tempfile::TempDir>, env: Vec<(String, String)>, launch: Launch) -> Daemon {
        let (mut child, line, database) = spawn_child(dir.path(), &env, launch).await;
        let Some(line) = line else {
            let _ = child.start_kill();
            panic!("crewshipd exited at start:\n{}", log_of(dir.path()))
        };
        let addr = line.rsplit("http://").next().expect("address line").trim().to_string();
        let port = addr.rsplit(':').next().unwrap().parse().expect("port");
        let setting = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let data_dir = setting("CREWSHIP_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| dir.path().to_path_buf());
        let token = setting("CREWSHIP_API_TOKEN").map(|t| t.trim().to_string()).unwrap_or_else(|| {
            std::fs::read_to_string(data_dir.join("api-token")).map(|t| t.trim().to_string()).unwrap_or_default()
        });
        Daemon {
            child,
            launch,
            base: format!("http://{addr}"),
            port,
            dir,
            env,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            token,
            database,
        }
    }

    /// Starts a daemon that is expected to refuse to start: its exit status
    /// and its log.
    pub async fn start_failure(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        Daemon::start_failure_in(dir.path(), env).await
    }

    pub async fn start_failure_in(dir: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (mut child, line, _) = spawn_child(dir, &env, Launch::default()).await;
        assert!(line.is_none(), "crewshipd started: {line:?}");
        let status = tokio::time::timeout(PATIENCE, child.wait()).await.expect("exit in time").expect("wait");
        (status, log_of(dir))
    }

    /// `Authorization: Bearer <the API token>`.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the daemon to exit, at most `within`.
    pub async fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait()).await.ok().map(|r| r.expect("wait"))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("crewship.db")
    }

    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request as an operator: API paths carry the API token.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if path.starts_with("/api/") {
            req = req.header("authorization", self.bearer());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_reply(req.send().await.expect("request")).await
    }

    /// A request with no credentials at all.
    pub async fn anonymous(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_reply(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.request(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None).await
    }

    /// A raw body (for malformed-JSON tests).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .header("authorization", self.bearer())
            .body(body)
            .send()
            .await
            .expect("request");
        into_reply(resp).await
    }

    /// A GET whose answer must have `status`, read as a `T`.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str, status: u16) -> T {
        Daemon::typed(self.get(path).await, "GET", path, status)
    }

    /// A POST whose answer must have `status`, read as a `T`.
    pub async fn post_as<T: serde::de::DeserializeOwned>(&self, path: &str, body: Value, status: u16) -> T {
        Daemon::typed(self.post(path, body).await, "POST", path, status)
    }

    fn typed<T: serde::de::DeserializeOwned>(r: Reply, method: &str, path: &str, status: u16) -> T {
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.text);
        serde_json::from_value(r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not the expected shape ({e}): {}", r.text))
    }

    /// POSTs and asserts the status, returning the body.
    pub async fn ok(&self, path: &str, body: Value, status: u16) -> Value {
        let r = self.post(path, body).await;
        assert_eq!(r.status.as_u16(), status, "POST {path}: {}", r.text);
        r.body
    }

    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.text
    }

    pub async fn ws(&self) -> ws::Client {
        ws::Client::connect(&self.base, &[("authorization", &self.bearer())]).await
    }

    /// Records an LLM call of `provider` at a given cost.
    pub async fn llm_call(&self, provider: &str, usd: f64) {
        let body = json!({"provider": provider, "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": usd});
        self.ok("/api/v1/llm-calls", body, 201).await;
    }

    /// A crew with one agent running `script` under `sh -c`.
    pub async fn crew_with_agent(&self, slug: &str, max: i64, script: &str) -> (Value, Value) {
        let crew =
            self.ok("/api/v1/crews", json!({"slug": slug, "name": slug, "max_concurrent_agents": max}), 201).await;
        let agent = self
            .ok(
                &format!("/api/v1/crews/{slug}/agents"),
                json!({"slug": "worker", "name": "Worker", "command": ["sh", "-c", script]}),
                201,
            )
            .await;
        (crew, agent)
    }

    /// Submits an assignment and waits (on the event stream) until it ends.
    pub async fn run_to_end(&self, crew: &str, agent: &str, task: &str) -> Value {
        let mut ws = self.ws().await;
        ws.subscribe(&["assignments"]).await;
        let a = self.ok("/api/v1/assignments", json!({"crew": crew, "agent": agent, "task": task}), 201).await;
        let id = a["id"].as_str().unwrap().to_string();
        self.await_assignment(&mut ws, &id, &["completed", "failed", "cancelled"]).await
    }

    /// Waits for an assignment to reach one of `statuses`: checks the
    /// stored state, then follows events (subscribe first to miss nothing).
    pub async fn await_assignment(&self, ws: &mut ws::Client, id: &str, statuses: &[&str]) -> Value {
        let current = self.get(&format!("/api/v1/assignments/{id}")).await.body;
        if statuses.contains(&current["status"].as_str().unwrap_or_default()) {
            return current;
        }
        ws.next_matching(|f| {
            f["channel"] == "assignments"
                && f["data"]["id"] == id
                && statuses.contains(&f["data"]["status"].as_str().unwrap_or_default())
        })
        .await;
        self.get(&format!("/api/v1/assignments/{id}")).await.body
    }

    /// Polls a running run's output until it contains `text`: output
    /// arrives with no event of its own.
    pub async fn await_output(&self, run_id: &str, text: &str) {
        let path = format!("/api/v1/runs/{run_id}/output");
        let shown = crate::tools::poll_for(PATIENCE, || async {
            let output = self.get(&path).await.text;
            if output.contains(text) { Ok(()) } else { Err(output) }
        });
        if let Err(output) = shown.await {
            panic!("run output never showed {text:?}: {output}");
        }
    }

    /// SIGKILL: no chance to clean up.
    pub async fn kill9(mut self) -> Arc<tempfile::TempDir> {
        self.child.kill().await.expect("kill -9");
        self.dir.clone()
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, Arc<tempfile::TempDir>) {
        self.signal(libc::SIGTERM);
        let status = self.exit_within(PATIENCE).await.expect("exit in time");
        (status, self.dir.clone())
    }

    /// Restarts on the same data directory and environment.
    pub async fn restart_after_kill9(self) -> Daemon {
        let (env, launch) = (self.env.clone(), self.launch);
        let dir = self.kill9().await;
        Daemon::spawn(dir, env, launch).await
    }

    pub async fn restart(self) -> Daemon {
        let (env, launch) = (self.env.clone(), self.launch);
        let (status, dir) = self.terminate().await;
        assert!(status.success(), "crewshipd exited with {status}");
        Daemon::spawn(dir, env, launch).await
    }
}

/// Starts `crewshipd` with the harness's environment plus `env`, its log in
/// `dir/crewshipd.log`, on the directory's test database unless `env` names
/// one: the child, the first line it printed (None if it exited first) and
/// the database.
async fn spawn_child(dir: &Path, env: &[(String, String)], launch: Launch) -> (Child, Option<String>, db::Database) {
    let database = match env.iter().find(|(k, _)| k == "CREWSHIP_DATABASE_URL") {
        Some((_, url)) if url.starts_with("postgres") => db::Database::Postgres(url.clone()),
        Some((_, url)) => db::Database::Sqlite(PathBuf::from(url.trim_start_matches("sqlite:"))),
        None => db::Database::of(dir).await,
    };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("crewshipd.log")).expect("log file");
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("CREWSHIP_DATA_DIR", dir)
        .env("CREWSHIP_HOST", "127.0.0.1")
        .env("CREWSHIP_PORT", "0")
        .env("CREWSHIP_HOSTNAME", "test-host")
        .env("CREWSHIP_LOG", "info")
        .envs(database.url().map(|u| ("CREWSHIP_DATABASE_URL", u)))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if launch.closed_stderr {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(log);
    }
    if let Some(n) = launch.open_files {
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().expect("spawn crewshipd");
    // Nobody will ever read what the daemon writes there.
    drop(child.stderr.take());
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("crewshipd did not start (or exit) in time")
        .expect("read stdout");
    (child, line, database)
}

pub async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Reply { status, headers, body, text }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("crewshipd.log")).unwrap_or_default()
}

/// The value of an unlabelled-but-hostname series, or of one with the
/// given extra label, from a text-format page.
pub fn sample(page: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, labels) = series.split_once('{')?;
        if n != name {
            return None;
        }
        if let Some((k, v)) = label
            && !labels.contains(&format!("{k}=\"{v}\""))
        {
            return None;
        }
        value.parse().ok()
    })
}

/// Writes an executable shell script into `dir` and returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}
