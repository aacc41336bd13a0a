//! Live process statistics: /proc for the standard `process_*` series,
//! jemalloc for heap figures, tokio for the live task count.

use tikv_jemalloc_ctl::{epoch, raw, stats};

#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

pub fn process() -> Option<ProcessStats> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().ok()? as f64;
    let max_fds = match me.limits().ok()?.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(n) => Some(n),
        procfs::process::LimitValue::Unlimited => None,
    };
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss * procfs::page_size(),
        virtual_bytes: stat.vsize,
        open_fds: me.fd_count().ok()? as u64,
        max_fds,
        start_time_seconds: boot + stat.starttime as f64 / ticks,
    })
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AllocStats {
    /// Bytes of heap in live allocations.
    pub allocated: u64,
    /// Bytes in chunks the allocator has mapped from the OS.
    pub mapped: u64,
    /// Purge sweeps (dirty and muzzy) over all arenas: the allocator's
    /// memory-reclamation passes.
    pub purges: u64,
}

fn purges(name: &[u8]) -> u64 {
    // SAFETY: both names are NUL-terminated and read a uint64_t counter.
    unsafe { raw::read::<u64>(name) }.unwrap_or(0)
}

pub fn allocator() -> Option<AllocStats> {
    // Statistics are a snapshot refreshed by advancing the epoch.
    epoch::advance().ok()?;
    Some(AllocStats {
        allocated: stats::allocated::read().ok()? as u64,
        mapped: stats::mapped::read().ok()? as u64,
        // 4096 is MALLCTL_ARENAS_ALL: the sum over every arena.
        purges: purges(b"stats.arenas.4096.dirty_npurge\0") + purges(b"stats.arenas.4096.muzzy_npurge\0"),
    })
}

/// Live async tasks in the current tokio runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::try_current().map(|h| h.metrics().num_alive_tasks()).unwrap_or(0)
}
