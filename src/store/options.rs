//! How the store is opened: durability, bounds, and the counters' layout.

use std::time::Duration;

/// Slots each hot counter row is split into where writers commit at once,
/// unless `Options` says otherwise.
const STRIPES: i64 = 8;

/// The database's durability: SQLite's `synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// An acknowledged write is on disk (an fsync at every commit).
    Full,
    /// An acknowledged write survives a crash of crewshipd, not of the
    /// machine.
    Normal,
}

/// How the store is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub sync: Synchronous,
    /// Write operations that may wait for the writer; more get 503.
    pub write_queue: usize,
    /// Time budget of the start-up integrity check (zero: none).
    pub check_time: Duration,
    /// False only for the benchmark that measures what counter maintenance
    /// costs: the metrics of such a store are wrong. Only `counters` reads
    /// it.
    pub maintain_counters: bool,
    /// Slots each hot counter row is split into where writers commit at
    /// once (PostgreSQL); 1 only for the benchmark of what striping buys.
    /// SQLite's one writer always uses one.
    pub counter_stripes: i64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sync: Synchronous::Full,
            write_queue: 4096,
            check_time: Duration::from_secs(10),
            maintain_counters: true,
            counter_stripes: STRIPES,
        }
    }
}
