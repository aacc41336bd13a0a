//! Request extractors whose failures are API errors with the JSON shape
//! (axum's own rejections answer in plain text).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::error::ApiError;
use super::state::AppState;
use crate::config::Config;
use crate::domain::{DomainError, time};
use crate::store::page::{DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest};

/// A request body that states its own rules: the JSON extractor checks
/// them before a handler sees the body (a broken rule is a 422). Rules
/// that need the database (an unknown crew) stay with the handler.
pub trait Validate {
    fn validate(&self, _config: &Config) -> crate::domain::Result<()> {
        Ok(())
    }
}

/// A JSON body that passed its `Validate` rules: malformed JSON or a wrong
/// type is 400, a missing field or a broken rule 422, a body over the limit
/// 413, one that does not arrive within the body timeout 408. An empty body
/// reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + Validate> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let within = state.config.listen.body_timeout;
        let read = tokio::time::timeout(within, Bytes::from_request(req, state)).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within {within:?} (CREWSHIP_HTTP_BODY_TIMEOUT)"),
            )
        })?;
        let bytes = read.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is over the size limit")
            } else {
                ApiError::bad_request("bad_body", e.body_text())
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("invalid_type", "request body must be a JSON object"));
        }
        if holds_nul(&value) {
            // PostgreSQL text cannot hold it; refused on either backend alike.
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "strings in the request body may not contain the NUL character (U+0000)",
            ));
        }
        let body = T::deserialize(value).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg)
            } else {
                ApiError::bad_request("invalid_type", msg)
            }
        })?;
        body.validate(&state.config)?;
        Ok(JsonBody(body))
    }
}

fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Path parameters, with a rejection in the JSON shape (a segment that is
/// not valid UTF-8 once percent-decoded is a 400).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
    }
}

/// Query-string parameters.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
    }
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `?limit=` (1 to 500, default 50) and `?cursor=` (one this server
    /// issued).
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(
                        DomainError::invalid(format!("limit must be a whole number from 1 to {MAX_LIMIT}")).into()
                    );
                }
            },
        };
        let after = match self.get("cursor") {
            None => None,
            Some(c) => Some(decode(c).ok_or_else(|| DomainError::invalid("cursor is not one this server issued"))?),
        };
        Ok(PageRequest { limit, after })
    }

    /// An RFC 3339 time parameter, as epoch ms.
    pub fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                time::parse_rfc3339(v).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid",
                        format!("{key} must be an RFC 3339 UTC time like 2026-01-31T12:00:00Z"),
                    )
                })
            })
            .transpose()
    }
}

/// A page as clients see it: its items, and an opaque cursor to the next.
#[derive(Debug, Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for Listing<T> {
    fn from(page: Page<T>) -> Listing<T> {
        Listing { items: page.items, next_cursor: page.next.map(encode) }
    }
}

fn decode(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("v1:")?.parse().ok()
}

fn encode(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

/// For PATCH fields where `null` (clear) differs from absent (keep): use
/// with `#[serde(default)]` on an `Option<Option<T>>`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn cursor_round_trip_and_limits() {
        let p = params(&[("limit", "10"), ("cursor", &encode(42))]).page().unwrap();
        assert_eq!((p.limit, p.after), (10, Some(42)));
        assert!(params(&[("limit", "0")]).page().is_err());
        assert!(params(&[("limit", "501")]).page().is_err());
        assert!(params(&[("cursor", "garbage!")]).page().is_err());
        assert_eq!(params(&[]).page().unwrap().limit, DEFAULT_LIMIT);
    }
}
