//! The API's one error type and its single mapping to HTTP.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::domain::DomainError;

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

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "remote clients need Authorization: Bearer <CREWSHIP_API_TOKEN>",
        )
    }

    /// What any path that does not exist answers.
    pub fn no_route() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        let (status, code) = match &e {
            DomainError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            DomainError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            DomainError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            DomainError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            DomainError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
