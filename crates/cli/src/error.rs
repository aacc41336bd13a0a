//! The CLI's one error type, and the exit code each kind maps to.

use std::process::ExitCode;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon answered with an error status.
    #[error("{message} ({status})")]
    Api { status: u16, message: String },
    /// Nothing answered at the URL.
    #[error("cannot reach crewshipd at {url}: {reason} (is it running? set --url or CREWSHIP_URL)")]
    Unreachable { url: String, reason: String },
    /// Anything else: a reply that is not what the API promises, a
    /// connection dropped mid-stream, local I/O.
    #[error("{0}")]
    Failed(String),
    /// Whoever read stdout went away (`| head`): they have what they wanted.
    #[error("stdout was closed")]
    OutputClosed,
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    /// 1 for API and other failures, 3 when the daemon is unreachable (2,
    /// for usage errors, is clap's own); a closed stdout is no failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::OutputClosed => ExitCode::SUCCESS,
            CliError::Api { .. } | CliError::Failed(_) => ExitCode::from(1),
            CliError::Unreachable { .. } => ExitCode::from(3),
        }
    }

    /// An error reply: the API's `{"error":{"message"}}`, else whatever
    /// text came back, else the status's own name.
    pub fn from_reply(status: u16, body: &str) -> CliError {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .or_else(|| Some(body.trim().to_string()).filter(|t| !t.is_empty()))
            .unwrap_or_else(|| "request failed".to_string());
        CliError::Api { status, message }
    }

    /// The innermost cause of a transport error, which is the part that
    /// says what went wrong ("Connection refused").
    pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
        let mut cause = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_messages_prefer_the_api_shape() {
        let api = CliError::from_reply(404, r#"{"error":{"code":"not_found","message":"crew \"x\" not found"}}"#);
        assert_eq!(api.to_string(), r#"crew "x" not found (404)"#);
        assert_eq!(CliError::from_reply(502, "bad gateway\n").to_string(), "bad gateway (502)");
        assert_eq!(CliError::from_reply(500, "").to_string(), "request failed (500)");
    }
}
