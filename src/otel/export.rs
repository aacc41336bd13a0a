//! The batch exporter: spans wait in a bounded queue (a full queue drops
//! the span, counted, never waits), and one task sends them in batches
//! over OTLP/HTTP. A batch the receiver refuses or never answers is
//! dropped and counted too; failures are logged at most once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::proto::{self, Resource, Span};

/// Where and how spans are sent.
#[derive(Debug, Clone)]
pub struct Export {
    /// The full URL, `/v1/traces` included.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Bodies are sent gzip-compressed (`OTEL_EXPORTER_OTLP_COMPRESSION`).
    pub gzip: bool,
    pub resource: Resource,
    /// Spans held at most (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub queue: usize,
    /// Spans per request at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub batch: usize,
    /// How long a span may wait for its batch to fill (`OTEL_BSP_SCHEDULE_DELAY`).
    pub delay: Duration,
    /// A request's deadline (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout: Duration,
}

const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Logs the first failure, then at most one line per minute with the
/// failures since.
struct FailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl FailureLog {
    fn failed(&mut self, url: &str, error: &str, spans: usize) {
        self.unlogged += 1;
        if self.last.is_some_and(|t| t.elapsed() < FAILURE_LOG_EVERY) {
            return;
        }
        tracing::warn!(url, error, spans, failures = self.unlogged, "could not export spans; they are dropped");
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }
}

pub(super) struct Queue {
    tx: mpsc::Sender<Span>,
    pub(super) dropped: Arc<AtomicU64>,
    closing: watch::Sender<bool>,
}

impl Queue {
    pub(super) fn push(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the task to send what is queued and stop.
    pub(super) fn close(&self) {
        let _ = self.closing.send(true);
    }
}

/// Starts the exporting task; it ends once asked to close, after sending
/// what was queued.
pub(super) fn start(export: Export) -> Result<(Queue, tokio::task::JoinHandle<()>), String> {
    let client = reqwest::Client::builder()
        .timeout(export.timeout)
        .build()
        .map_err(|e| format!("cannot build the OTLP client: {e}"))?;
    let (tx, rx) = mpsc::channel(export.queue.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let (closing, closed) = watch::channel(false);
    let task = tokio::spawn(run(client, export, rx, closed, dropped.clone()));
    Ok((Queue { tx, dropped, closing }, task))
}

async fn run(
    client: reqwest::Client,
    export: Export,
    mut rx: mpsc::Receiver<Span>,
    mut closed: watch::Receiver<bool>,
    dropped: Arc<AtomicU64>,
) {
    let mut log = FailureLog { last: None, unlogged: 0 };
    loop {
        let first = tokio::select! {
            s = rx.recv() => s,
            _ = closed.wait_for(|c| *c) => None,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + export.delay;
        while batch.len() < export.batch {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => batch.push(s),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = closed.wait_for(|c| *c) => break,
            }
        }
        send(&client, &export, batch, &dropped, &mut log).await;
    }
    // Closing: what is queued goes out in full batches.
    let mut batch = Vec::new();
    while let Ok(s) = rx.try_recv() {
        batch.push(s);
        if batch.len() == export.batch {
            send(&client, &export, std::mem::take(&mut batch), &dropped, &mut log).await;
        }
    }
    if !batch.is_empty() {
        send(&client, &export, batch, &dropped, &mut log).await;
    }
}

fn gzipped(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

async fn send(client: &reqwest::Client, export: &Export, batch: Vec<Span>, dropped: &AtomicU64, log: &mut FailureLog) {
    let body = proto::encode(&export.resource, env!("CARGO_PKG_VERSION"), &batch);
    let mut req = client.post(&export.url).header("content-type", "application/x-protobuf");
    req = if export.gzip { req.header("content-encoding", "gzip").body(gzipped(&body)) } else { req.body(body) };
    for (k, v) in &export.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let failure = match req.send().await {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("the receiver answered {}", r.status())),
        Err(e) => Some(e.to_string()),
    };
    if let Some(error) = failure {
        dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
        log.failed(&export.url, &error, batch.len());
    }
}
