//! Times are stored as epoch milliseconds and shown as RFC 3339 UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn rfc3339_opt(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

/// Parses an RFC 3339 UTC time (`…Z`) into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = 1_795_000_000_123;
        let s = rfc3339(ms);
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(parse_rfc3339(&s), Some(ms));
        assert_eq!(parse_rfc3339("2026-11-25T00:00:00Z"), Some(1_795_564_800_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
