//! A fake Docker Engine: an HTTP/1.1 server on a unix socket that answers
//! the Engine API calls crewshipd makes, with Docker's JSON shapes, so the
//! daemon's real client code runs against it.
//!
//! - Paths with a version prefix (`/v1.47/…`) or none (bollard 0.21 sends
//!   none); like Docker, a request for a newer API version than the
//!   engine's is refused.
//! - Containers are records: create, start, stop, delete, list with label
//!   filters, and stats (only `stream=false`).
//! - Execs run as local processes; starting an attached one hijacks the
//!   connection (101 UPGRADED) and streams stdout and stderr in Docker's
//!   multiplexed frames (an 8-byte header: stream type, 3 zero bytes, big-
//!   endian length), stdin coming back on the same socket.
//! - A container can be muted: its stats calls are never answered.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Command;

/// The API version this engine speaks.
pub const API_VERSION: &str = "1.47";

// What every stats reading of a running container says. Docker counts
// system CPU time over all CPUs, so each reading adds 0.2 s of container
// time per 2 s of system time on 4 CPUs: 40 % of one CPU.
pub const CPU_PERCENT: f64 = 40.0;
const CPU_STEP: u64 = 200_000_000;
const SYSTEM_STEP: u64 = 2_000_000_000;
const ONLINE_CPUS: u64 = 4;
/// Usage includes 50 MiB of inactive page cache, which does not count.
pub const MEMORY_USED: u64 = 100 * 1024 * 1024;
const MEMORY_USAGE: u64 = 150 * 1024 * 1024;
const INACTIVE_FILE: u64 = 50 * 1024 * 1024;
pub const MEMORY_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
/// Summed over eth0 (1000/2000) and eth1 (24/48).
pub const NET_RX: u64 = 1024;
pub const NET_TX: u64 = 2048;
pub const PIDS: u64 = 3;

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: HashMap<String, String>,
    pub init: bool,
    pub running: bool,
    /// Stats calls hang.
    pub muted: bool,
    stats_taken: u64,
}

#[derive(Debug, Clone)]
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub running: bool,
    pub exit_code: Option<i64>,
    pid: Option<u32>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    containers: Vec<Container>,
    execs: Vec<Exec>,
    /// Images pulled through `POST /images/create`, as `name:tag`.
    pulled: Vec<String>,
    /// `METHOD /path?query` of every request, in order.
    requests: Vec<String>,
}

impl State {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:016x}", 0xfa4e_0000_0000_0000u64 + self.next_id).repeat(4)
    }

    /// A container by id, id prefix or name, as Docker resolves them.
    fn container(&mut self, key: &str) -> Option<&mut Container> {
        let key = key.trim_start_matches('/');
        self.containers.iter_mut().find(|c| c.id == key || c.name == key || (key.len() >= 12 && c.id.starts_with(key)))
    }

    fn exec(&mut self, id: &str) -> Option<&mut Exec> {
        self.execs.iter_mut().find(|e| e.id == id)
    }

    /// What `docker stop` does to the processes of a container.
    fn kill_execs_of(&mut self, container_id: &str) {
        for e in self.execs.iter().filter(|e| e.container_id == container_id && e.running) {
            if let Some(pid) = e.pid {
                // SAFETY: signalling a child process this fake started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
    }
}

pub struct FakeDocker {
    dir: tempfile::TempDir,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.server.abort();
        let mut state = self.state();
        let ids: Vec<String> = state.containers.iter().map(|c| c.id.clone()).collect();
        for id in ids {
            state.kill_execs_of(&id);
        }
    }
}

impl FakeDocker {
    pub async fn start() -> FakeDocker {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = UnixListener::bind(dir.path().join("docker.sock")).expect("bind the fake engine's socket");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        FakeDocker { dir, state, server }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The `DOCKER_HOST` value that reaches this engine.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn containers(&self) -> Vec<Container> {
        self.state().containers.clone()
    }

    /// The container labelled with this crew id.
    pub fn container_of(&self, crew_id: &str) -> Option<Container> {
        self.state()
            .containers
            .iter()
            .find(|c| c.labels.get("crewship.crew_id").map(String::as_str) == Some(crew_id))
            .cloned()
    }

    pub fn execs(&self) -> Vec<Exec> {
        self.state().execs.clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// From now on, stats calls about this container are never answered.
    pub fn mute(&self, container_id: &str) {
        self.state().container(container_id).expect("a container to mute").muted = true;
    }

    /// Stops a container behind the daemon's back (as a host reboot would).
    pub fn stop_behind_the_back(&self, container_id: &str) {
        let mut state = self.state();
        state.container(container_id).expect("a container to stop").running = false;
        state.kill_execs_of(container_id);
    }
}

struct Request {
    method: String,
    /// Without the version prefix.
    path: String,
    query: HashMap<String, String>,
    body: Value,
}

/// Splits `/v1.47/containers/json?all=1` into the path without its version
/// prefix, the version, and the decoded query.
fn parse_target(target: &str) -> (String, Option<String>, HashMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (version, path) = match path.strip_prefix("/v").and_then(|rest| rest.split_once('/')) {
        Some((v, rest)) if v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) => {
            (Some(v.to_string()), format!("/{rest}"))
        }
        _ => (None, path.to_string()),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    (path, version, query)
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn newer(version: &str, than: &str) -> bool {
    let parse = |v: &str| v.split('.').map(|p| p.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    parse(version) > parse(than)
}

/// Reads one request; None if the client went away first.
async fn read_request(reader: &mut BufReader<UnixStream>) -> Option<(Request, Option<String>)> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).await.ok()?;
    }
    let (path, version, query) = parse_target(&target);
    let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
    Some((Request { method, path, query, body }, version))
}

enum Reply {
    Json(u16, Value),
    Text(u16, &'static str),
    Empty(u16),
    /// Never answer (a muted container's stats).
    Hang,
    /// Run an exec in the background.
    Detach(String),
    /// Hijack the connection for an attached exec.
    Attach(String),
}

fn error(status: u16, message: impl Into<String>) -> Reply {
    Reply::Json(status, json!({ "message": message.into() }))
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "UPGRADED",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        _ => "Internal Server Error",
    }
}

async fn serve(stream: UnixStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    let Some((request, version)) = read_request(&mut reader).await else {
        return;
    };
    let query_text: Vec<String> = request.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    state.lock().unwrap().requests.push(format!(
        "{} /v{}{}?{}",
        request.method,
        version.as_deref().unwrap_or("-"),
        request.path,
        query_text.join("&")
    ));
    let reply = match version {
        Some(v) if newer(&v, API_VERSION) => {
            error(400, format!("client version {v} is too new. Maximum supported API version is {API_VERSION}"))
        }
        _ => route(&request, &mut state.lock().unwrap()),
    };
    let (status, content_type, body) = match reply {
        Reply::Json(status, value) => (status, "application/json", value.to_string().into_bytes()),
        Reply::Text(status, text) => (status, "text/plain; charset=utf-8", text.as_bytes().to_vec()),
        Reply::Empty(status) => (status, "text/plain", Vec::new()),
        Reply::Hang => {
            // Hold the connection until the client gives up on it.
            let _ = reader.read_to_end(&mut Vec::new()).await;
            return;
        }
        Reply::Attach(exec_id) => return attach(reader, state, exec_id).await,
        Reply::Detach(exec_id) => match start_exec(&state, &exec_id, false) {
            Ok(child) => {
                tokio::spawn(reap(state, exec_id, child));
                (200, "text/plain", Vec::new())
            }
            Err(e) => (500, "application/json", json!({ "message": e }).to_string().into_bytes()),
        },
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nApi-Version: {API_VERSION}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn summary(c: &Container) -> Value {
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": format!("sha256:{}", "ab".repeat(32)),
        "Command": c.entrypoint.iter().chain(&c.cmd).cloned().collect::<Vec<_>>().join(" "),
        "Created": 1_795_564_800,
        "Ports": [],
        "Labels": c.labels,
        "State": if c.running { "running" } else { "exited" },
        "Status": if c.running { "Up 2 seconds" } else { "Exited (137) 1 second ago" },
        "HostConfig": {"NetworkMode": "bridge"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    })
}

/// Docker's label filter: `key` (present) or `key=value`.
fn labelled(c: &Container, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => c.labels.get(k).map(String::as_str) == Some(v),
        None => c.labels.contains_key(f),
    })
}

fn stats(c: &mut Container) -> Value {
    if !c.running {
        // What Docker answers about a stopped container: an empty reading.
        return json!({
            "read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
            "id": c.id, "name": format!("/{}", c.name),
            "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {}},
            "memory_stats": {},
        });
    }
    c.stats_taken += 1;
    let n = c.stats_taken;
    json!({
        "read": "2026-11-25T10:00:00.123456789Z",
        "preread": "0001-01-01T00:00:00Z",
        "id": c.id,
        "name": format!("/{}", c.name),
        "pids_stats": {"current": PIDS, "limit": 4_194_304},
        "blkio_stats": {"io_service_bytes_recursive": null},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": n * CPU_STEP, "usage_in_kernelmode": n * CPU_STEP / 4, "usage_in_usermode": n * CPU_STEP * 3 / 4},
            "system_cpu_usage": n * SYSTEM_STEP,
            "online_cpus": ONLINE_CPUS,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        // A one-shot reading has no earlier reading to compare with.
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {
            "usage": MEMORY_USAGE,
            "limit": MEMORY_LIMIT,
            "stats": {"inactive_file": INACTIVE_FILE, "active_file": 1_048_576, "anon": 99 * 1024 * 1024},
        },
        "networks": {
            "eth0": {"rx_bytes": 1000, "rx_packets": 10, "rx_errors": 0, "rx_dropped": 0, "tx_bytes": 2000, "tx_packets": 20, "tx_errors": 0, "tx_dropped": 0},
            "eth1": {"rx_bytes": 24, "rx_packets": 1, "rx_errors": 0, "rx_dropped": 0, "tx_bytes": 48, "tx_packets": 1, "tx_errors": 0, "tx_dropped": 0},
        },
    })
}

fn route(r: &Request, state: &mut State) -> Reply {
    let segments: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    match (r.method.as_str(), segments.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => Reply::Text(200, "OK"),
        ("GET", ["version"]) => Reply::Json(
            200,
            json!({
                "Platform": {"Name": "Fake Engine"},
                "Version": "27.3.1-fake",
                "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": "amd64",
                "KernelVersion": "6.1.0",
                "GitCommit": "fake",
                "GoVersion": "go1.22.7",
            }),
        ),
        ("GET", ["containers", "json"]) => {
            let all = matches!(r.query.get("all").map(String::as_str), Some("1" | "true"));
            let filters: Value =
                r.query.get("filters").map(|f| serde_json::from_str(f).unwrap_or(Value::Null)).unwrap_or(Value::Null);
            let labels = strings(&filters["label"]);
            let listed: Vec<Value> =
                state.containers.iter().filter(|c| (all || c.running) && labelled(c, &labels)).map(summary).collect();
            Reply::Json(200, Value::Array(listed))
        }
        ("POST", ["images", "create"]) => {
            let name = r.query.get("fromImage").cloned().unwrap_or_default();
            if name.starts_with("no-such/") {
                return error(
                    404,
                    format!("pull access denied for {name}, repository does not exist or may require 'docker login'"),
                );
            }
            let Some(tag) = r.query.get("tag") else {
                return error(400, "the fake engine will not pull every tag of an image");
            };
            state.pulled.push(format!("{name}:{tag}"));
            Reply::Json(200, json!({"status": format!("Status: Downloaded newer image for {name}:{tag}")}))
        }
        ("POST", ["containers", "create"]) => {
            let Some(name) = r.query.get("name").cloned() else {
                return error(400, "the fake engine wants named containers");
            };
            // Images are there, except `no-such/…` (never) and `remote/…`
            // (once pulled).
            let image = r.body["Image"].as_str().unwrap_or_default().to_string();
            let pulled = state.pulled.iter().any(|p| *p == image || format!("{image}:latest") == *p);
            if image.starts_with("no-such/") || (image.starts_with("remote/") && !pulled) {
                return error(404, format!("No such image: {image}"));
            }
            if state.containers.iter().any(|c| c.name == name) {
                return error(409, format!("Conflict. The container name \"/{name}\" is already in use"));
            }
            let id = state.new_id();
            let labels = r.body["Labels"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            state.containers.push(Container {
                id: id.clone(),
                name,
                image,
                entrypoint: strings(&r.body["Entrypoint"]),
                cmd: strings(&r.body["Cmd"]),
                labels,
                init: r.body["HostConfig"]["Init"] == json!(true),
                running: false,
                muted: false,
                stats_taken: 0,
            });
            Reply::Json(201, json!({ "Id": id, "Warnings": [] }))
        }
        ("POST", ["containers", key, "start"]) => match state.container(key) {
            None => error(404, format!("No such container: {key}")),
            Some(c) if c.running => Reply::Empty(304),
            Some(c) => {
                c.running = true;
                Reply::Empty(204)
            }
        },
        ("POST", ["containers", key, "stop"]) => match state.container(key) {
            None => error(404, format!("No such container: {key}")),
            Some(c) if !c.running => Reply::Empty(304),
            Some(c) => {
                c.running = false;
                let id = c.id.clone();
                state.kill_execs_of(&id);
                Reply::Empty(204)
            }
        },
        ("DELETE", ["containers", key]) => {
            let force = matches!(r.query.get("force").map(String::as_str), Some("1" | "true"));
            match state.container(key).map(|c| (c.id.clone(), c.running)) {
                None => error(404, format!("No such container: {key}")),
                Some((_, true)) if !force => error(
                    409,
                    format!(
                        "cannot remove container \"/{key}\": container is running: stop the container before removing or force remove"
                    ),
                ),
                Some((id, _)) => {
                    state.kill_execs_of(&id);
                    state.containers.retain(|c| c.id != id);
                    Reply::Empty(204)
                }
            }
        }
        ("GET", ["containers", key, "stats"]) => {
            if r.query.get("stream").map(String::as_str) != Some("false") {
                return error(400, "the fake engine only serves stream=false");
            }
            match state.container(key) {
                None => error(404, format!("No such container: {key}")),
                Some(c) if c.muted => Reply::Hang,
                Some(c) => Reply::Json(200, stats(c)),
            }
        }
        ("POST", ["containers", key, "exec"]) => {
            let Some((container_id, running)) = state.container(key).map(|c| (c.id.clone(), c.running)) else {
                return error(404, format!("No such container: {key}"));
            };
            if !running {
                return error(409, format!("container {container_id} is not running"));
            }
            let cmd = strings(&r.body["Cmd"]);
            if cmd.is_empty() {
                return error(400, "No exec command specified");
            }
            let id = state.new_id();
            state.execs.push(Exec {
                id: id.clone(),
                container_id,
                cmd,
                env: strings(&r.body["Env"]),
                running: false,
                exit_code: None,
                pid: None,
            });
            Reply::Json(201, json!({ "Id": id }))
        }
        ("POST", ["exec", id, "start"]) => {
            if state.exec(id).is_none() {
                return error(404, format!("No such exec instance: {id}"));
            }
            if r.body["Detach"] == json!(true) { Reply::Detach(id.to_string()) } else { Reply::Attach(id.to_string()) }
        }
        ("GET", ["exec", id, "json"]) => match state.exec(id) {
            None => error(404, format!("No such exec instance: {id}")),
            Some(e) => Reply::Json(
                200,
                json!({
                    "CanRemove": false,
                    "ContainerID": e.container_id,
                    "DetachKeys": "",
                    "ExitCode": e.exit_code,
                    "ID": e.id,
                    "OpenStderr": true,
                    "OpenStdin": true,
                    "OpenStdout": true,
                    "ProcessConfig": {"arguments": e.cmd[1..], "entrypoint": e.cmd[0], "privileged": false, "tty": false, "user": ""},
                    "Running": e.running,
                    "Pid": e.pid.unwrap_or(0),
                }),
            ),
        },
        _ => error(404, format!("page not found: {} {}", r.method, r.path)),
    }
}

/// Starts an exec's process (stdio piped if `attached`) and marks it running.
fn start_exec(state: &Mutex<State>, id: &str, attached: bool) -> Result<tokio::process::Child, String> {
    let mut state = state.lock().unwrap();
    let exec = state.exec(id).ok_or_else(|| format!("No such exec instance: {id}"))?;
    let io = || if attached { Stdio::piped() } else { Stdio::null() };
    let child = Command::new(&exec.cmd[0])
        .args(&exec.cmd[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(exec.env.iter().filter_map(|kv| kv.split_once('=')))
        .current_dir("/")
        .stdin(io())
        .stdout(io())
        .stderr(io())
        .spawn()
        .map_err(|e| format!("OCI runtime exec failed: exec: {:?}: {e}", exec.cmd[0]))?;
    exec.running = true;
    exec.pid = child.id();
    Ok(child)
}

/// Records how an exec's process ended.
fn finished(state: &Mutex<State>, id: &str, status: Option<std::process::ExitStatus>) {
    let code = status.map(|s| s.code().map(i64::from).unwrap_or_else(|| 128 + i64::from(s.signal().unwrap_or(0))));
    if let Some(exec) = state.lock().unwrap().exec(id) {
        exec.running = false;
        exec.exit_code = Some(code.unwrap_or(-1));
    }
}

async fn reap(state: Arc<Mutex<State>>, id: String, mut child: tokio::process::Child) {
    let status = child.wait().await.ok();
    finished(&state, &id, status);
}

/// One frame of Docker's multiplexed stream: type (1 stdout, 2 stderr),
/// three zero bytes, the payload's length (big-endian u32), the payload.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, 0, 0, 0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, kind: u8, to: tokio::sync::mpsc::UnboundedSender<Vec<u8>>) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.send(frame(kind, &buf[..n])).is_err() {
            break;
        }
    }
}

/// An attached exec: answers 101, then the socket carries stdin one way
/// and multiplexed stdout/stderr the other, until the process ends.
async fn attach(reader: BufReader<UnixStream>, state: Arc<Mutex<State>>, id: String) {
    let early_stdin = reader.buffer().to_vec();
    let (mut from_client, mut to_client) = reader.into_inner().into_split();
    let head = format!(
        "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: {API_VERSION}\r\n\r\n"
    );
    if to_client.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut child = match start_exec(&state, &id, true) {
        Ok(child) => child,
        Err(e) => {
            let _ = to_client.write_all(&frame(2, format!("{e}\n").as_bytes())).await;
            finished(&state, &id, Some(std::process::ExitStatus::from_raw(127 << 8)));
            let _ = to_client.shutdown().await;
            return;
        }
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = tokio::spawn(async move {
        if stdin.write_all(&early_stdin).await.is_ok() {
            let _ = tokio::io::copy(&mut from_client, &mut stdin).await;
        }
        // Dropping stdin closes it: the client half-closed its side.
    });
    let (frames, mut queue) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(pump(child.stdout.take().expect("piped stdout"), 1, frames.clone()));
    tokio::spawn(pump(child.stderr.take().expect("piped stderr"), 2, frames));
    while let Some(bytes) = queue.recv().await {
        if to_client.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let status = child.wait().await.ok();
    finished(&state, &id, status);
    feeder.abort();
    let _ = to_client.shutdown().await;
}
