//! Docker stats readings turned into the samples the API shows, computed
//! as the Docker CLI computes `docker stats`.

use bollard::models::{ContainerCpuStats, ContainerStatsResponse};

use super::registry::Sample;

/// Cumulative CPU counters of one reading (nanoseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuReading {
    pub container: u64,
    pub system: u64,
}

impl CpuReading {
    fn of(stats: Option<&ContainerCpuStats>) -> CpuReading {
        CpuReading {
            container: stats.and_then(|s| s.cpu_usage.as_ref()?.total_usage).unwrap_or(0),
            system: stats.and_then(|s| s.system_cpu_usage).unwrap_or(0),
        }
    }
}

/// A stopped container still answers stats, with an empty reading whose
/// `read` time is Go's zero time: that is no sample.
pub fn is_running(stats: &ContainerStatsResponse) -> bool {
    stats.read.as_deref().is_some_and(|read| !read.starts_with("0001-01-01"))
}

/// CPU share over the interval between `before` and `now`, in percent of
/// one CPU (so up to 100 × online CPUs).
fn cpu_percent(before: CpuReading, now: CpuReading, online_cpus: u64) -> f64 {
    let container = now.container.saturating_sub(before.container);
    let system = now.system.saturating_sub(before.system);
    if container == 0 || system == 0 {
        return 0.0;
    }
    container as f64 / system as f64 * online_cpus as f64 * 100.0
}

/// Converts one reading. A one-shot reading has no precpu counters, so
/// `previous` (this container's last reading, if any) stands in for them;
/// without either the share is averaged since the container started.
/// Returns the sample and the reading to pass as `previous` next time.
pub fn sample(
    container_id: &str,
    crew: &str,
    stats: &ContainerStatsResponse,
    previous: Option<CpuReading>,
    sampled_at: String,
) -> (Sample, CpuReading) {
    let now = CpuReading::of(stats.cpu_stats.as_ref());
    let precpu = CpuReading::of(stats.precpu_stats.as_ref());
    let before = if precpu.system > 0 { precpu } else { previous.unwrap_or_default() };
    let cpu = stats.cpu_stats.as_ref();
    let online_cpus = cpu
        .and_then(|c| c.online_cpus)
        .map(u64::from)
        .filter(|n| *n > 0)
        .or_else(|| cpu.and_then(|c| c.cpu_usage.as_ref()?.percpu_usage.as_ref()).map(|p| p.len() as u64))
        .unwrap_or(1);
    let memory = stats.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    // Like the CLI, page cache the kernel can drop is not "used":
    // `inactive_file` on cgroup v2, `total_inactive_file` on v1.
    let cache = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file")).copied())
        .filter(|cache| *cache < usage)
        .unwrap_or(0);
    let (rx, tx) = stats.networks.iter().flatten().fold((0u64, 0u64), |(rx, tx), (_, n)| {
        (rx.saturating_add(n.rx_bytes.unwrap_or(0)), tx.saturating_add(n.tx_bytes.unwrap_or(0)))
    });
    let sample = Sample {
        container_id: container_id.to_string(),
        crew: crew.to_string(),
        cpu_percent: cpu_percent(before, now, online_cpus),
        memory_used_bytes: usage - cache,
        memory_limit_bytes: memory.and_then(|m| m.limit).unwrap_or(0),
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        pids: stats.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        sampled_at,
    };
    (sample, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reading(total: u64, system: u64, precpu: serde_json::Value) -> ContainerStatsResponse {
        serde_json::from_value(json!({
            "read": "2026-11-25T10:00:00.123456789Z",
            "cpu_stats": {
                "cpu_usage": {"total_usage": total, "percpu_usage": [1, 2]},
                "system_cpu_usage": system,
            },
            "precpu_stats": precpu,
            "memory_stats": {"usage": 300, "limit": 1000, "stats": {"inactive_file": 100}},
            "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
            "pids_stats": {"current": 7},
        }))
        .unwrap()
    }

    #[test]
    fn converts_like_the_docker_cli() {
        let stats = reading(3_000, 20_000, json!({"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000}));
        let (s, now) = sample("c1", "alpha", &stats, None, "t".into());
        // (2000 / 10000) × 2 CPUs (from percpu_usage) × 100
        assert_eq!(s.cpu_percent, 40.0);
        assert_eq!(s.memory_used_bytes, 200);
        assert_eq!(s.memory_limit_bytes, 1000);
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (11, 22));
        assert_eq!(s.pids, 7);
        assert_eq!(now, CpuReading { container: 3_000, system: 20_000 });
        assert!(is_running(&stats));
    }

    #[test]
    fn one_shot_readings_use_the_previous_reading() {
        let stats = reading(3_000, 20_000, json!({"cpu_usage": {"total_usage": 0}}));
        let (since_start, _) = sample("c1", "alpha", &stats, None, "t".into());
        assert_eq!(since_start.cpu_percent, 30.0);
        let previous = CpuReading { container: 2_500, system: 10_000 };
        let (s, _) = sample("c1", "alpha", &stats, Some(previous), "t".into());
        assert_eq!(s.cpu_percent, 10.0);
    }

    #[test]
    fn a_stopped_container_has_no_reading() {
        let stopped: ContainerStatsResponse =
            serde_json::from_value(json!({"read": "0001-01-01T00:00:00Z", "pids_stats": {}})).unwrap();
        assert!(!is_running(&stopped));
        let (s, _) = sample("c1", "alpha", &stopped, None, "t".into());
        assert_eq!((s.cpu_percent, s.memory_used_bytes, s.pids), (0.0, 0, 0));
    }
}
