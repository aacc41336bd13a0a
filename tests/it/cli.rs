//! The `crewship` CLI: the real binary against a real daemon.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use crate::common::{Daemon, PATIENCE};

/// What one `crewship` invocation did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// Stdout of a run that must have succeeded.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "crewship failed: {}", self.stderr);
        self.stdout
    }

    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// `crewship` aimed at `url` through CREWSHIP_URL, with nothing else from
/// this environment leaking in.
fn crewship_at(url: &str) -> Command {
    let mut cmd = Command::new(crate::common::cli_bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CREWSHIP_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run_with(mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Outcome {
    cmd.args(args);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn crewship");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
    }
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("crewship {args:?} did not finish in time"))
        .expect("wait for crewship");
    Outcome {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `crewship` for `d`'s operator: it finds the daemon's API token in the
/// data directory, as a user of the default `~/.crewship` does.
fn crewship_for(d: &Daemon) -> Command {
    let mut cmd = crewship_at(&d.base);
    cmd.env("CREWSHIP_DATA_DIR", d.data_dir());
    cmd
}

async fn crewship(d: &Daemon, args: &[&str]) -> Outcome {
    run_with(crewship_for(d), args, None).await
}

/// The one line of `text` that contains `needle`, split into its cells.
fn line_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "one line with {needle:?} in:\n{text}");
    lines[0].split_whitespace().collect()
}

fn header(text: &str) -> Vec<&str> {
    text.lines().next().unwrap_or_default().split_whitespace().collect()
}

/// A running `crewship` whose output is read line by line as it comes.
struct Streaming {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Streaming {
    fn spawn(mut cmd: Command, args: &[&str]) -> Streaming {
        let mut child = cmd.args(args).spawn().expect("spawn crewship");
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Streaming { child, stdout, stderr }
    }

    async fn next(lines: &mut Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>) -> String {
        tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("no output line in time")
            .expect("read output")
            .expect("crewship exited early")
    }

    /// Stdout lines up to and including the first that `done` accepts.
    async fn lines_until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = Streaming::next(&mut self.stdout).await;
            let last = done(&line);
            seen.push(line);
            if last {
                return seen;
            }
        }
    }
}

/// A relay in front of the daemon that makes its clients remote: it adds
/// `X-Forwarded-For` to the first request of each connection, which the
/// daemon believes because the relay's own address is loopback.
async fn remote_front(d: &Daemon) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("http://{}", listener.local_addr().unwrap());
    let upstream = format!("127.0.0.1:{}", d.port);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await?;
                let mut request_line = Vec::new();
                while !request_line.ends_with(b"\r\n") {
                    request_line.push(client.read_u8().await?);
                }
                server.write_all(&request_line).await?;
                server.write_all(b"X-Forwarded-For: 203.0.113.9\r\n").await?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await
            });
        }
    });
    front
}

#[tokio::test]
async fn crews_as_tables_and_json() {
    let d = Daemon::start().await;
    let created =
        crewship(&d, &["crews", "create", "alpha", "--name", "Alpha Team", "--max-concurrent-agents", "3"]).await.ok();
    assert_eq!(line_with(&created, "slug"), ["slug", "alpha"]);
    assert_eq!(line_with(&created, "max_concurrent_agents"), ["max_concurrent_agents", "3"]);
    assert_eq!(line_with(&created, "image"), ["image", "-"]);
    let beta = crewship(&d, &["--json", "crews", "create", "beta", "--name", "Beta"]).await.json();
    assert_eq!((beta["slug"].as_str(), beta["max_concurrent_agents"].as_i64()), (Some("beta"), Some(2)));

    let list = crewship(&d, &["crews", "list"]).await.ok();
    assert_eq!(header(&list), ["ID", "SLUG", "NAME", "MAX_AGENTS", "RUNTIME", "IMAGE", "CREATED", "DELETED"]);
    let alpha = line_with(&list, "alpha");
    assert_eq!(alpha[1..6], ["alpha", "Alpha", "Team", "3", "local"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    // --json is the server's own reply.
    let json = crewship(&d, &["crews", "list", "--json"]).await.json();
    assert_eq!(json, d.get("/api/v1/crews").await.body);

    // One page unless --all follows the cursor.
    let page = crewship(&d, &["--json", "crews", "list", "--limit", "1"]).await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_string());
    let all = crewship(&d, &["--json", "crews", "list", "--limit", "1", "--all"]).await.json();
    let slugs: Vec<&str> = all["items"].as_array().unwrap().iter().map(|c| c["slug"].as_str().unwrap()).collect();
    assert_eq!((slugs.len(), all["next_cursor"].clone()), (2, Value::Null), "{all}");

    let updated = crewship(&d, &["crews", "update", "alpha", "--max-concurrent-agents", "5", "--image", "img:1"]).await;
    assert_eq!(line_with(&updated.ok(), "max_concurrent_agents"), ["max_concurrent_agents", "5"]);
    let cleared = crewship(&d, &["--json", "crews", "update", "alpha", "--no-image"]).await.json();
    assert_eq!((cleared["image"].clone(), cleared["max_concurrent_agents"].as_i64()), (Value::Null, Some(5)));
    let shown = crewship(&d, &["crews", "get", beta["id"].as_str().unwrap()]).await.ok();
    assert_eq!(line_with(&shown, "name"), ["name", "Beta"]);
    // Nothing to change is a usage error, caught before any request.
    assert_eq!(crewship(&d, &["crews", "update", "alpha"]).await.code, 2);

    let deleted = crewship(&d, &["--json", "crews", "delete", "beta"]).await.json();
    assert!(deleted["deleted_at"].is_string());
    let live = crewship(&d, &["crews", "list"]).await.ok();
    assert!(!live.contains("beta"), "{live}");
    let history = crewship(&d, &["crews", "list", "--include-deleted"]).await.ok();
    assert_eq!(line_with(&history, "beta").last(), deleted["deleted_at"].as_str().as_ref());
}

#[tokio::test]
async fn agents_assignments_runs_and_journal() {
    let d = Daemon::start().await;
    // One at a time, so the runs' journal order is known.
    crewship(&d, &["crews", "create", "alpha", "--name", "Alpha", "--max-concurrent-agents", "1"]).await.ok();
    let agent = crewship(
        &d,
        &[
            "--json",
            "agents",
            "create",
            "alpha",
            "echo",
            "--name",
            "Echo",
            "--env",
            "GREETING=hi there",
            "--timeout-seconds",
            "60",
            "--",
            "sh",
            "-c",
            "cat; echo \" $GREETING\"",
        ],
    )
    .await
    .json();
    assert_eq!(agent["command"], json!(["sh", "-c", "cat; echo \" $GREETING\""]));
    assert_eq!((agent["env"]["GREETING"].as_str(), agent["timeout_seconds"].as_i64()), (Some("hi there"), Some(60)));
    let agents = crewship(&d, &["agents", "list", "alpha"]).await.ok();
    assert_eq!(header(&agents), ["ID", "SLUG", "NAME", "ROLE", "TIMEOUT_S", "COMMAND", "DELETED"]);
    assert!(agents.contains(r#"sh -c 'cat; echo " $GREETING"'"#), "argv as shell words:\n{agents}");
    let shown = crewship(&d, &["agents", "get", "alpha", "echo"]).await.ok();
    assert_eq!(line_with(&shown, "role"), ["role", "agent"]);

    // The task from words, then from stdin; each runs to its end.
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let first = crewship(&d, &["--json", "assign", "alpha", "echo", "tide", "tables"]).await.json();
    assert_eq!((first["task"].as_str(), first["status"].as_str()), (Some("tide tables"), Some("pending")));
    let piped = run_with(crewship_for(&d), &["--json", "assign", "alpha", "echo", "-"], Some("from stdin")).await;
    let second = piped.json();
    assert_eq!(second["task"], "from stdin");
    let done = d.await_assignment(&mut ws, first["id"].as_str().unwrap(), &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    d.await_assignment(&mut ws, second["id"].as_str().unwrap(), &["completed", "failed"]).await;

    let id = first["id"].as_str().unwrap();
    let list = crewship(&d, &["assignments", "list", "--crew", "alpha", "--status", "completed"]).await.ok();
    assert_eq!(header(&list), ["ID", "CREW", "AGENT", "STATUS", "ATTEMPTS", "CREATED", "FINISHED", "TASK"]);
    let row = line_with(&list, id);
    assert_eq!(row[..5], [id, "alpha", "echo", "completed", "1"]);
    assert_eq!(row[row.len() - 2..], ["tide", "tables"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    let one = crewship(&d, &["--json", "assignments", "list", "--limit", "1"]).await.json();
    assert_eq!(one["items"][0]["id"], second["id"], "newest first");
    let shown = crewship(&d, &["assignments", "get", id]).await.ok();
    assert_eq!(line_with(&shown, "result_summary"), ["result_summary", "tide", "tables", "hi", "there"]);

    let run_id = done["run_id"].as_str().unwrap();
    let run = crewship(&d, &["runs", "get", run_id]).await.ok();
    assert_eq!(line_with(&run, "status"), ["status", "completed"]);
    assert_eq!(line_with(&run, "exit_code"), ["exit_code", "0"]);
    let output = crewship(&d, &["runs", "output", run_id]).await.ok();
    assert_eq!(output, "tide tables hi there\n");

    let journal = crewship(&d, &["journal", "--trace-id", run_id]).await.ok();
    assert_eq!(header(&journal), ["TS", "TYPE", "SEVERITY", "CREW", "AGENT", "TRACE", "SUMMARY"]);
    let types: Vec<&str> = journal.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(types, ["assignment.completed", "run.completed", "assignment.running", "run.started"], "{journal}");
    let runs = crewship(&d, &["--json", "journal", "--type", "run.*", "--crew", "alpha", "--since", "1h"]).await.json();
    let types: Vec<&str> =
        runs["items"].as_array().unwrap().iter().map(|e| e["entry_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["run.completed", "run.started", "run.completed", "run.started"]);
    let future = crewship(&d, &["--json", "journal", "--since", "2999-01-01T00:00:00Z"]).await.json();
    assert_eq!(future["items"], json!([]));

    // A finished assignment cannot be cancelled: the server's 409, verbatim.
    let refused = crewship(&d, &["assignments", "cancel", id]).await;
    let message = d.post(&format!("/api/v1/assignments/{id}/cancel"), json!({})).await.body["error"]["message"].clone();
    assert_eq!(refused.code, 1);
    assert_eq!(refused.stderr, format!("crewship: {} (409)\n", message.as_str().unwrap()));
    assert_eq!(refused.stdout, "");
}

#[tokio::test]
async fn spend_by_provider_and_model() {
    let d = Daemon::start().await;
    for (provider, model, cost) in
        [("anthropic", "claude-x", 0.5), ("anthropic", "claude-y", 0.25), ("openai", "gpt-z", 1.0)]
    {
        let call =
            json!({"provider": provider, "model": model, "input_tokens": 100, "output_tokens": 10, "cost_usd": cost});
        d.ok("/api/v1/llm-calls", call, 201).await;
    }
    let table = crewship(&d, &["spend"]).await.ok();
    assert_eq!(header(&table), ["KEY", "CALLS", "COST_USD", "INPUT_TOKENS", "OUTPUT_TOKENS"]);
    assert_eq!(line_with(&table, "anthropic"), ["anthropic", "2", "0.75", "200", "20"]);
    assert_eq!(line_with(&table, "openai"), ["openai", "1", "1.0", "100", "10"]);
    let by_model = crewship(&d, &["--json", "spend", "--group-by", "model", "--since", "1h"]).await.json();
    assert_eq!(by_model["rows"].as_array().unwrap().len(), 3, "{by_model}");
    assert!(by_model["since"].is_string());
    let later = crewship(&d, &["--json", "spend", "--since", "2999-01-01T00:00:00Z"]).await.json();
    assert_eq!(later["rows"], json!([]));
}

#[tokio::test]
async fn errors_exit_non_zero_with_the_servers_message() {
    let d = Daemon::start().await;
    let missing = crewship(&d, &["crews", "get", "nope"]).await;
    assert_eq!((missing.code, missing.stderr.as_str()), (1, "crewship: crew \"nope\" not found (404)\n"));
    assert_eq!(missing.stdout, "");

    let invalid = crewship(&d, &["crews", "create", "x", "--name", "X"]).await;
    assert_eq!(invalid.code, 1);
    assert!(invalid.stderr.starts_with("crewship: slug \"x\" must be"), "{}", invalid.stderr);
    assert!(invalid.stderr.ends_with("(422)\n"), "{}", invalid.stderr);

    crewship(&d, &["crews", "create", "alpha", "--name", "A"]).await.ok();
    let duplicate = crewship(&d, &["crews", "create", "alpha", "--name", "A"]).await;
    assert_eq!(duplicate.code, 1);
    assert!(duplicate.stderr.ends_with("(409)\n"), "{}", duplicate.stderr);
    let unknown_agent = crewship(&d, &["assign", "alpha", "ghost", "work"]).await;
    assert_eq!(unknown_agent.stderr, "crewship: unknown agent \"ghost\" in crew \"alpha\" (422)\n");

    // Usage errors are clap's: exit 2, nothing sent.
    for args in [&["assignments", "list", "--status", "bogus"][..], &["agents", "create", "alpha", "w1", "--name", "W"]]
    {
        let usage = crewship(&d, args).await;
        assert_eq!(usage.code, 2, "{args:?}: {}", usage.stderr);
    }
    let https = run_with(crewship_at("https://127.0.0.1:1"), &["crews", "list"], None).await;
    assert_eq!(https.code, 2, "{}", https.stderr);
    assert_eq!(d.get("/api/v1/crews/alpha/agents/w1").await.status, 404);
}

#[tokio::test]
async fn an_unreachable_daemon_exits_3_naming_the_url() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [&["crews", "list"][..], &["watch"], &["top", "--once"]] {
        let out = run_with(crewship_at("http://unused.invalid"), &[&["--url", &url][..], args].concat(), None).await;
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("crewship: cannot reach crewshipd at "), "{}", out.stderr);
        assert!(out.stderr.contains(&format!("127.0.0.1:{port}")), "{}", out.stderr);
        assert_eq!(out.stdout, "");
    }
}

#[tokio::test]
async fn remote_use_sends_the_api_token() {
    let d = Daemon::start_with(&[("CREWSHIP_API_TOKEN", "t0ken")]).await;
    let front = remote_front(&d).await;
    let refused = run_with(crewship_at(&front), &["crews", "list"], None).await;
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr,
        "crewship: this API needs Authorization: Bearer <token>; the daemon's token is set by CREWSHIP_API_TOKEN in \
         its environment (401)\n"
    );

    let mut from_env = crewship_at(&front);
    from_env.env("CREWSHIP_API_TOKEN", "t0ken");
    let created = run_with(from_env, &["--json", "crews", "create", "alpha", "--name", "A"], None).await.json();
    assert_eq!(created["slug"], "alpha");
    let listed = run_with(crewship_at(&front), &["--token", "t0ken", "crews", "list"], None).await.ok();
    assert_eq!(line_with(&listed, "alpha")[1], "alpha");

    // The event stream takes the token as a header too.
    let mut watch = Streaming::spawn(crewship_at(&front), &["watch", "--token", "t0ken", "--channel", "crew:alpha"]);
    assert_eq!(Streaming::next(&mut watch.stderr).await, "crewship: watching crew:alpha");
    d.patch("/api/v1/crews/alpha", json!({"name": "Renamed"})).await;
    let lines = watch.lines_until(|l| l.contains(" crew.updated crew:alpha ")).await;
    watch.child.kill().await.unwrap();
    assert!(lines.last().unwrap().ends_with(" crew.updated crew:alpha alpha"), "{lines:?}");
    let unauthenticated = run_with(crewship_at(&front), &["watch"], None).await;
    assert_eq!(unauthenticated.code, 1);
    assert_eq!(unauthenticated.stderr, "crewship: crewshipd closed the event stream: authentication required (1008)\n");
}

#[tokio::test]
async fn watch_prints_an_assignment_to_its_end() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "cat").await;
    let mut watch = Streaming::spawn(crewship_for(&d), &["watch"]);
    // Work created after the acknowledgement cannot be missed.
    let ack = Streaming::next(&mut watch.stderr).await;
    assert_eq!(ack, "crewship: watching assignments journal pipeline_runs runs");

    let a = d.ok("/api/v1/assignments", json!({"crew": "alpha", "agent": "worker", "task": "ping"}), 201).await;
    let id = a["id"].as_str().unwrap().to_string();
    let lines = watch.lines_until(|l| l.contains(" assignment.completed ") && l.contains(&id)).await;
    watch.child.kill().await.unwrap();

    let done = d.get(&format!("/api/v1/assignments/{id}")).await.body;
    let run_id = done["run_id"].as_str().unwrap();
    let last = lines.last().unwrap().split_whitespace().collect::<Vec<_>>();
    assert!(humantime::parse_rfc3339(last[0]).is_ok(), "{last:?}");
    assert_eq!(
        last[1..],
        ["assignment.completed", "assignments", id.as_str(), "alpha/worker", "completed", "\"ping\""]
    );
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[1], cells[2])
        })
        .collect();
    // One line per change: the journal's mirror of each is left out.
    assert_eq!(
        kinds,
        [
            ("assignment.pending", "assignments"),
            ("assignment.queued", "assignments"),
            ("run.started", "runs"),
            ("assignment.running", "assignments"),
            ("run.completed", "runs"),
            ("assignment.completed", "assignments"),
        ],
        "{lines:#?}"
    );
    let run_line = lines.iter().find(|l| l.contains(" run.completed runs ")).unwrap();
    assert!(run_line.ends_with(&format!("runs {run_id} alpha/worker completed")), "{run_line}");
    assert!(!lines.iter().any(|l| l.contains('\x1b')), "no colour into a pipe");
}

/// Filters: one crew, one type (a prefix), journal entries by their type.
#[tokio::test]
async fn watch_filters_by_crew_and_type() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "cat").await;
    d.crew_with_agent("bravo", 1, "cat").await;
    let mut watch = Streaming::spawn(crewship_for(&d), &["watch", "--crew", "bravo", "--type", "run.*"]);
    Streaming::next(&mut watch.stderr).await;
    d.run_to_end("alpha", "worker", "a").await;
    let b = d.run_to_end("bravo", "worker", "b").await;
    let lines = watch.lines_until(|l| l.contains(" run.completed ")).await;
    watch.child.kill().await.unwrap();
    assert_eq!(lines.len(), 2, "bravo's run events only: {lines:#?}");
    assert!(lines.iter().all(|l| l.contains("bravo/worker") && l.contains(b["run_id"].as_str().unwrap())));
    // Only the journal: its entries are shown, as no other channel has them.
    let mut journal = Streaming::spawn(crewship_for(&d), &["watch", "--channel", "journal", "--type", "run.completed"]);
    Streaming::next(&mut journal.stderr).await;
    d.run_to_end("alpha", "worker", "c").await;
    let lines = journal.lines_until(|l| l.contains("journal.entry")).await;
    journal.child.kill().await.unwrap();
    assert!(lines.len() == 1 && lines[0].contains("journal.entry journal run.completed info"), "{lines:#?}");
}

#[tokio::test]
async fn watch_json_prints_raw_frames_of_the_chosen_channels() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "cat").await;
    let mut watch = Streaming::spawn(crewship_for(&d), &["watch", "--json", "--channel", "runs"]);
    assert_eq!(Streaming::next(&mut watch.stderr).await, "crewship: watching runs");
    let done = d.run_to_end("alpha", "worker", "x").await;
    let lines = watch.lines_until(|l| l.contains("run.completed")).await;
    watch.child.kill().await.unwrap();
    let frames: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(frames.len(), 2, "only the runs channel: {lines:#?}");
    assert_eq!((frames[0]["type"].as_str(), frames[0]["channel"].as_str()), (Some("run.started"), Some("runs")));
    assert_eq!(frames[1]["data"]["id"], done["run_id"]);

    let refused = crewship(&d, &["watch", "--channel", "nonsense"]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("unknown channels"), "{}", refused.stderr);
}

#[tokio::test]
async fn top_once_shows_real_numbers() {
    let d = Daemon::start_with(&[
        ("CREWSHIP_METRICS_CACHE_TTL", "1ms"),
        ("CREWSHIP_METRICS_ALLOW_LOOPBACK", "false"),
        ("CREWSHIP_METRICS_TOKEN", "scrape-me"),
    ])
    .await;
    d.crew_with_agent("alpha", 1, "read t; [ \"$t\" = fail ] && exit 3; echo ok").await;
    assert_eq!(d.run_to_end("alpha", "worker", "fine").await["status"], "completed");
    assert_eq!(d.run_to_end("alpha", "worker", "fail").await["status"], "failed");
    let call = json!({"provider": "anthropic", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.125});
    d.ok("/api/v1/llm-calls", call, 201).await;

    // /metrics has its own token; without it this daemon hides the page.
    let hidden = crewship(&d, &["top", "--once"]).await;
    assert_eq!(hidden.code, 1);
    assert!(hidden.stderr.contains("--metrics-token") && hidden.stderr.ends_with("(404)\n"), "{}", hidden.stderr);

    let frame = crewship(&d, &["top", "--once", "--metrics-token", "scrape-me"]).await.ok();
    assert!(!frame.contains('\x1b'), "no escape codes into a pipe: {frame:?}");
    assert!(!frame.contains('?'), "every number is on the page:\n{frame}");
    assert_eq!(frame.lines().count(), 11, "{frame}");
    for expected in [
        "0.1.0 on test-host",
        "pending 0  queued 0  running 0  completed 1  failed 1  cancelled 0  other 0",
        "depth 0  crews 0  max 0",
        "started 2  completed 1  failed 1  cancelled 0  timeout 0\n",
        "rates          from the next frame on",
        "anthropic  calls 1  spend $0.1250",
        "tracked 0  reporting 0",
        "collectors all up",
    ] {
        assert!(frame.contains(expected), "{expected:?} in\n{frame}");
    }

    let mut env = crewship_for(&d);
    env.env("CREWSHIP_METRICS_TOKEN", "scrape-me");
    let json = run_with(env, &["top", "--once", "--json"], None).await.json();
    assert_eq!(json["assignments"]["completed"], 1.0);
    assert_eq!(json["run_events"]["failed"], 1.0);
    assert_eq!(json["failure_ratio"], Value::Null, "one frame has no window");
    assert_eq!(json["llm_cost_usd"]["anthropic"], 0.125);
    assert_eq!(json["hostname"], "test-host");
    assert!(json["uptime_seconds"].as_f64().unwrap() > 0.0 && json["memory_alloc_bytes"].as_f64().unwrap() > 0.0);
}

/// The commands of the README's CLI section, as written.
fn readme_cli_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## CLI\n").nth(1).expect("a CLI section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("a sh block");
    block.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect()
}

#[tokio::test]
async fn the_readme_commands_work_unchanged_on_the_default_data_dir() {
    let home = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let data_dir = home.path().join(".crewship");
    let d = Daemon::start_in(home.clone(), &[("CREWSHIP_DATA_DIR", data_dir.to_str().unwrap())]).await;
    let bin_dir = crate::common::cli_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    // Nothing but HOME tells crewship where the token is.
    let shell = |line: &str| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("exec {line}")])
            .env_clear()
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("CREWSHIP_URL", &d.base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let commands = readme_cli_commands();
    assert!(commands.len() >= 8, "{commands:?}");
    for line in &commands {
        assert!(line.starts_with("crewship "), "{line}");
        if line.starts_with("crewship watch") || line.starts_with("crewship top") {
            // They run until stopped: their first line proves they work.
            let mut live = Streaming::spawn(shell(line), &[]);
            let first = tokio::select! {
                l = Streaming::next(&mut live.stdout) => l,
                l = Streaming::next(&mut live.stderr) => l,
            };
            assert!(!first.starts_with("crewship: ") || first.starts_with("crewship: watching"), "{line}: {first}");
            live.child.kill().await.unwrap();
            continue;
        }
        let out = run_with(shell(line), &[], None).await;
        assert_eq!(out.code, 0, "{line}: {}", out.stderr);
    }
    // They did what they say.
    let done = d.get("/api/v1/assignments").await.body;
    assert_eq!(done["items"][0]["task"], "summarize the tides", "{done}");
}

/// A URL without a scheme is the daemon's http address.
#[tokio::test]
async fn a_url_without_a_scheme_means_http() {
    let d = Daemon::start().await;
    let bare = d.base.trim_start_matches("http://").to_string();
    let mut cmd = crewship_at(&bare);
    cmd.env("CREWSHIP_DATA_DIR", d.data_dir());
    let out = run_with(cmd, &["--json", "nodes"], None).await.json();
    assert_eq!(out["items"].as_array().map(Vec::len), Some(1), "{out}");
}

/// Shell completions and man pages, generated from the command lines
/// themselves.
#[tokio::test]
async fn completions_and_man_pages() {
    for (shell, marker) in [("bash", "_crewship()"), ("zsh", "#compdef crewship"), ("fish", "complete -c crewship")] {
        let out = run_with(crewship_at("http://127.0.0.1:9"), &["completions", shell], None).await.ok();
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(out.contains("assignments"), "{shell} completes the subcommands");
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("man");
    run_with(crewship_at("http://127.0.0.1:9"), &["man", "--out", target.to_str().unwrap()], None).await.ok();
    // The daemon writes its own.
    let daemon = std::process::Command::new(crate::common::bin()).arg("--man").arg(&target).output().unwrap();
    assert!(daemon.status.success(), "{}", String::from_utf8_lossy(&daemon.stderr));
    for page in ["man1/crewship.1", "man1/crewship-crews.1", "man1/crewship-assignments.1", "man8/crewshipd.8"] {
        let text = std::fs::read_to_string(target.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is no man page:\n{text}");
    }
    let daemon = std::fs::read_to_string(target.join("man8/crewshipd.8")).unwrap();
    assert!(daemon.contains("check\\-config") && daemon.contains("CREWSHIP_PORT"), "{daemon}");
    // The settings the CLI shares with the daemon are the daemon's too.
    assert!(daemon.contains("CREWSHIP_DATA_DIR"), "{daemon}");
}

/// A stand-in server: `/healthz` answers `healthz` (None: plain text), and
/// everything else 200 `{}`.
async fn impostor(healthz: Option<Value>) -> String {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let healthz = healthz.clone();
        async move {
            match (uri.path(), healthz) {
                ("/healthz", Some(h)) => axum::Json(h).into_response(),
                ("/healthz", None) => "hello from some other server".into_response(),
                _ => axum::Json(serde_json::json!({})).into_response(),
            }
        }
    });
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The FAIL lines of a doctor run that must have failed.
fn failures(o: Outcome) -> Vec<String> {
    assert_eq!(o.code, 1, "doctor passed:\n{}", o.stdout);
    assert!(o.stderr.contains("checks failed"), "{}", o.stderr);
    o.stdout.lines().filter(|l| l.starts_with("FAIL")).map(String::from).collect()
}

#[tokio::test]
async fn doctor_passes_a_healthy_daemon_and_names_each_broken_case() {
    let d = Daemon::start().await;
    let healthy = crewship(&d, &["doctor"]).await;
    let out = healthy.ok();
    let names: Vec<&str> = out.lines().map(|l| l.split_whitespace().nth(1).unwrap_or_default()).collect();
    assert!(out.lines().all(|l| l.starts_with("PASS")), "{out}");
    assert_eq!(names, ["reachable", "ready", "version", "token", "metrics", "docker", "free"], "{out}");
    let json = crewship(&d, &["--json", "doctor"]).await.json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["checks"].as_array().unwrap().len(), 7);

    // Nothing listens there.
    let fail = failures(run_with(crewship_at("http://127.0.0.1:9"), &["doctor"], None).await);
    assert!(fail.len() == 1 && fail[0].contains("reachable") && fail[0].contains("cannot reach"), "{fail:?}");
    // Something else answers.
    let other = impostor(None).await;
    let fail = failures(run_with(crewship_at(&other), &["doctor"], None).await);
    assert!(fail[0].contains("reachable") && fail[0].contains("it is not crewshipd"), "{fail:?}");
    // Another version.
    let old = impostor(Some(serde_json::json!({"service": "crewshipd", "version": "0.0.1"}))).await;
    let fail = failures(run_with(crewship_at(&old), &["doctor"], None).await);
    assert!(fail.iter().any(|l| l.contains("version") && l.contains("crewshipd 0.0.1")), "{fail:?}");
    // A wrong token.
    let mut cmd = crewship_at(&d.base);
    cmd.env("CREWSHIP_API_TOKEN", "not-the-token");
    let fail = failures(run_with(cmd, &["doctor"], None).await);
    assert!(fail.len() == 1 && fail[0].contains("token") && fail[0].contains("401"), "{fail:?}");
    // Too little space for the asked margin.
    let fail = failures(crewship(&d, &["doctor", "--min-free-mib", "1000000000000"]).await);
    assert!(fail.len() == 1 && fail[0].contains("free space"), "{fail:?}");
}

#[tokio::test]
async fn doctor_fails_an_open_daemon_without_a_metrics_token_and_an_absent_engine() {
    let d = Daemon::start_with(&[
        ("CREWSHIP_HOST", "0.0.0.0"),
        ("CREWSHIP_DOCKER_HOST", "unix:///nonexistent/docker.sock"),
    ])
    .await;
    let crew = serde_json::json!({"slug": "boxed", "name": "B", "runtime": "docker", "image": "alpine:3"});
    assert_eq!(d.post("/api/v1/crews", crew).await.status, 201);
    let fail = failures(crewship(&d, &["doctor"]).await);
    assert!(fail.iter().any(|l| l.contains("metrics token") && l.contains("0.0.0.0")), "{fail:?}");
    assert!(fail.iter().any(|l| l.contains("docker") && l.contains("1 crews run in containers")), "{fail:?}");
    assert_eq!(fail.len(), 2, "{fail:?}");
}

/// `top` over time: rates and the failure ratio of what happened while it
/// watched (the alert's window), not of the database's whole life; and a
/// URL that answers with something else is said to be no crewshipd.
#[tokio::test]
async fn top_shows_rates_and_the_windowed_failure_ratio() {
    use tokio::io::AsyncBufReadExt;
    let d = Daemon::start_with(&[("CREWSHIP_METRICS_CACHE_TTL", "1ms"), ("CREWSHIP_METRICS_LIVE_WINDOW", "0s")]).await;
    d.crew_with_agent("alpha", 1, "read t; [ \"$t\" = fail ] && exit 3; echo ok").await;
    // Before top starts: 3 failures of 3, which the window must not count.
    for _ in 0..3 {
        assert_eq!(d.run_to_end("alpha", "worker", "fail").await["status"], "failed");
    }
    let mut cmd = crewship_for(&d);
    cmd.args(["--json", "top", "--interval", "200ms"]);
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let first = next().await;
    assert_eq!(first["failure_ratio"], Value::Null);
    for task in ["fine", "fine", "fine", "fail"] {
        d.run_to_end("alpha", "worker", task).await;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let frame = loop {
        let f = next().await;
        // Every watched run has ended (the last one is the failure).
        if f["run_events"]["started"] == 7.0 && f["run_events"]["failed"] == 4.0 {
            break f;
        }
        assert!(tokio::time::Instant::now() < deadline, "never saw the runs: {f}");
    };
    assert_eq!(frame["failure_ratio"], 0.25, "1 of the 4 runs top watched: {frame}");
    assert!(frame["runs_started_per_min"].as_f64().unwrap() > 0.0, "{frame}");
    child.kill().await.unwrap();

    let other = impostor(None).await;
    let o = run_with(crewship_at(&other), &["top", "--once"], None).await;
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stderr.contains("not with crewshipd's /metrics"), "{}", o.stderr);
}

/// Pipelines from a YAML file, runs with inputs (and dry), their runs with
/// steps, and a cancel: the whole pipelines API through the CLI.
#[tokio::test]
async fn pipelines_and_their_runs_from_the_cli() {
    let d = Daemon::start().await;
    d.crew_with_agent("pl", 2, "cat").await;
    d.ok(
        "/api/v1/crews/pl/agents",
        json!({"slug": "slow", "name": "S", "command": ["sh", "-c", "cat; exec sleep 60"]}),
        201,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("two.yaml");
    std::fs::write(
        &file,
        "slug: two\nname: Two steps\nsteps:\n  - {id: a, crew: pl, agent: worker, task: \"about {{inputs.topic}}\"}\n  - {id: b, crew: pl, agent: worker, task: \"then {{steps.a.output}}\"}\n",
    )
    .unwrap();
    let created = crewship(&d, &["--json", "pipelines", "create", file.to_str().unwrap()]).await.json();
    assert_eq!(created["slug"], "two");
    let list = crewship(&d, &["pipelines", "list"]).await.ok();
    assert_eq!(line_with(&list, "two")[2..4], ["Two", "steps"], "{list}");
    assert!(crewship(&d, &["pipelines", "get", "two"]).await.ok().contains("Two steps"));

    let dry = crewship(&d, &["--json", "pipelines", "run", "two", "--input", "topic=tides", "--dry-run"]).await.json();
    assert_eq!(dry["status"], "dry_run");
    assert_eq!(dry["steps"][0]["task"], "about tides");

    let mut ws = d.ws().await;
    ws.subscribe(&["pipeline_runs"]).await;
    let run = crewship(&d, &["--json", "pipelines", "run", "two", "--input", "topic=tides"]).await.json();
    let id = run["id"].as_str().unwrap().to_string();
    ws.next_matching(|f| f["data"]["id"] == id.as_str() && f["data"]["status"] == "completed").await;
    let shown = crewship(&d, &["pipeline-runs", "get", &id]).await.ok();
    assert!(shown.contains("completed") && shown.contains("STEP"), "{shown}");
    assert_eq!(line_with(&shown, "then about tides")[0], "b", "{shown}");
    let runs = crewship(&d, &["--json", "pipeline-runs", "list", "--pipeline", "two"]).await.json();
    assert_eq!(runs["items"].as_array().unwrap().len(), 2, "{runs}");

    // A run stuck on a slow step is cancelled.
    let slow = d.dir.path().join("slow.json");
    let def =
        json!({"slug": "stuck", "name": "Stuck", "steps": [{"id": "s", "crew": "pl", "agent": "slow", "task": "x"}]});
    std::fs::write(&slow, def.to_string()).unwrap();
    crewship(&d, &["pipelines", "create", slow.to_str().unwrap()]).await.ok();
    let run = crewship(&d, &["--json", "pipelines", "run", "stuck"]).await.json();
    let id = run["id"].as_str().unwrap().to_string();
    let cancelled = crewship(&d, &["--json", "pipeline-runs", "cancel", &id]).await.json();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let gone = crewship(&d, &["--json", "pipelines", "delete", "stuck"]).await.json();
    assert!(gone["deleted_at"].is_string(), "{gone}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "slug: [unclosed").unwrap();
    let refused = crewship(&d, &["pipelines", "create", bad.to_str().unwrap()]).await;
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("neither JSON") && refused.stderr.contains("YAML"), "{}", refused.stderr);
}

/// LLM calls recorded from the CLI, priced by the rate card it shows; the
/// containers this node tracks.
#[tokio::test]
async fn llm_calls_the_rate_card_and_containers_from_the_cli() {
    let d = Daemon::start().await;
    let rates = crewship(&d, &["llm", "rates"]).await.ok();
    let sonnet = line_with(&rates, "claude-sonnet-4");
    assert_eq!(sonnet[..4], ["anthropic", "claude-sonnet-4", "3.0", "15.0"], "{rates}");
    let call = crewship(
        &d,
        &[
            "--json",
            "llm",
            "record",
            "--provider",
            "anthropic",
            "--model",
            "claude-sonnet-4-20250514",
            "--input-tokens",
            "1000000",
            "--output-tokens",
            "100000",
        ],
    )
    .await
    .json();
    assert_eq!(call["priced"], true);
    assert!((call["cost_usd"].as_f64().unwrap() - 4.5).abs() < 1e-9, "3 USD in + 1.5 USD out: {call}");
    let flat = crewship(
        &d,
        &[
            "--json",
            "llm",
            "record",
            "--provider",
            "openai",
            "--model",
            "gpt-5",
            "--input-tokens",
            "5",
            "--output-tokens",
            "5",
            "--flat-rate",
        ],
    )
    .await
    .json();
    assert_eq!(flat["cost_usd"], 0.0);
    let spend = crewship(&d, &["--json", "spend"]).await.json();
    assert_eq!(spend["rows"].as_array().unwrap().len(), 2, "{spend}");

    let containers = crewship(&d, &["containers", "list"]).await.ok();
    assert!(containers.starts_with("CONTAINER"), "{containers}");
    d.crew_with_agent("local", 1, "true").await;
    let refused = crewship(&d, &["containers", "start", "local"]).await;
    assert_eq!(refused.code, 1, "a local crew has no container: {}", refused.stdout);
}

/// `runs output --follow` prints what a run writes as it writes it, each
/// byte once, and returns when the run ends.
#[tokio::test]
async fn runs_output_follows_a_live_run_to_its_end() {
    let d = Daemon::start().await;
    // The pauses are pacing, not synchronisation: the run writes while it is followed.
    d.crew_with_agent("fol", 1, "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three").await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": "fol", "agent": "worker", "task": "t"}), 201).await;
    let id = a["id"].as_str().unwrap().to_string();
    let running = ws.next_matching(|f| f["data"]["id"] == id.as_str() && f["data"]["status"] == "running").await;
    let run_id = running["data"]["run_id"].as_str().unwrap().to_string();
    let out = crewship(&d, &["runs", "output", &run_id, "--follow"]).await.ok();
    assert_eq!(out, "one\ntwo\nthree\n");
    let status = d.get(&format!("/api/v1/runs/{run_id}")).await.body["status"].clone();
    assert_eq!(status, "completed", "follow returned only once the run had ended");

    // The run in the listing, newest first, filtered by crew and status.
    d.crew_with_agent("other", 1, "exit 4").await;
    let failed = d.run_to_end("other", "worker", "x").await;
    let all = crewship(&d, &["--json", "runs", "list"]).await.json();
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [failed["run_id"].as_str().unwrap(), run_id.as_str()]);
    let mine = crewship(&d, &["--json", "runs", "list", "--crew", "fol", "--status", "completed"]).await.json();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    let none = crewship(&d, &["--json", "runs", "list", "--crew", "fol", "--status", "failed"]).await.json();
    assert_eq!(none["items"], json!([]));
    let table = crewship(&d, &["runs", "list", "--crew", "other"]).await.ok();
    assert!(line_with(&table, failed["run_id"].as_str().unwrap()).contains(&"failed"), "{table}");
}
