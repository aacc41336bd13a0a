//! Public ids are opaque strings: a kind prefix and the row number
//! (`crw_12`). Runs are named by their 128-bit trace id in hex.

use rand::RngCore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Crew,
    Agent,
    Assignment,
    Pipeline,
    PipelineRun,
    Journal,
    LlmCall,
}

impl Kind {
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Crew => "crw_",
            Kind::Agent => "agt_",
            Kind::Assignment => "asg_",
            Kind::Pipeline => "pip_",
            Kind::PipelineRun => "plr_",
            Kind::Journal => "jrn_",
            Kind::LlmCall => "llm_",
        }
    }
}

pub fn format(kind: Kind, n: i64) -> String {
    format!("{}{n}", kind.prefix())
}

/// The row number inside a public id of this kind, if it is one.
pub fn parse(kind: Kind, s: &str) -> Option<i64> {
    let digits = s.strip_prefix(kind.prefix())?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok().filter(|n| *n > 0)
}

/// 256 random bits in hex: a token nobody can guess.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A W3C-compatible trace id: 32 lower-case hex digits, never all zero.
pub fn new_trace_id() -> String {
    let mut bytes = [0u8; 16];
    loop {
        rand::rng().fill_bytes(&mut bytes);
        if bytes.iter().any(|b| *b != 0) {
            break;
        }
    }
    hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(format(Kind::Crew, 12), "crw_12");
        assert_eq!(parse(Kind::Crew, "crw_12"), Some(12));
        assert_eq!(parse(Kind::Crew, "agt_12"), None);
        assert_eq!(parse(Kind::Crew, "crw_"), None);
        assert_eq!(parse(Kind::Crew, "crw_012"), None);
        assert_eq!(parse(Kind::Crew, "crw_1x"), None);
        let t = new_trace_id();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
