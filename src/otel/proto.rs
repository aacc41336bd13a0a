//! Spans as OTLP protobuf: an `ExportTraceServiceRequest`
//! (opentelemetry-proto, `collector/trace/v1`). Written out by hand, the
//! dozen fields used here: the request is the one message this daemon
//! sends, and the test receiver decodes it with the reference Python
//! bindings (`opentelemetry-proto`).

use super::context::{SpanId, TraceId};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

pub type Attribute = (&'static str, Value);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Unset,
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: Vec<Attribute>,
}

/// A finished span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<Attribute>,
    pub links: Vec<Link>,
    pub status: Status,
}

/// What every batch says about its sender.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    pub attributes: Vec<(String, String)>,
}

struct Buf(Vec<u8>);

impl Buf {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn uint(&mut self, field: u32, v: u64) {
        self.tag(field, 0);
        self.varint(v);
    }

    /// A nested message, written by `f`.
    fn message(&mut self, field: u32, f: impl FnOnce(&mut Buf)) {
        let mut inner = Buf(Vec::new());
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

fn key_value(b: &mut Buf, field: u32, key: &str, value: &Value) {
    b.message(field, |kv| {
        kv.string(1, key);
        kv.message(2, |any| match value {
            Value::Str(s) => any.string(1, s),
            Value::Bool(v) => any.uint(2, u64::from(*v)),
            Value::Int(i) => any.uint(3, *i as u64),
            Value::Double(d) => any.fixed64(4, d.to_bits()),
        });
    });
}

fn span(b: &mut Buf, s: &Span) {
    b.bytes(1, &s.trace_id);
    b.bytes(2, &s.span_id);
    if let Some(parent) = &s.parent {
        b.bytes(4, parent);
    }
    b.string(5, &s.name);
    b.uint(6, s.kind as u64);
    b.fixed64(7, s.start_ns);
    b.fixed64(8, s.end_ns.max(s.start_ns));
    for (k, v) in &s.attributes {
        key_value(b, 9, k, v);
    }
    for l in &s.links {
        b.message(13, |lb| {
            lb.bytes(1, &l.trace_id);
            lb.bytes(2, &l.span_id);
            for (k, v) in &l.attributes {
                key_value(lb, 4, k, v);
            }
        });
    }
    let (code, message) = match &s.status {
        Status::Unset => (0, ""),
        Status::Error(m) => (2, m.as_str()),
    };
    if code != 0 {
        b.message(15, |st| {
            if !message.is_empty() {
                st.string(2, message);
            }
            st.uint(3, code);
        });
    }
}

/// The request body for `spans`, all from `resource`.
pub fn encode(resource: &Resource, scope_version: &str, spans: &[Span]) -> Vec<u8> {
    let mut b = Buf(Vec::with_capacity(256 * spans.len() + 256));
    b.message(1, |rs| {
        rs.message(1, |r| {
            for (k, v) in &resource.attributes {
                key_value(r, 1, k, &Value::Str(v.clone()));
            }
        });
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.string(1, "crewshipd");
                scope.string(2, scope_version);
            });
            for s in spans {
                ss.message(2, |sb| span(sb, s));
            }
        });
    });
    b.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_a_known_key_value() {
        let mut b = Buf(Vec::new());
        b.varint(300);
        assert_eq!(b.0, [0xac, 0x02]);
        let mut b = Buf(Vec::new());
        key_value(&mut b, 9, "k", &Value::Int(-1));
        // field 9 (len) → KeyValue{1:"k", 2:AnyValue{3: -1 as a ten-byte varint}}
        let mut want = vec![0x4a, 16, 0x0a, 1, b'k', 0x12, 11, 0x18];
        want.extend([0xff; 9]);
        want.push(0x01);
        assert_eq!(b.0, want);
    }
}
