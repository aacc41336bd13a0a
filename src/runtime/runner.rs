//! The process runner: one child process per claimed assignment, contained
//! (`contain`) so that a timeout, a cancel or its end reaches every
//! descendant. Agents of docker crews run as an exec in their crew's
//! container instead.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::contain::{Containment, RunGroup};
use super::spans::{RunTrace, Telemetry};
use super::spawn;
use crate::capture::Output;
use crate::containers::{CrewContainers, exec};
use crate::domain::event::{Event, EventKind};
use crate::domain::status::{AssignmentStatus, RunStatus};
use crate::domain::{DomainError, Result};
use crate::store::Store;
use crate::store::assignments::{self, Claimed, RunEnd};
use crate::store::runs;
use crate::sync::lock;

/// Whether a variable of the daemon's own environment is kept from agents:
/// its settings (tokens and token files among them), the database
/// password, and what describes the daemon to its trace receiver (its
/// service name, and the export headers, which may hold a credential). An
/// agent gets only its run's token; the OTLP endpoint it may share.
fn withheld(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b"CREWSHIP_")
        || matches!(
            name,
            b"PGPASSWORD"
                | b"OTEL_SERVICE_NAME"
                | b"OTEL_RESOURCE_ATTRIBUTES"
                | b"OTEL_EXPORTER_OTLP_HEADERS"
                | b"OTEL_EXPORTER_OTLP_TRACES_HEADERS"
        )
}

/// Waits between tries to record a run's end while the database is busy
/// or full: doubling from the first to the longest (about 20 s in all).
const FINISH_RETRY_FIRST: Duration = Duration::from_millis(100);
const FINISH_RETRY_MAX: Duration = Duration::from_secs(10);

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A client cancelled the assignment.
    Cancel,
    /// The daemon is shutting down: the assignment goes back to the queue.
    Shutdown,
    /// This node can no longer count on its lease: the fleet takes the run
    /// back, so its end is not recorded here.
    Fenced,
}

#[derive(Debug)]
enum Outcome {
    Exited(ExitStatus),
    SpawnFailed(String),
    TimedOut(Duration),
    Stopped(StopReason),
}

struct Active {
    run_id: String,
    output: Arc<Mutex<Output>>,
    stop: watch::Sender<Option<StopReason>>,
    done: watch::Receiver<bool>,
}

pub struct Runner {
    store: Store,
    work_dir: PathBuf,
    grace: Duration,
    output_limit: usize,
    max_attempts: i64,
    active: Mutex<HashMap<i64, Active>>,
    /// Runs agents of docker crews inside their crew's container (on this
    /// node).
    containers: CrewContainers,
    containment: Containment,
    /// The daemon's URL as agents are told it.
    api_url: String,
    /// The daemon's own environment less what agents may not see, read
    /// once: every local run starts from it.
    inherited_env: Vec<(OsString, OsString)>,
    telemetry: Telemetry,
}

/// The agent's environment: its own variables, then the run's (API.md),
/// with the trace context its own OpenTelemetry SDK continues.
fn run_env(c: &Claimed, api_url: &str, traceparent: Option<String>) -> BTreeMap<String, String> {
    let mut env = c.agent.env.clone();
    env.insert("CREWSHIP_ASSIGNMENT_ID".into(), c.assignment.public_id());
    env.insert("CREWSHIP_RUN_ID".into(), c.run.id.clone());
    env.insert("CREWSHIP_CREW".into(), c.assignment.crew.slug.clone());
    env.insert("CREWSHIP_AGENT".into(), c.assignment.agent.slug.clone());
    env.insert("CREWSHIP_API_URL".into(), api_url.to_string());
    env.insert("CREWSHIP_RUN_TOKEN".into(), c.run_token.0.clone());
    if let Some(tp) = traceparent {
        env.insert("TRACEPARENT".into(), tp);
    }
    env
}

async fn pump(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<Output>>, is_stdout: bool) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        lock(&into).push(&buf[..n], is_stdout);
    }
}

/// Resolves when a stop is requested; never if the sender goes away.
async fn stop_requested(stop: &mut watch::Receiver<Option<StopReason>>) -> StopReason {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// What a runner is set up with.
pub struct Settings {
    /// Runs get a working directory per crew below this.
    pub work_dir: PathBuf,
    /// SIGTERM → SIGKILL grace of a cancel.
    pub grace: Duration,
    /// Bytes of output kept per run.
    pub output_limit: usize,
    /// Runs an assignment may start before an interruption fails it.
    pub max_attempts: u32,
    /// The daemon's URL as agents are told it.
    pub api_url: String,
}

impl Runner {
    pub fn new(
        store: Store,
        settings: Settings,
        containment: Containment,
        containers: CrewContainers,
        telemetry: Telemetry,
    ) -> Runner {
        Runner {
            store,
            work_dir: settings.work_dir,
            grace: settings.grace,
            output_limit: settings.output_limit,
            max_attempts: i64::from(settings.max_attempts),
            active: Mutex::new(HashMap::new()),
            containers,
            containment,
            api_url: settings.api_url,
            inherited_env: std::env::vars_os().filter(|(name, _)| !withheld(name)).collect(),
            telemetry,
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Active>> {
        lock(&self.active)
    }

    /// Starts executing a claimed assignment in the background.
    pub fn start(self: &Arc<Self>, claimed: Claimed) {
        let output = Arc::new(Mutex::new(Output::new(self.output_limit)));
        let (stop_tx, stop_rx) = watch::channel(None);
        let (done_tx, done_rx) = watch::channel(false);
        self.active().insert(
            claimed.assignment.id,
            Active { run_id: claimed.run.id.clone(), output: output.clone(), stop: stop_tx, done: done_rx },
        );
        let runner = self.clone();
        let trace = self.telemetry.run_started(&claimed);
        tokio::spawn(async move {
            let id = claimed.assignment.id;
            let outcome = runner.execute(&claimed, &trace, output.clone(), stop_rx).await;
            let run = claimed.run.id.clone();
            match runner.finish(claimed, outcome, &output).await {
                Ok(ended) => runner.telemetry.run_ended(&trace, &ended),
                // Settled elsewhere: cancelled through another node, or
                // taken back by the fleet after this node lost its lease.
                Err(DomainError::Conflict(why)) => tracing::info!(run, why, "the run's end was decided elsewhere"),
                Err(e) => tracing::error!(
                    error = %e, assignment = id,
                    "could not record the end of a run; the fleet (or the next start) recovers it"
                ),
            }
            runner.active().remove(&id);
            let _ = done_tx.send(true);
        });
    }

    /// Output captured so far by a run that is executing now.
    pub fn live_output(&self, run_id: &str) -> Option<String> {
        let active = self.active();
        let a = active.values().find(|a| a.run_id == run_id)?;
        let text = lock(&a.output).text();
        Some(text)
    }

    /// Stops an executing assignment and waits until its end is recorded.
    /// False if it was not executing here.
    pub async fn stop(&self, assignment_id: i64, reason: StopReason) -> bool {
        let done = {
            let active = self.active();
            let Some(a) = active.get(&assignment_id) else {
                return false;
            };
            let _ = a.stop.send(Some(reason));
            a.done.clone()
        };
        let mut done = done;
        let _ = done.wait_for(|d| *d).await;
        true
    }

    /// Stops a run executing here when its assignment was cancelled
    /// elsewhere (through another node of the fleet), until `stop`.
    pub async fn follow_cancels(
        self: Arc<Self>,
        mut events: tokio::sync::broadcast::Receiver<Arc<Event>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let e = tokio::select! {
                e = events.recv() => e,
                _ = stop.wait_for(|s| *s) => return,
            };
            let cancelled = match e {
                Ok(e) => match e.kind {
                    EventKind::Assignment { id, status: AssignmentStatus::Cancelled } => vec![id],
                    EventKind::Resync => self.cancelled_meanwhile().await,
                    _ => Vec::new(),
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.cancelled_meanwhile().await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for id in cancelled.into_iter().filter(|id| self.active().contains_key(id)) {
                let runner = self.clone();
                tokio::spawn(async move { runner.stop(id, StopReason::Cancel).await });
            }
        }
    }

    /// Assignments executing here that the store says were cancelled: what
    /// missed events may have hidden.
    async fn cancelled_meanwhile(&self) -> Vec<i64> {
        let ids: Vec<i64> = self.active().keys().copied().collect();
        let read = self
            .store
            .read(move |db| {
                let mut out = Vec::new();
                for id in ids {
                    if assignments::by_id(db, id)?.is_some_and(|a| a.status == AssignmentStatus::Cancelled) {
                        out.push(id);
                    }
                }
                Ok(out)
            })
            .await;
        read.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot check for cancels missed while events were lost");
            Vec::new()
        })
    }

    /// Stops everything executing (shutdown).
    pub async fn stop_all(&self, reason: StopReason) {
        let ids: Vec<i64> = self.active().keys().copied().collect();
        futures::future::join_all(ids.into_iter().map(|id| self.stop(id, reason))).await;
    }

    async fn execute(
        &self,
        c: &Claimed,
        trace: &RunTrace,
        output: Arc<Mutex<Output>>,
        stop: watch::Receiver<Option<StopReason>>,
    ) -> Outcome {
        let Some((program, args)) = c.agent.command.split_first() else {
            return Outcome::SpawnFailed("the agent has no command".into());
        };
        let timeout = Duration::from_secs(c.agent.timeout_seconds.max(1) as u64);
        let env = run_env(c, &self.api_url, self.telemetry.agent_context(trace));
        if c.crew.runs_in_container() {
            return self.execute_in_container(c, env, output, timeout, stop).await;
        }
        let dir = self.work_dir.join(&c.assignment.crew.slug);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return Outcome::SpawnFailed(format!("cannot create working directory {}: {e}", dir.display()));
        }
        let group = match self.containment.group_for(&c.run.id) {
            Ok(group) => group,
            Err(e) => return Outcome::SpawnFailed(format!("cannot set up the run's process group: {e}")),
        };
        let outcome = self.execute_local(c, env, program, args, &dir, &group, output, timeout, stop).await;
        group.remove().await;
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute_local(
        &self,
        c: &Claimed,
        run: BTreeMap<String, String>,
        program: &str,
        args: &[String],
        dir: &std::path::Path,
        group: &RunGroup,
        output: Arc<Mutex<Output>>,
        timeout: Duration,
        mut stop: watch::Receiver<Option<StopReason>>,
    ) -> Outcome {
        let mut env: Vec<(OsString, OsString)> = self
            .inherited_env
            .iter()
            .filter(|(name, _)| name.to_str().is_none_or(|n| !run.contains_key(n)))
            .cloned()
            .collect();
        env.extend(run.into_iter().map(|(k, v)| (k.into(), v.into())));
        let what = spawn::Spawn { program, args, env, dir, cgroup: group.cgroup() };
        let mut child = match spawn::spawn(&what).and_then(spawn::Spawned::into_child) {
            Ok(child) => child,
            Err(e) => return Outcome::SpawnFailed(format!("cannot start {program:?}: {e}")),
        };
        let pgid = child.id();
        let pk = c.run.pk;
        let cgroup = group.cgroup().map(|p| p.display().to_string());
        if let Err(e) = self.store.write(move |tx| runs::set_process(tx, pk, pgid, cgroup.as_deref())).await {
            tracing::warn!(error = %e, run = c.run.id, "could not record where the run's processes are");
        }
        let mut stdin = child.stdin.take();
        let task = c.assignment.task.clone();
        let feeder = tokio::spawn(async move {
            if let Some(stdin) = stdin.as_mut() {
                // A child that never reads its stdin is not an error.
                let _ = stdin.write_all(task.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        });
        let readers = [
            child.stdout.take().map(|s| tokio::spawn(pump(s, output.clone(), true))),
            child.stderr.take().map(|s| tokio::spawn(pump(s, output.clone(), false))),
        ];
        let run_id = c.run.id.as_str();
        let outcome = tokio::select! {
            status = child.wait() => match status {
                Ok(s) => Outcome::Exited(s),
                Err(e) => Outcome::SpawnFailed(format!("lost the child process: {e}")),
            },
            _ = tokio::time::sleep(timeout) => {
                group.kill(Some(pgid), run_id);
                let _ = child.wait().await;
                Outcome::TimedOut(timeout)
            }
            reason = stop_requested(&mut stop) => {
                group.signal(pgid, libc::SIGTERM);
                if tokio::time::timeout(self.grace, child.wait()).await.is_err() {
                    group.kill(Some(pgid), run_id);
                    let _ = child.wait().await;
                }
                Outcome::Stopped(reason)
            }
        };
        // Whatever the run left behind dies with it; then the pipes reach
        // EOF. (Without a cgroup, a descendant that cleared its environment
        // after leaving the group could hold them open: the wait for the
        // last bytes is bounded.)
        group.kill(Some(pgid), run_id);
        feeder.abort();
        for reader in readers.into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        }
        outcome
    }

    /// The same run, as an exec in the crew's container (see
    /// `containers::exec`).
    async fn execute_in_container(
        &self,
        c: &Claimed,
        env: BTreeMap<String, String>,
        output: Arc<Mutex<Output>>,
        timeout: Duration,
        mut stop: watch::Receiver<Option<StopReason>>,
    ) -> Outcome {
        if let Err(e) = self.containers.ensure(&c.crew).await {
            return Outcome::SpawnFailed(format!("the crew's container on this node: {e}"));
        }
        let engine = self.containers.engine();
        let gate = engine.gate(c.crew.id);
        let _in_container = gate.read().await;
        let container = engine.container_name(&c.crew);
        let job = exec::Job {
            container: &container,
            run_id: &c.run.id,
            argv: &c.agent.command,
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            task: c.assignment.task.clone(),
        };
        match exec::run(engine, job, output, timeout, self.grace, stop_requested(&mut stop)).await {
            exec::End::Exited(code) => Outcome::Exited(ExitStatus::from_raw(((code & 0xff) << 8) as i32)),
            exec::End::Failed(e) => Outcome::SpawnFailed(e),
            exec::End::TimedOut => Outcome::TimedOut(timeout),
            exec::End::Stopped(reason) => Outcome::Stopped(reason),
        }
    }

    /// Records the end of a run and its assignment in one transaction,
    /// while this node still owns the run (its lease, its epoch); returns
    /// the ended run.
    async fn finish(&self, c: Claimed, outcome: Outcome, output: &Mutex<Output>) -> Result<runs::RunRow> {
        if matches!(outcome, Outcome::Stopped(StopReason::Fenced)) {
            return Err(DomainError::conflict("this node stopped the run when it lost its lease"));
        }
        let (text, summary, last_err) = {
            let o = lock(output);
            (o.text(), o.summary(), o.last_stderr_line())
        };
        // A failure says what the agent last said on stderr, when it did.
        let said = |what: String| match &last_err {
            Some(line) => format!("{what}: {line}"),
            None => what,
        };
        let summary = Some(summary).filter(|s| !s.is_empty());
        let max_attempts = self.max_attempts;
        let (run_status, error, exit_code) = match &outcome {
            Outcome::Exited(s) if s.success() => (RunStatus::Completed, None, Some(0)),
            Outcome::Exited(s) => match (s.code(), s.signal()) {
                (Some(code), _) => {
                    (RunStatus::Failed, Some(said(format!("exit status {code}"))), Some(i64::from(code)))
                }
                (None, Some(sig)) => (RunStatus::Failed, Some(said(format!("killed by signal {sig}"))), None),
                _ => (RunStatus::Failed, Some(said("ended without a status".into())), None),
            },
            Outcome::SpawnFailed(e) => (RunStatus::Failed, Some(e.clone()), None),
            Outcome::TimedOut(t) => (RunStatus::Timeout, Some(format!("timed out after {}s", t.as_secs())), None),
            Outcome::Stopped(StopReason::Cancel) => (RunStatus::Cancelled, Some("cancelled by request".into()), None),
            Outcome::Stopped(StopReason::Shutdown | StopReason::Fenced) => {
                (RunStatus::Cancelled, Some("server_shutdown".into()), None)
            }
        };
        let end = RunEnd {
            status: run_status,
            error,
            exit_code,
            output: text,
            summary,
            requeue: matches!(outcome, Outcome::Stopped(StopReason::Shutdown)),
        };
        let (run, assignment_id) = (c.run, c.assignment.id);
        let record =
            move |tx: &mut crate::store::Tx<'_>| assignments::run_ended(tx, run, assignment_id, &end, max_attempts);
        // A busy or full database is worth waiting for: the run is over
        // either way, and its end must not be lost.
        let mut pause = FINISH_RETRY_FIRST;
        loop {
            let record = record.clone();
            match self.store.write(record).await {
                Err(DomainError::Unavailable(e)) if pause <= FINISH_RETRY_MAX => {
                    tracing::warn!(error = e, retry_in = ?pause, "cannot record the end of a run yet");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                other => return other,
            }
        }
    }
}
