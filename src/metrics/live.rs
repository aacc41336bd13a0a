//! The figures the page reads at render time rather than from the
//! database, and the handles it reads them from, gathered at start.

use std::sync::Arc;
use std::time::Instant;

use super::families::Live;
use super::process;
use crate::containers;
use crate::latency::Latencies;
use crate::otel::Tracer;
use crate::ws::Sessions;

pub struct Sources {
    pub started: Instant,
    pub sessions: Arc<Sessions>,
    /// The containers the stats collector tracks.
    pub containers: Arc<containers::Registry>,
    /// This node's histograms and HTTP counts.
    pub latencies: Arc<Latencies>,
    pub tracer: Tracer,
}

impl Sources {
    /// The live figures now; `snapshot_computations` is the DB snapshot
    /// cache's own count.
    pub fn read(&self, snapshot_computations: u64) -> Live {
        let (tracked, reporting) = self.containers.counts();
        let (runs, queue_wait) = self.latencies.runs();
        Live {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            alive_tasks: process::alive_tasks(),
            alloc: process::allocator(),
            process: process::process(),
            ws_connections: self.sessions.count(),
            containers_tracked: tracked,
            containers_reporting: reporting,
            snapshot_computations,
            runs,
            queue_wait,
            http: self.latencies.http(),
            spans_dropped: self.tracer.dropped(),
        }
    }
}
