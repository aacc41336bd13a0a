//! The /api/v1 and /ws gate (API.md "Auth"). Cross-site requests are
//! refused whatever the token: a foreign `Origin` gets 403, a body that is
//! not JSON 415 (a web page can send text/plain anywhere without asking).
//! Then every client shows the API token, or a run token within its
//! scope; loopback true clients get in without one only where
//! `CREWSHIP_API_ALLOW_LOOPBACK` allows it, since every local user and
//! every local browser tab can reach loopback. The middleware that runs
//! these checks is `api::auth`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};

use super::error::{ApiError, ApiResult};
use crate::bearer;
use crate::clientip::{self, TrustedProxies};
use crate::domain::ids::{self, Kind};
use crate::domain::run_token;
use crate::domain::status::RunStatus;
use crate::store::journal::Named;
use crate::store::{Store, runs};

/// Who is calling, once the gate let them in.
#[derive(Clone)]
pub enum Caller {
    /// Holds the API token (or is a loopback client where that is allowed).
    Operator,
    /// An agent's process, with its run token.
    Run(Arc<RunCaller>),
}

/// The run a run token belongs to: what its calls are recorded against.
#[derive(Debug)]
pub struct RunCaller {
    pub run_id: String,
    pub crew: Option<Named>,
    pub agent: Option<Named>,
    /// The public id of the run's assignment.
    pub assignment: Option<String>,
}

impl RunCaller {
    /// The calls a run token may make (API.md): record LLM calls and
    /// journal entries, read its own run and assignment. `path` is below
    /// `/api/v1`.
    pub fn may(&self, method: &Method, path: &str) -> bool {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::POST, ["llm-calls"] | ["journal"]) => true,
            (&Method::GET, ["runs", id] | ["runs", id, "output"]) => *id == self.run_id,
            (&Method::GET, ["assignments", id]) => self.assignment.as_deref() == Some(*id),
            _ => false,
        }
    }
}

/// What the gate is built from (see the settings of the same names).
pub struct Settings {
    pub token: String,
    /// Where the token is kept: a 401 says so.
    pub token_source: String,
    pub allow_loopback: bool,
    /// Origins allowed besides the daemon's own.
    pub allowed_origins: Vec<String>,
    pub proxies: TrustedProxies,
}

pub struct Gate {
    token: String,
    token_source: String,
    allow_loopback: bool,
    /// The daemon's own origins and the configured extra ones.
    origins: Vec<String>,
    proxies: TrustedProxies,
}

/// Origins a page served by this daemon itself would send: loopback names,
/// the listen address and the host name, at the bound port. They are never
/// taken from the request's `Host` header, which a DNS-rebinding page
/// controls.
fn own_origins(hostname: &str, local: SocketAddr) -> Vec<String> {
    let port = local.port();
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "[::1]".to_string()];
    hosts.push(hostname.to_ascii_lowercase());
    if !local.ip().is_unspecified() {
        hosts.push(match local.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        });
    }
    let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}:{port}")).collect();
    if port == 80 {
        origins.extend(hosts.iter().map(|h| format!("http://{h}")));
    }
    origins
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json")
}

/// A body that is not JSON gets 415.
pub fn check_content_type(headers: &HeaderMap) -> ApiResult<()> {
    if has_body(headers) && !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "request bodies must be Content-Type: application/json",
        ));
    }
    Ok(())
}

impl Gate {
    /// `hostname` and `local` (the bound address) make the daemon's own
    /// origins.
    pub fn new(settings: Settings, hostname: &str, local: SocketAddr) -> Gate {
        let mut origins = own_origins(hostname, local);
        origins.extend(settings.allowed_origins);
        Gate {
            token: settings.token,
            token_source: settings.token_source,
            allow_loopback: settings.allow_loopback,
            origins,
            proxies: settings.proxies,
        }
    }

    /// The API token (a first WebSocket frame presents it too).
    pub fn token_matches(&self, given: &str) -> bool {
        bearer::token_eq(given, Some(&self.token))
    }

    /// Whether the true client (behind the trusted proxies) is on loopback.
    pub fn client_on_loopback(&self, peer: SocketAddr, headers: &HeaderMap) -> bool {
        clientip::is_loopback(self.proxies.client_ip(peer, headers))
    }

    /// No `Origin`, or one of ours: a browser page elsewhere gets 403.
    pub fn check_origin(&self, headers: &HeaderMap) -> ApiResult<()> {
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("requests from origin {origin:?} are refused; list it in CREWSHIP_ALLOWED_ORIGINS to allow it"),
        ))
    }

    pub fn unauthorized(&self) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("this API needs Authorization: Bearer <token>; the daemon's token is {}", self.token_source),
        )
    }

    /// The caller a request's credentials name: Ok(None) when it has none
    /// (a browser's WebSocket may still authenticate with its first frame).
    pub async fn caller(&self, store: &Store, peer: SocketAddr, headers: &HeaderMap) -> ApiResult<Option<Caller>> {
        let Some(token) = bearer::tokens(headers).next() else {
            return Ok((self.allow_loopback && self.client_on_loopback(peer, headers)).then_some(Caller::Operator));
        };
        if self.token_matches(token) {
            return Ok(Some(Caller::Operator));
        }
        let Some((run_id, secret)) = run_token::parse(token) else { return Err(self.unauthorized()) };
        let (run_id, secret) = (run_id.to_string(), secret.to_string());
        let found = store.read(move |c| runs::with_token_hash(c, &run_id)).await?;
        match found {
            Some((run, Some(hash))) if run_token::verify(&secret, &hash) => {
                if run.status != RunStatus::Running {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        format!("run {} has ended ({}); its token is no longer valid", run.id, run.status),
                    ));
                }
                Ok(Some(Caller::Run(Arc::new(RunCaller {
                    assignment: run.assignment_id.map(|a| ids::format(Kind::Assignment, a)),
                    run_id: run.id,
                    crew: run.crew,
                    agent: run.agent,
                }))))
            }
            _ => Err(self.unauthorized()),
        }
    }
}

pub fn outside_scope() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "a run token may only record LLM calls and journal entries and read its own run and assignment",
    )
}

/// For the WebSocket upgrade: only operators stream events.
pub fn refuse_run_callers(caller: &Option<Caller>) -> ApiResult<()> {
    match caller {
        Some(Caller::Run(_)) => Err(outside_scope()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_token_scope() {
        let run = RunCaller { run_id: "ab".repeat(16), crew: None, agent: None, assignment: Some("asg_7".into()) };
        let own = format!("/runs/{}", run.run_id);
        assert!(run.may(&Method::POST, "/llm-calls"));
        assert!(run.may(&Method::POST, "/journal"));
        assert!(run.may(&Method::GET, &own));
        assert!(run.may(&Method::GET, &format!("{own}/output")));
        assert!(run.may(&Method::GET, "/assignments/asg_7"));
        assert!(!run.may(&Method::GET, "/assignments/asg_8"));
        assert!(!run.may(&Method::GET, "/journal"));
        assert!(!run.may(&Method::PATCH, &own));
        assert!(!run.may(&Method::GET, &format!("/runs/{}", "cd".repeat(16))));
        assert!(!run.may(&Method::POST, "/crews"));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, "0".parse().unwrap());
        assert!(!has_body(&h));
        h.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        assert!(has_body(&h) && !is_json(&h));
        h.insert(header::CONTENT_TYPE, "Application/JSON; charset=utf-8".parse().unwrap());
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
    }
}
