//! Trace and span ids, the W3C `traceparent` header, and the ids derived
//! from a run: a run's trace id is its own id, and its spans' ids follow
//! from it, so every node (and the agent) names the same spans without
//! asking the database.

use sha2::{Digest, Sha256};

use crate::domain::ids::hex;

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// A span context as W3C trace context carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A trace id from 32 lower-case hex digits (a run id), never all zero.
pub fn trace_id(s: &str) -> Option<TraceId> {
    hex_to::<16>(s).filter(|t| t.iter().any(|b| *b != 0))
}

fn nonzero_span(mut id: SpanId) -> SpanId {
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

pub fn new_span_id() -> SpanId {
    nonzero_span(rand::random())
}

pub fn new_trace_id() -> TraceId {
    loop {
        let id: TraceId = rand::random();
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// The span id that `part` of trace `trace` always has.
pub fn derived_span(trace: &TraceId, part: &str) -> SpanId {
    let digest = Sha256::new().chain_update(trace).chain_update(part.as_bytes()).finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    nonzero_span(id)
}

impl SpanContext {
    /// Parses a `traceparent` header (version 00, or a later version read
    /// as 00 says). Anything malformed is no context at all.
    pub fn parse(header: &str) -> Option<SpanContext> {
        let header = header.trim();
        let mut parts = header.split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version = hex_to::<1>(version)?[0];
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let trace_id = trace_id(trace)?;
        let span_id = hex_to::<8>(span).filter(|s| *s != [0; 8])?;
        let flags = hex_to::<1>(flags)?[0];
        Some(SpanContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(self.sampled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_refusals() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = SpanContext::parse(h).unwrap();
        assert!(c.sampled);
        assert_eq!(c.header(), h);
        assert!(!SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().sampled);
        // A later version may carry more fields.
        assert!(SpanContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(SpanContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn derived_spans_are_stable_and_distinct() {
        let t = trace_id("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(derived_span(&t, "run"), derived_span(&t, "run"));
        assert_ne!(derived_span(&t, "run"), derived_span(&t, "root"));
        assert_eq!(trace_id("00000000000000000000000000000000"), None);
    }
}
