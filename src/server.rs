//! The HTTP server under explicit bounds: connections are accepted only
//! while a slot is free (so at the cap the daemon keeps serving what it
//! has, and a new client waits in the listen backlog until one closes), a
//! client must send its headers within the header timeout (hyper applies
//! the same bound to the wait for the next request on a keep-alive
//! connection), and shutdown drains connections for at most its grace.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// File descriptors kept back from connections, at least: the database,
/// runs' pipes, logs and the container engine need theirs.
const MIN_FD_RESERVE: u64 = 64;

/// A connection's slot under the cap. Requests carry it, so a WebSocket
/// session (which outlives its HTTP exchange) holds the slot it came in on.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub grace: Duration,
}

/// Raises the soft open-file limit to the hard one and returns it: every
/// connection costs a descriptor, and the default soft limit (1024) is
/// far below what the hard limit usually allows.
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Connections the open-file limit leaves room for, keeping a quarter (at
/// least `MIN_FD_RESERVE`) for everything else.
pub fn default_max_connections(open_file_limit: u64) -> usize {
    let reserve = (open_file_limit / 4).max(MIN_FD_RESERVE);
    open_file_limit.saturating_sub(reserve).max(1) as usize
}

/// Serves `router` until `shutdown` resolves, then stops accepting, asks
/// every connection to finish its request and close, and waits for them at
/// most `limits.grace`; connections still open then are dropped.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut accept_errors = 0u64;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slot semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = connection(stream, peer, router.clone(), slot, limits.header_timeout, closing_rx.clone());
                tokio::spawn(conn);
            }
            Err(e) => {
                // Out of descriptors, or a connection reset before accept:
                // say so (once per burst) and let descriptors free up.
                accept_errors += 1;
                if accept_errors.is_power_of_two() {
                    tracing::warn!(error = %e, failures = accept_errors, "cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.grace, slots.acquire_many(all)).await.is_err() {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(open, grace = ?limits.grace, "connections still open after the shutdown grace; closing them");
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: OwnedSemaphorePermit,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let slot = ConnectionSlot(Arc::new(slot));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(slot.clone());
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = closing.wait_for(|c| *c) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_a_reserve() {
        assert_eq!(default_max_connections(1024), 768);
        assert_eq!(default_max_connections(100), 36);
        assert_eq!(default_max_connections(10), 1);
    }
}
