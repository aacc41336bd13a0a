//! Request extractors whose failures are API errors with the JSON shape
//! (axum's own rejections answer in plain text).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::domain::time;
use crate::store::page::PageRequest;

/// A JSON body: malformed JSON or a wrong type is 400, a missing field 422,
/// a body over the limit 413, one that does not arrive within the body
/// timeout 408. An empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
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
        T::deserialize(value).map(JsonBody).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg)
            } else {
                ApiError::bad_request("invalid_type", msg)
            }
        })
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

    pub fn page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::parse(self.get("limit"), self.get("cursor"))?)
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

/// For PATCH fields where `null` (clear) differs from absent (keep): use
/// with `#[serde(default)]` on an `Option<Option<T>>`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
