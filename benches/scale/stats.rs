//! Medians and friends: the machines are shared and noisy, so every figure
//! is a median of several runs, and comparisons are ratios.

use std::time::Duration;

use serde::Serialize;

/// Summary of a set of duration samples.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timing {
    pub n: usize,
    pub median_us: f64,
    pub p10_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub min_us: f64,
}

impl Timing {
    pub fn of(samples: &[Duration]) -> Timing {
        let us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        Timing {
            n: us.len(),
            median_us: percentile(&us, 50.0),
            p10_us: percentile(&us, 10.0),
            p90_us: percentile(&us, 90.0),
            p99_us: percentile(&us, 99.0),
            min_us: us.iter().copied().fold(f64::INFINITY, f64::min),
        }
    }
}

/// Nearest-rank percentile of unsorted values (0 for none).
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

/// A duration in the unit that reads best.
pub fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

/// Thousands separators for counts.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}
