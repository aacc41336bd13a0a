//! The domain's one error type; `api::error` maps it to HTTP in one place.

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
    /// A bug or an I/O failure the client cannot fix.
    #[error("internal error: {0}")]
    Internal(String),
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

    pub fn internal(e: impl std::fmt::Display) -> Self {
        DomainError::Internal(e.to_string())
    }

    /// A row the same transaction just wrote or read is gone: a bug.
    pub fn vanished(what: &str) -> Self {
        DomainError::Internal(format!("{what} vanished"))
    }
}
