//! The containers the stats collector tracks, with their latest samples.

pub use crewship_wire::answers::Reading;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One stats sample of a container (API.md field names).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub container_id: String,
    pub crew: String,
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_limit_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub pids: u64,
    pub sampled_at: String,
}

#[derive(Debug, Clone)]
struct Tracked {
    crew: String,
    latest: Option<(Instant, Sample)>,
}

pub struct Registry {
    /// A sample older than this no longer counts as reporting.
    fresh_for: Duration,
    tracked: Mutex<HashMap<String, Tracked>>,
}

impl Registry {
    /// `poll_interval`: the collector's; a container reports while its
    /// latest sample is younger than three intervals.
    pub fn new(poll_interval: Duration) -> Registry {
        Registry { fresh_for: poll_interval * 3, tracked: Mutex::new(HashMap::new()) }
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        crate::sync::lock(&self.tracked)
    }

    /// (tracked, reporting); reporting ≤ tracked by construction.
    pub fn counts(&self) -> (i64, i64) {
        let tracked = self.tracked();
        let fresh =
            tracked.values().filter(|t| t.latest.as_ref().is_some_and(|(at, _)| at.elapsed() < self.fresh_for)).count();
        (tracked.len() as i64, fresh as i64)
    }

    pub fn track(&self, container_id: &str, crew: &str) {
        self.tracked()
            .entry(container_id.to_string())
            .or_insert_with(|| Tracked { crew: crew.to_string(), latest: None });
    }

    /// Whether a container of `crew` is tracked.
    pub fn tracks(&self, crew: &str) -> bool {
        self.tracked().values().any(|t| t.crew == crew)
    }

    pub fn untrack(&self, container_id: &str) {
        self.tracked().remove(container_id);
    }

    /// Records a sample of a tracked container (ignored if untracked since).
    pub fn record(&self, sample: Sample) {
        if let Some(t) = self.tracked().get_mut(&sample.container_id) {
            t.latest = Some((Instant::now(), sample));
        }
    }

    /// (container id, crew) of everything tracked.
    pub fn list(&self) -> Vec<(String, String)> {
        self.tracked().iter().map(|(id, t)| (id.clone(), t.crew.clone())).collect()
    }

    /// Every tracked container with its latest sample, by container id.
    pub fn readings(&self) -> Vec<Reading> {
        let mut out: Vec<Reading> = self
            .tracked()
            .iter()
            .map(|(id, t)| match &t.latest {
                Some((_, s)) => Reading {
                    container_id: id.clone(),
                    crew: t.crew.clone(),
                    cpu_percent: Some(s.cpu_percent),
                    memory_used_bytes: Some(s.memory_used_bytes),
                    memory_limit_bytes: Some(s.memory_limit_bytes),
                    net_rx_bytes: Some(s.net_rx_bytes),
                    net_tx_bytes: Some(s.net_tx_bytes),
                    pids: Some(s.pids),
                    sampled_at: Some(s.sampled_at.clone()),
                },
                None => Reading { container_id: id.clone(), crew: t.crew.clone(), ..Reading::default() },
            })
            .collect();
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> Sample {
        Sample {
            container_id: id.into(),
            crew: "c".into(),
            cpu_percent: 1.5,
            memory_used_bytes: 1,
            memory_limit_bytes: 2,
            net_rx_bytes: 3,
            net_tx_bytes: 4,
            pids: 5,
            sampled_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn reporting_needs_a_fresh_sample() {
        let r = Registry::new(Duration::from_secs(5));
        r.track("a", "c");
        r.track("b", "c");
        assert_eq!(r.counts(), (2, 0));
        r.record(sample("a"));
        r.record(sample("zzz")); // untracked: ignored
        assert_eq!(r.counts(), (2, 1));
        r.untrack("a");
        assert_eq!(r.counts(), (1, 0));
    }

    #[test]
    fn stale_samples_stop_reporting() {
        let r = Registry::new(Duration::from_millis(1));
        r.track("a", "c");
        r.record(sample("a"));
        // Freshness is judged against a 3 ms window; wait well past it.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(r.counts(), (1, 0));
    }
}
