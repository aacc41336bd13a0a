//! Keyset pagination: `?limit=&cursor=`, cursors opaque to clients.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::{DomainError, Result};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: i64,
    /// Row id to continue after (exclusive), in the listing's order.
    pub after: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl PageRequest {
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(DomainError::invalid(format!("limit must be a whole number from 1 to {MAX_LIMIT}")));
                }
            },
        };
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(decode(c).ok_or_else(|| DomainError::invalid("cursor is not one this server issued"))?),
        };
        Ok(PageRequest { limit, after })
    }
}

fn decode(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("v1:")?.parse().ok()
}

pub fn encode(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

/// Builds a page from `limit + 1` fetched rows: the extra row only tells
/// whether there is a next page.
pub fn build<T>(mut rows: Vec<(i64, T)>, limit: i64) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(|(id, _)| encode(*id)) } else { None };
    Page { items: rows.into_iter().map(|(_, t)| t).collect(), next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_limits() {
        let p = PageRequest::parse(Some("10"), Some(&encode(42))).unwrap();
        assert_eq!((p.limit, p.after), (10, Some(42)));
        assert!(PageRequest::parse(Some("0"), None).is_err());
        assert!(PageRequest::parse(Some("501"), None).is_err());
        assert!(PageRequest::parse(None, Some("garbage!")).is_err());
        let page = build(vec![(3, 'a'), (2, 'b'), (1, 'c')], 2);
        assert_eq!(page.items, vec!['a', 'b']);
        assert_eq!(page.next_cursor, Some(encode(2)));
        assert_eq!(build(vec![(1, 'a')], 2).next_cursor, None);
    }
}
