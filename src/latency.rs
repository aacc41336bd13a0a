//! What this node measures as it goes (METRICS.md §7, per node): the run
//! and queue-wait histograms, each bucket with the latest observation's
//! trace id for an exemplar, and the HTTP requests by route. In memory,
//! from this start on, as a Prometheus client library keeps them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::status::RunStatus;
use crate::sync::lock;

/// Seconds: runs and queue waits.
pub const RUN_BUCKETS: &[f64] =
    &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0];
/// Seconds: HTTP requests.
pub const HTTP_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The observation a bucket last took, for its exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: String,
    pub value: f64,
    /// Seconds since the epoch.
    pub at: f64,
}

#[derive(Debug, Clone)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Per bucket (not cumulative), `+Inf` last.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub exemplars: Vec<Option<Exemplar>>,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, exemplars: vec![None; bounds.len() + 1] }
    }

    pub fn observe(&mut self, value: f64, exemplar: Option<(String, f64)>) {
        let value = value.max(0.0);
        let i = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
        if let Some((trace_id, at)) = exemplar {
            self.exemplars[i] = Some(Exemplar { trace_id, value, at });
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The run outcomes of `crewshipd_run_duration_seconds`.
pub const OUTCOMES: [RunStatus; 4] =
    [RunStatus::Completed, RunStatus::Failed, RunStatus::Cancelled, RunStatus::Timeout];

/// HTTP methods as labelled; anything else is `other`.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub fn method_label(m: &str) -> &'static str {
    METHODS.iter().find(|k| **k == m).copied().unwrap_or("other")
}

/// The route label of requests that matched no route, and of the
/// unauthorized answers of /metrics (which must look alike).
pub const UNMATCHED: &str = "unmatched";

/// One route's requests and their durations.
#[derive(Debug, Clone)]
pub struct Route {
    /// (method, status code) → requests.
    pub requests: BTreeMap<(&'static str, u16), u64>,
    pub durations: Histogram,
}

/// By route template: a request to a route seen before allocates nothing.
pub type Http = BTreeMap<String, Route>;

pub struct Latencies {
    runs: Mutex<Vec<Histogram>>,
    queue_wait: Mutex<Histogram>,
    http: Mutex<Http>,
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies {
            runs: Mutex::new(OUTCOMES.iter().map(|_| Histogram::new(RUN_BUCKETS)).collect()),
            queue_wait: Mutex::new(Histogram::new(RUN_BUCKETS)),
            http: Mutex::new(Http::default()),
        }
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

impl Latencies {
    /// A run of `trace_id` that ended `outcome` after `ms`, at `at_ms`.
    pub fn run_ended(&self, outcome: RunStatus, ms: i64, trace_id: &str, at_ms: i64) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            lock(&self.runs)[i].observe(seconds(ms), Some((trace_id.to_string(), seconds(at_ms))));
        }
    }

    /// An assignment that waited `ms` in its queue before run `trace_id`
    /// started at `at_ms`.
    pub fn queue_waited(&self, ms: i64, trace_id: &str, at_ms: i64) {
        lock(&self.queue_wait).observe(seconds(ms), Some((trace_id.to_string(), seconds(at_ms))));
    }

    /// A request answered with `code` after `secs`; `route` is a template
    /// of the router, or `UNMATCHED`, so the label set stays bounded.
    pub fn request(&self, method: &str, route: &str, code: u16, secs: f64) {
        let mut http = lock(&self.http);
        if !http.contains_key(route) {
            let fresh = Route { requests: BTreeMap::new(), durations: Histogram::new(HTTP_BUCKETS) };
            http.insert(route.to_string(), fresh);
        }
        if let Some(r) = http.get_mut(route) {
            *r.requests.entry((method_label(method), code)).or_default() += 1;
            r.durations.observe(secs, None);
        }
    }

    /// The run histograms by outcome, and the queue wait.
    pub fn runs(&self) -> (Vec<(RunStatus, Histogram)>, Histogram) {
        let runs = OUTCOMES.iter().copied().zip(lock(&self.runs).iter().cloned()).collect();
        (runs, lock(&self.queue_wait).clone())
    }

    pub fn http(&self) -> Http {
        lock(&self.http).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound_and_keep_the_latest_exemplar() {
        let mut h = Histogram::new(RUN_BUCKETS);
        h.observe(0.1, Some(("a".into(), 1.0)));
        h.observe(0.05, Some(("b".into(), 2.0)));
        h.observe(20000.0, Some(("c".into(), 3.0)));
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[RUN_BUCKETS.len()], 1);
        assert_eq!(h.count(), 3);
        assert_eq!(h.exemplars[0].as_ref().map(|e| e.trace_id.as_str()), Some("b"));
        assert!((h.sum - 20000.15).abs() < 1e-9);
        assert_eq!(method_label("BREW"), "other");
    }
}
