//! The real `crewshipd` release binary on the big store, the baseline
//! server, and the tools pointed at them: scrapes, wrk, /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Res;

/// Longest a daemon may take to start on the big store (it recounts every
/// counter from the base tables first).
const START_PATIENCE: Duration = Duration::from_secs(300);

pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub startup: Duration,
    pub log: PathBuf,
}

/// Reads the first stdout line of `child` and returns the address it names.
async fn listening_line(child: &mut Child, log: &Path) -> Res<String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_PATIENCE, lines.next_line())
        .await
        .map_err(|_| format!("no listening line in time; see {}", log.display()))??
        .ok_or_else(|| format!("exited at start; see {}", log.display()))?;
    let addr = line.rsplit("http://").next().ok_or("no address")?.trim().to_string();
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(format!("http://{addr}"))
}

/// The benchmarked daemon's API token (the WebSocket sessions send it).
pub const API_TOKEN: &str = "bench-token";

impl Server {
    /// Starts the daemon on `store`, with its data directory in `home`.
    pub async fn daemon(bin: &Path, store: &Path, home: &Path, cache_ttl: &str) -> Res<Server> {
        let url = format!("sqlite://{}", store.display());
        Server::daemon_on(bin, &url, home, &[("CREWSHIP_METRICS_CACHE_TTL", cache_ttl)]).await
    }

    /// Starts the daemon on the database `url`, with its data directory in
    /// `home` and `env` on top.
    pub async fn daemon_on(bin: &Path, url: &str, home: &Path, env: &[(&str, &str)]) -> Res<Server> {
        std::fs::create_dir_all(home)?;
        let log = home.join("crewshipd.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("CREWSHIP_DATA_DIR", home)
            .env("CREWSHIP_DATABASE_URL", url)
            .env("CREWSHIP_HOST", "127.0.0.1")
            .env("CREWSHIP_PORT", "0")
            .env("CREWSHIP_HOSTNAME", "bench-host")
            .env("CREWSHIP_LOG", "warn")
            .env("CREWSHIP_API_TOKEN", API_TOKEN)
            // A reused store ages: keep the archiver from moving rows
            // while we measure.
            .env("CREWSHIP_JOURNAL_ARCHIVE_AFTER", "36500d")
            .env("CREWSHIP_JOURNAL_RETENTION", "36500d")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        Server::spawn(cmd, log).await
    }

    /// Starts this bench binary's baseline server on the canned responses.
    pub async fn baseline(canned: &Path, log: PathBuf) -> Res<Server> {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("baseline-server")
            .arg("--canned")
            .arg(canned)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        Server::spawn(cmd, log).await
    }

    async fn spawn(mut cmd: Command, log: PathBuf) -> Res<Server> {
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let pid = child.id().ok_or("no pid")?;
        let base = listening_line(&mut child, &log).await?;
        Ok(Server { child, pid, base, startup: started.elapsed(), log })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, and wait for the exit.
    pub async fn stop(mut self) -> Res<()> {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                eprintln!("  {} did not stop in 60 s; killing it (log: {})", self.pid, self.log.display());
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// VmRSS and VmHWM of a process, from /proc/<pid>/status.
pub fn memory(pid: u32) -> Res<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") })
}

pub fn client() -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?)
}

/// One response as it came off the wire (no decompression: this reqwest
/// has no gzip feature).
pub struct Scraped {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub async fn scrape(client: &reqwest::Client, url: &str, gzip: bool) -> Res<Scraped> {
    let mut req = client.get(url);
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let resp = req.send().await?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()).into());
    }
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    Ok(Scraped { headers, body: resp.bytes().await?.to_vec() })
}

/// The value of the first sample of `name` on a text-format page.
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let n = series.split_once('{').map_or(series, |(n, _)| n);
        (n == name).then(|| value.parse().ok()).flatten()
    })
}

pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> Res<f64> {
    let page = scrape(client, &format!("{base}/metrics"), false).await?;
    let text = String::from_utf8(page.body)?;
    sample(&text, name).ok_or_else(|| format!("{name} is not on the page").into())
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Res<f64> { Ok(f.get(i).ok_or("short /proc stat")?.parse::<f64>()?) };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Wrk {
    /// CPU the measured server used per request (when measured), µs.
    pub server_cpu_us_per_req: f64,
    pub requests_per_sec: f64,
    pub requests: u64,
    pub p50_us: f64,
    pub p75_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
}

fn wrk_duration(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        "h" => n * 3600e6,
        _ => return None,
    })
}

pub fn parse_wrk(out: &str) -> Wrk {
    let mut w = Wrk::default();
    for line in out.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => w.requests_per_sec = words.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
            Some("50%") => w.p50_us = words.next().and_then(wrk_duration).unwrap_or(0.0),
            Some("75%") => w.p75_us = words.next().and_then(wrk_duration).unwrap_or(0.0),
            Some("90%") => w.p90_us = words.next().and_then(wrk_duration).unwrap_or(0.0),
            Some("99%") => w.p99_us = words.next().and_then(wrk_duration).unwrap_or(0.0),
            Some("Socket") => {
                w.socket_errors = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| s.parse::<u64>().ok())
                    .sum();
            }
            Some("Non-2xx") => w.non_2xx = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0),
            Some(n) if line.contains(" requests in ") => w.requests = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    w
}

/// Runs wrk against `url` and records the CPU server `pid` spent per request.
pub async fn wrk_on(pid: u32, url: &str, threads: u32, connections: u32, secs: u32, gzip: bool) -> Res<Wrk> {
    wrk_with(Some(pid), url, threads, connections, secs, gzip_header(gzip)).await
}

/// Runs wrk against `url` (bounded: `secs` seconds).
pub async fn wrk(url: &str, threads: u32, connections: u32, secs: u32, gzip: bool) -> Res<Wrk> {
    wrk_with(None, url, threads, connections, secs, gzip_header(gzip)).await
}

fn gzip_header(gzip: bool) -> &'static [&'static str] {
    if gzip { &["-H", "Accept-Encoding: gzip"] } else { &[] }
}

/// Runs wrk with `extra` arguments (a Lua script, headers), and the CPU
/// server `pid` spent per request when given.
pub async fn wrk_with(
    pid: Option<u32>,
    url: &str,
    threads: u32,
    connections: u32,
    secs: u32,
    extra: &[&str],
) -> Res<Wrk> {
    let before = pid.map(cpu_seconds).transpose()?;
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("--latency")
        .args(extra);
    let out = cmd.arg(url).stdin(Stdio::null()).output().await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed: {}{}", text, String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut w = parse_wrk(&text);
    if w.requests_per_sec == 0.0 {
        return Err(format!("could not read wrk's output:\n{text}").into());
    }
    if let (Some(pid), Some(before)) = (pid, before) {
        w.server_cpu_us_per_req = (cpu_seconds(pid)? - before) * 1e6 / w.requests.max(1) as f64;
    }
    Ok(w)
}
