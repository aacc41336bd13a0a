//! WebSocket sessions: every committed change, streamed to subscribers
//! (`session`), and the count of sessions open.

pub mod session;

use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::watch;

/// Counts authenticated sessions for `crewshipd_ws_connections`, and tells
/// every session when the daemon is closing.
pub struct Sessions {
    connections: AtomicI64,
    closing: watch::Sender<bool>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions { connections: AtomicI64::new(0), closing: watch::channel(false).0 }
    }
}

/// Holds one slot of the connection count; releases it when dropped.
pub struct Connected<'a>(&'a Sessions);

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Sessions {
    pub fn count(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Asks every session to close (shutdown).
    pub fn close_all(&self) {
        let _ = self.closing.send(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn connect(&self) -> Connected<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Connected(self)
    }
}
