//! Running an agent's command inside its crew's container: an exec through
//! the Engine API with stdin, stdout and stderr attached.
//!
//! A timeout or cancel must still stop the process and everything it
//! started, and the engine has no "signal this exec" call. Stopping is a
//! second exec that signals every process in the container whose
//! environment carries the run's `CREWSHIP_RUN_ID`: the run's own process
//! group, as it were, which survives reparenting and never matches a
//! reused pid. (A descendant that clears its environment escapes it.)

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::docker::Engine;
use crate::capture::Output;
use crate::domain::{DomainError, Result};
use crate::sync::lock;

/// How long to wait for an exec to end after SIGKILL before giving up on
/// it (the engine may have lost it, or it had not started yet).
const KILL_WAIT: Duration = Duration::from_secs(2);
const KILL_TRIES: usize = 3;

/// What to run, where.
pub struct Job<'a> {
    /// The container's name or id.
    pub container: &'a str,
    pub run_id: &'a str,
    pub argv: &'a [String],
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Written to the command's stdin, which is then closed.
    pub task: String,
}

/// How an exec ended.
#[derive(Debug)]
pub enum End<R> {
    Exited(i64),
    /// It could not start, or the engine lost it.
    Failed(String),
    TimedOut,
    /// `stop` resolved first; the process was terminated.
    Stopped(R),
}

/// A script that sends `signal` to every process of run `run_id` and
/// prints how many it reached. Run ids are hex, safe inside the script.
fn signal_run(run_id: &str, signal: &str) -> String {
    format!(
        "n=0; for e in /proc/[0-9]*/environ; do \
         grep -q 'CREWSHIP_RUN_ID={run_id}' \"$e\" 2>/dev/null || continue; \
         p=${{e#/proc/}}; kill -{signal} \"${{p%/environ}}\" 2>/dev/null && n=$((n+1)); \
         done; echo $n"
    )
}

struct Started {
    exec_id: String,
    /// Ends when the exec's output stream does (the process exited, or the
    /// connection to the engine broke).
    streams: tokio::task::JoinHandle<()>,
    feeder: tokio::task::JoinHandle<()>,
}

async fn start(engine: &Engine, job: &Job<'_>, output: Arc<Mutex<Output>>) -> Result<Started> {
    let docker = engine.client().await?;
    let options = CreateExecOptions {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: Some(job.env.clone()),
        cmd: Some(job.argv.to_vec()),
        ..CreateExecOptions::default()
    };
    let exec_id =
        docker.create_exec(job.container, options).await.map_err(|e| engine.error("container", job.container, e))?.id;
    let StartExecResults::Attached { output: mut stream, mut input } =
        docker.start_exec(&exec_id, None).await.map_err(|e| engine.error("exec", &exec_id, e))?
    else {
        return Err(DomainError::internal("the engine started an attached exec detached"));
    };
    let task = job.task.clone();
    let feeder = tokio::spawn(async move {
        // A command that never reads its stdin is not an error.
        let _ = input.write_all(task.as_bytes()).await;
        let _ = input.shutdown().await;
    });
    let streams = tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            let (bytes, is_stdout) = match frame {
                LogOutput::StdOut { message } | LogOutput::Console { message } => (message, true),
                LogOutput::StdErr { message } => (message, false),
                LogOutput::StdIn { .. } => continue,
            };
            lock(&output).push(&bytes, is_stdout);
        }
    });
    Ok(Started { exec_id, streams, feeder })
}

/// The exit code, once the engine reports the exec ended.
async fn exit_code(engine: &Engine, exec_id: &str) -> Result<i64> {
    let docker = engine.client().await?;
    // The output stream may close a moment before the engine records the
    // exit; ask again with a short back-off.
    let mut pause = Duration::from_millis(10);
    loop {
        let inspected = docker.inspect_exec(exec_id).await.map_err(|e| engine.error("exec", exec_id, e))?;
        if inspected.running != Some(true) {
            return inspected
                .exit_code
                .ok_or_else(|| DomainError::internal(format!("exec {exec_id} ended without an exit code")));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Runs a shell script in `container`. Detached: returns once it started.
/// Attached: returns its stdout once it ended.
async fn script(engine: &Engine, container: &str, script: String, detach: bool) -> Result<String> {
    let docker = engine.client().await?;
    let options = CreateExecOptions {
        attach_stdout: Some(!detach),
        cmd: Some(vec!["sh".to_string(), "-c".to_string(), script]),
        ..CreateExecOptions::default()
    };
    let exec_id = docker.create_exec(container, options).await.map_err(|e| engine.error("container", container, e))?.id;
    let start = bollard::exec::StartExecOptions { detach, ..Default::default() };
    let started = docker.start_exec(&exec_id, Some(start)).await.map_err(|e| engine.error("exec", &exec_id, e))?;
    let mut out = String::new();
    if let StartExecResults::Attached { output: mut stream, .. } = started {
        while let Some(Ok(frame)) = stream.next().await {
            if let LogOutput::StdOut { message } = frame {
                out.push_str(&String::from_utf8_lossy(&message));
            }
        }
    }
    Ok(out)
}

/// Sends `signal` (TERM, KILL) to the job's processes with a second exec.
async fn signal(engine: &Engine, job: &Job<'_>, signal: &str) {
    if let Err(e) = script(engine, job.container, signal_run(job.run_id, signal), true).await {
        tracing::warn!(run = job.run_id, signal, error = %e, "could not signal a process in a container");
    }
}

/// Kills what a run left running in `container` when the daemon that
/// started it died; true if there was such a process.
pub async fn kill_left_over(engine: &Engine, container: &str, run_id: &str) -> Result<bool> {
    let reached = script(engine, container, signal_run(run_id, "KILL"), false).await?;
    Ok(reached.trim().parse::<u64>().is_ok_and(|n| n > 0))
}

/// SIGKILL until `ended` resolves, a few times: the first may come before
/// the process exists.
async fn kill(engine: &Engine, job: &Job<'_>, mut ended: Pin<&mut impl Future>) {
    for _ in 0..KILL_TRIES {
        signal(engine, job, "KILL").await;
        if tokio::time::timeout(KILL_WAIT, ended.as_mut()).await.is_ok() {
            return;
        }
    }
    tracing::warn!(run = job.run_id, container = job.container, "a killed process in a container did not end");
}

/// Runs `job` until it exits, `timeout` passes (then SIGKILL), or `stop`
/// resolves (then SIGTERM, and SIGKILL after `grace`).
pub async fn run<R>(
    engine: &Engine,
    job: Job<'_>,
    output: Arc<Mutex<Output>>,
    timeout: Duration,
    grace: Duration,
    stop: impl Future<Output = R>,
) -> End<R> {
    let started = match start(engine, &job, output).await {
        Ok(s) => s,
        Err(e) => return End::Failed(format!("cannot start {:?} in container {}: {e}", job.argv, job.container)),
    };
    let Started { exec_id, streams, feeder } = started;
    let ended = async {
        let _ = streams.await;
        exit_code(engine, &exec_id).await
    };
    tokio::pin!(ended);
    let end = tokio::select! {
        code = &mut ended => match code {
            Ok(code) => End::Exited(code),
            Err(e) => End::Failed(format!("lost the process in container {}: {e}", job.container)),
        },
        _ = tokio::time::sleep(timeout) => {
            kill(engine, &job, ended.as_mut()).await;
            End::TimedOut
        }
        reason = stop => {
            signal(engine, &job, "TERM").await;
            if tokio::time::timeout(grace, ended.as_mut()).await.is_err() {
                kill(engine, &job, ended.as_mut()).await;
            }
            End::Stopped(reason)
        }
    };
    feeder.abort();
    end
}
