//! The domain's one error type; `api::error` maps it to HTTP in one place.

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum DomainError {
    /// An id or slug that names nothing.
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// Duplicate slugs, illegal transitions.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed input that breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// A dependency (the database, the container engine) is busy or
    /// unreachable: worth a retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an I/O failure the client cannot fix, with the error it came
    /// from when there was one (logs show the whole chain).
    #[error("internal error: {message}")]
    Internal {
        message: String,
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;

impl DomainError {
    pub fn not_found(what: &'static str, key: impl Into<String>) -> Self {
        DomainError::NotFound { what, key: key.into() }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        DomainError::Invalid(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        DomainError::Conflict(msg.into())
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        DomainError::Internal { message: message.to_string(), source: None }
    }

    /// An internal error caused by `source`, which it keeps.
    pub fn caused_by(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        DomainError::Internal { message: source.to_string(), source: Some(Arc::new(source)) }
    }

    /// A row the same transaction just wrote or read is gone: a bug.
    pub fn vanished(what: &str) -> Self {
        DomainError::internal(format!("{what} vanished"))
    }
}

impl From<crewship_wire::named::NotOneOf> for DomainError {
    fn from(e: crewship_wire::named::NotOneOf) -> Self {
        DomainError::Invalid(e.0)
    }
}

impl From<crewship_wire::status::IllegalMove> for DomainError {
    fn from(e: crewship_wire::status::IllegalMove) -> Self {
        DomainError::Conflict(e.0)
    }
}
