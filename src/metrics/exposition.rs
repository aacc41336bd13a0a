//! The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0.
//!
//! Hand-written rather than prometheus-client's encoder, for two measured
//! reasons: its float formatting (dtoa) prints exponents (`1e-7`, `1e16`)
//! and spells infinity `inf`, both against METRICS.md §1; and every family
//! here is built from a cached snapshot, so the registry would be bypassed
//! anyway. What it must get right is small and pinned by tests below and by
//! promtool and the Python parsers in the integration tests.

use std::fmt::Write;

use crate::latency::Histogram;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone)]
pub struct Sample {
    /// Label pairs besides `hostname`, in any order (they are sorted).
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub struct Family {
    /// Without the `_total` suffix for counters: the encoder adds it.
    pub name: &'static str,
    /// Static, single line, no backslash.
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
    /// A histogram family's series, by their labels.
    pub histograms: Vec<(Vec<(&'static str, String)>, Histogram)>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Family {
        Family { name, help, kind, samples: Vec::new(), histograms: Vec::new() }
    }

    pub fn histogram(mut self, labels: Vec<(&'static str, String)>, h: Histogram) -> Family {
        self.histograms.push((labels, h));
        self
    }

    pub fn gauge(name: &'static str, help: &'static str, value: Value) -> Family {
        Family::new(name, help, Kind::Gauge).with(Vec::new(), value)
    }

    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: Value) -> Family {
        self.samples.push(Sample { labels, value });
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks OpenMetrics only when the Accept header prefers it (by q) over
    /// the text format; anything else gets text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut om, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om > text { Format::OpenMetrics } else { Format::Text }
    }
}

/// Label values: backslash, double quote and newline escaped (both formats).
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Plain decimal for finite values (Rust's shortest round-trip `Display`
/// never uses an exponent); Prometheus' spellings for the rest.
pub fn format_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
    }
}

/// Writes `name{labels, hostname[, le]} ` (sorted labels, then a space).
fn series(out: &mut String, name: &str, labels: &[(&'static str, String)], le: Option<&str>, hostname: &str) {
    let mut all: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.push(("hostname", hostname));
    all.extend(le.map(|le| ("le", le)));
    all.sort_by(|a, b| a.0.cmp(b.0));
    out.push_str(name);
    out.push('{');
    for (i, (k, v)) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    out.push_str("} ");
}

/// A bucket bound as Go's client and OpenMetrics write it (`1.0`, `0.25`,
/// `+Inf`), in both formats: a series must not change its `le` with the
/// format a scraper negotiates.
fn bound(b: f64) -> String {
    let mut s = String::new();
    format_value(&mut s, Value::Float(b));
    if b.is_finite() && !s.contains('.') {
        s.push_str(".0");
    }
    s
}

/// A histogram's cumulative buckets, sum and count; in OpenMetrics each
/// bucket with an observation carries the latest as an exemplar.
fn histogram(
    out: &mut String,
    name: &str,
    labels: &[(&'static str, String)],
    h: &Histogram,
    hostname: &str,
    format: Format,
) {
    let mut cumulative = 0u64;
    let bucket = format!("{name}_bucket");
    for (i, n) in h.counts.iter().enumerate() {
        cumulative += n;
        let le = h.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| bound(*b));
        series(out, &bucket, labels, Some(&le), hostname);
        let _ = write!(out, "{cumulative}");
        if format == Format::OpenMetrics
            && let Some(e) = &h.exemplars[i]
        {
            out.push_str(" # {trace_id=\"");
            escape_label(out, &e.trace_id);
            out.push_str("\"} ");
            format_value(out, Value::Float(e.value));
            out.push(' ');
            format_value(out, Value::Float(e.at));
        }
        out.push('\n');
    }
    series(out, &format!("{name}_sum"), labels, None, hostname);
    format_value(out, Value::Float(h.sum));
    out.push('\n');
    series(out, &format!("{name}_count"), labels, None, hostname);
    let _ = writeln!(out, "{cumulative}");
}

/// Encodes families in order; every series gets `hostname`.
pub fn encode(families: &[Family], hostname: &str, format: Format) -> String {
    let mut out = String::with_capacity(8192);
    for f in families {
        let sample_name = match f.kind {
            Kind::Counter => format!("{}_total", f.name),
            Kind::Gauge | Kind::Histogram => f.name.to_string(),
        };
        // OpenMetrics names the counter family without `_total`; 0.0.4
        // names it like its samples.
        let family_name = match format {
            Format::OpenMetrics => f.name,
            Format::Text => &sample_name,
        };
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {family_name} {}", f.help);
        let _ = writeln!(out, "# TYPE {family_name} {kind}");
        for s in &f.samples {
            series(&mut out, &sample_name, &s.labels, None, hostname);
            format_value(&mut out, s.value);
            out.push('\n');
        }
        for (labels, h) in &f.histograms {
            histogram(&mut out, f.name, labels, h, hostname, format);
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: Value) -> String {
        let mut s = String::new();
        format_value(&mut s, v);
        s
    }

    #[test]
    fn plain_decimal_values() {
        assert_eq!(value(Value::Int(20260728110200)), "20260728110200");
        assert_eq!(value(Value::Float(20260728110200.0)), "20260728110200");
        assert_eq!(value(Value::Float(2e6)), "2000000");
        assert_eq!(value(Value::Float(2_000_000.5)), "2000000.5");
        assert_eq!(value(Value::Float(0.75)), "0.75");
        assert_eq!(value(Value::Float(-3.0)), "-3");
        assert_eq!(value(Value::Int(-3)), "-3");
        assert_eq!(value(Value::Float(1e-7)), "0.0000001");
        assert_eq!(value(Value::Float(1e16)), "10000000000000000");
        assert_eq!(value(Value::Float(f64::INFINITY)), "+Inf");
        assert_eq!(value(Value::Float(f64::NEG_INFINITY)), "-Inf");
        assert_eq!(value(Value::Float(f64::NAN)), "NaN");
    }

    #[test]
    fn hostile_label_values_are_escaped() {
        let f = Family::new("x", "X.", Kind::Gauge)
            .with(vec![("provider", "a\"b\\c\nd\te\u{1}ü😀".to_string())], Value::Int(1));
        let text = encode(&[f], "h\"1", Format::Text);
        assert!(text.contains(r#"x{hostname="h\"1",provider="a\"b\\c\nd	e"#), "{text}");
        assert!(text.contains("ü😀\"} 1\n"));
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn counter_naming_per_format() {
        let f = Family::new("crewshipd_gc_runs", "Runs.", Kind::Counter).with(vec![], Value::Int(3));
        let text = encode(std::slice::from_ref(&f), "h", Format::Text);
        assert_eq!(
            text,
            "# HELP crewshipd_gc_runs_total Runs.\n# TYPE crewshipd_gc_runs_total counter\ncrewshipd_gc_runs_total{hostname=\"h\"} 3\n"
        );
        let om = encode(&[f], "h", Format::OpenMetrics);
        assert_eq!(
            om,
            "# HELP crewshipd_gc_runs Runs.\n# TYPE crewshipd_gc_runs counter\ncrewshipd_gc_runs_total{hostname=\"h\"} 3\n# EOF\n"
        );
    }

    #[test]
    fn labels_sorted_deterministically() {
        let f = Family::new("b", "B.", Kind::Gauge)
            .with(vec![("version", "1".into()), ("revision", "r".into())], Value::Int(1));
        assert!(encode(&[f], "h", Format::Text).contains(r#"b{hostname="h",revision="r",version="1"} 1"#));
    }

    #[test]
    fn histograms_with_exemplars_in_openmetrics_only() {
        let mut h = Histogram::new(&[0.5, 1.0]);
        h.observe(0.25, Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), 1700000000.5)));
        h.observe(3.0, None);
        let f = Family::new("x_seconds", "X.", Kind::Histogram).histogram(vec![("outcome", "completed".into())], h);
        let text = encode(std::slice::from_ref(&f), "h", Format::Text);
        assert_eq!(
            text,
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{hostname=\"h\",le=\"0.5\",outcome=\"completed\"} 1\n\
             x_seconds_bucket{hostname=\"h\",le=\"1.0\",outcome=\"completed\"} 1\n\
             x_seconds_bucket{hostname=\"h\",le=\"+Inf\",outcome=\"completed\"} 2\n\
             x_seconds_sum{hostname=\"h\",outcome=\"completed\"} 3.25\n\
             x_seconds_count{hostname=\"h\",outcome=\"completed\"} 2\n"
        );
        let om = encode(&[f], "h", Format::OpenMetrics);
        assert!(om.contains(
            "x_seconds_bucket{hostname=\"h\",le=\"0.5\",outcome=\"completed\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.25 1700000000.5\n"
        ), "{om}");
        assert!(om.contains("le=\"1.0\",outcome=\"completed\"} 1\n"), "{om}");
    }

    #[test]
    fn negotiation() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0.5, text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0")), Format::Text);
    }
}
