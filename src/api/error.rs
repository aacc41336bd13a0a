//! The API's one error type and its single mapping to HTTP.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::DomainError;
pub use crewship_wire::answers::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Too much is in flight already: the client should come back.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// What any path that does not exist answers.
    pub fn no_route() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
}

/// A query value that is none of its names, as the rule it breaks.
impl From<crate::domain::named::NotOneOf> for ApiError {
    fn from(e: crate::domain::named::NotOneOf) -> ApiError {
        DomainError::from(e).into()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        let (status, code) = match &e {
            DomainError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            DomainError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            DomainError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            DomainError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            DomainError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            // The whole chain: what failed, and what it failed on.
            let chain = std::iter::successors(std::error::Error::source(&e), |s| s.source())
                .map(|s| s.to_string())
                .collect::<Vec<_>>();
            // An internal failure's text (a statement, a path, a driver's
            // message) is for the operator's log, not for the client: the
            // answer names the log line instead.
            if matches!(e, DomainError::Internal { .. }) {
                let reference = crate::domain::ids::new_secret()[..12].to_string();
                tracing::error!(error = %e, caused_by = ?chain, reference, "request failed");
                return ApiError::new(status, code, format!("internal error; the daemon's log has it as {reference}"));
            }
            tracing::error!(error = %e, caused_by = ?chain, "request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

/// Seconds a client told 503 should wait before it retries.
const RETRY_AFTER_SECONDS: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.into(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// The code of an error answer that did not come from `ApiError` (the
/// framework's own rejections).
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// The last line of defence for the JSON error shape: an error answer in
/// any other form (axum's rejection of a path with invalid UTF-8, say)
/// keeps its status and its text, as the message.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let mut fixed = ApiError::new(status, code_for(status), message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            fixed.headers_mut().insert(name, v.clone());
        }
    }
    fixed
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_name_a_log_line_not_their_text() {
        let e = ApiError::from(DomainError::internal("SELECT secret_column FROM t failed: disk I/O at /var/lib/x"));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.message.starts_with("internal error; the daemon's log has it as "), "{}", e.message);
        assert!(!e.message.contains("secret_column") && !e.message.contains("/var/lib"), "{}", e.message);
        let busy = ApiError::from(DomainError::Unavailable("the database is busy".into()));
        assert_eq!(busy.message, "unavailable: the database is busy", "503s say what to wait for");
    }
}
