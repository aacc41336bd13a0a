//! Request extractors whose failures are API errors with the JSON shape
//! (axum's own rejections answer in plain text).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use utoipa::IntoParams;

use super::error::ApiError;
use super::settings::Limits;
use super::state::AppState;
use crate::domain::{DomainError, time};
use crate::store::page::{DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest};
pub use crewship_wire::answers::Listing;

/// A request body that states its own rules, within the API's limits: the
/// JSON extractor checks them before a handler sees the body (a broken
/// rule is a 422). Rules that need the database (an unknown crew) stay
/// with the handler.
pub trait Validate {
    fn validate(&self, _limits: &Limits) -> crate::domain::Result<()> {
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
        let within = state.settings.limits.body_timeout;
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
        let mut value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("invalid_type", "request body must be a JSON object"));
        }
        if settle(&mut value) {
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
        body.validate(&state.settings.limits)?;
        Ok(JsonBody(body))
    }
}

/// One walk over the body: `4298.0` becomes `4298` (it is the integer 4298
/// in JSON Schema, and serde's integer fields refuse it as written), and
/// the answer is whether any string or key holds NUL (then the body is
/// refused, and the walk stops).
fn settle(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15) {
                *n = serde_json::Number::from(f as i64);
            }
            false
        }
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter_mut().any(settle),
        serde_json::Value::Object(map) => map.iter_mut().any(|(k, v)| k.contains('\0') || settle(v)),
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

/// Query-string parameters as `T`, a struct of optional strings: an unknown
/// name is ignored, and a query string that does not decode is a 400. The
/// values' own rules are `T`'s (an empty value is a value, and breaks them).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(raw) =
            axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
        let given = raw.into_iter().map(|(k, v)| (k, serde_json::Value::String(v)));
        T::deserialize(serde_json::Value::Object(given.collect()))
            .map(Query)
            .map_err(|e| ApiError::bad_request("bad_query", e.to_string()))
    }
}

/// Which page of a list: `?limit=` and `?cursor=`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items, from 1 to 500 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^v1\\.[0-9]{1,18}$")]
    cursor: Option<String>,
}

impl PageParams {
    /// The page asked for: a limit within bounds, a cursor this server issued.
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
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
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(decode(c).ok_or_else(|| DomainError::invalid("cursor is not one this server issued"))?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// An RFC 3339 time parameter, as epoch ms.
pub fn time_param(key: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
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

impl<T> From<Page<T>> for Listing<T> {
    fn from(page: Page<T>) -> Listing<T> {
        Listing { items: page.items, next_cursor: page.next.map(encode) }
    }
}

// A cursor is the position after the page's last item, versioned so that
// its form can change; the description's pattern states it.
fn decode(cursor: &str) -> Option<i64> {
    let digits = cursor.strip_prefix("v1.")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn encode(id: i64) -> String {
    format!("v1.{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> PageParams {
        let map: serde_json::Map<String, serde_json::Value> =
            pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string()))).collect();
        PageParams::deserialize(serde_json::Value::Object(map)).unwrap()
    }

    #[test]
    fn the_described_page_bounds_are_the_enforced_ones() {
        let params = serde_json::to_value(PageParams::into_params(|| None)).unwrap();
        let limit = params.as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
        assert_eq!(limit["schema"]["maximum"].as_i64(), Some(MAX_LIMIT), "{limit}");
        assert_eq!(params[1]["schema"]["pattern"], "^v1\\.[0-9]{1,18}$");
        assert!(decode(&encode(i64::from(i32::MAX))).is_some() && decode("v1.").is_none() && decode("v1.1x").is_none());
    }

    #[test]
    fn cursor_round_trip_and_limits() {
        let p = params(&[("limit", "10"), ("cursor", &encode(42))]).request().unwrap();
        assert_eq!((p.limit, p.after), (10, Some(42)));
        assert!(params(&[("limit", "0")]).request().is_err());
        assert!(params(&[("limit", "501")]).request().is_err());
        assert!(params(&[("cursor", "garbage!")]).request().is_err());
        assert_eq!(params(&[]).request().unwrap().limit, DEFAULT_LIMIT);
    }
}
