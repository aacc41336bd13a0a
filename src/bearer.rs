//! `Authorization: Bearer <token>` checks, in constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// True when the request carries exactly `expected` as a bearer token. The
/// scheme word is case-insensitive; the token is compared byte for byte.
/// No configured token (or an empty one) never matches.
pub fn matches(headers: &HeaderMap, expected: Option<&str>) -> bool {
    tokens(headers).any(|token| token_eq(token, expected))
}

/// The bearer tokens a request carries, in header order.
pub fn tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start_matches(' '))
}

/// A presented token against the configured one, in constant time for
/// tokens of equal length.
pub fn token_eq(given: &str, expected: Option<&str>) -> bool {
    match expected.filter(|t| !t.is_empty()) {
        Some(expected) => given.as_bytes().ct_eq(expected.as_bytes()).into(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn scheme_is_case_insensitive_token_is_exact() {
        assert!(matches(&h("Bearer s3cret"), Some("s3cret")));
        assert!(matches(&h("bEaReR s3cret"), Some("s3cret")));
        assert!(!matches(&h("Bearer S3CRET"), Some("s3cret")));
        assert!(!matches(&h("Bearer s3cret "), Some("s3cret")));
        assert!(!matches(&h("Basic s3cret"), Some("s3cret")));
        assert!(!matches(&h("Bearer"), Some("s3cret")));
        assert!(!matches(&HeaderMap::new(), Some("s3cret")));
        assert!(!matches(&h("Bearer "), Some("")));
        assert!(!matches(&h("Bearer x"), None));
    }
}
