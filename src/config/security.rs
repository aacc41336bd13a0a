//! Who may use the API: its token, loopback, browser origins, the
//! addresses trusted to forward for clients, and the URL agents call.

use super::source::{ConfigError, Setting, Shown, Source, bad, http_url, read_token_file, trimmed_token};
use crate::clientip::TrustedProxies;

/// Shared with the CLI, which sends the token.
pub use crewship_wire::{API_TOKEN, API_TOKEN_FILE};
pub const API_ALLOW_LOOPBACK: Setting = Setting {
    var: "CREWSHIP_API_ALLOW_LOOPBACK",
    flag: None,
    default: Shown::Value("false"),
    help: "`true` lets loopback clients use the API without a token (cross-site requests stay refused)",
};
pub const ALLOWED_ORIGINS: Setting = Setting {
    var: "CREWSHIP_ALLOWED_ORIGINS",
    flag: None,
    default: Shown::Unset,
    help: "browser origins allowed besides the daemon's own, comma-separated (`https://console.example.com`)",
};
pub const AGENT_API_URL: Setting = Setting {
    var: "CREWSHIP_AGENT_API_URL",
    flag: None,
    default: Shown::Derived("from the listen address"),
    help: "the `CREWSHIP_API_URL` agents are given",
};
pub const TRUSTED_PROXY_CIDRS: Setting = Setting {
    var: "CREWSHIP_TRUSTED_PROXY_CIDRS",
    flag: None,
    default: Shown::Unset,
    help: "extra trusted proxies (loopback always is); bad entries are warned about and ignored",
};

/// A token given in the environment or a file, with where it came from
/// (named in the 401 message and in warnings).
#[derive(Clone)]
pub struct ConfiguredToken {
    pub value: String,
    pub source: String,
}

impl std::fmt::Debug for ConfiguredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfiguredToken {{ source: {:?}, value: <redacted> }}", self.source)
    }
}

#[derive(Debug, Clone)]
pub struct Security {
    /// None: the daemon's own, kept in `<data dir>/api-token`.
    pub api_token: Option<ConfiguredToken>,
    pub allow_loopback: bool,
    /// Lower case, without a trailing slash.
    pub allowed_origins: Vec<String>,
    /// None: derived from the listen address.
    pub agent_api_url: Option<String>,
    pub trusted_proxies: TrustedProxies,
}

/// `scheme://host[:port]` entries, lower case, without a trailing slash.
fn origins(s: &str) -> Result<Vec<String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let o = o.trim_end_matches('/').to_ascii_lowercase();
            match o.split_once("://") {
                Some(("http" | "https", host)) if !host.is_empty() && !host.contains('/') => Ok(o),
                _ => Err(format!("{o:?} is not an origin like https://console.example.com")),
            }
        })
        .collect()
}

fn api_token(src: &Source<'_>, warnings: &mut Vec<String>) -> Result<Option<ConfiguredToken>, ConfigError> {
    if let Some((path, name)) = src.given(&API_TOKEN_FILE) {
        let source = format!("in the file {path} ({name})");
        let value = trimmed_token(&read_token_file(&path, &name)?, &source, warnings)
            .ok_or_else(|| bad(&name, &path, "the token file is empty"))?;
        return Ok(Some(ConfiguredToken { value, source }));
    }
    Ok(src.given(&API_TOKEN).and_then(|(v, name)| {
        let source = format!("set by {name} in its environment");
        Some(ConfiguredToken { value: trimmed_token(&v, &name, warnings)?, source })
    }))
}

impl Security {
    pub(super) fn read(src: &Source<'_>, warnings: &mut Vec<String>) -> Result<Security, ConfigError> {
        let proxies = src.given(&TRUSTED_PROXY_CIDRS).map(|(v, _)| v).unwrap_or_default();
        let (trusted_proxies, ignored) = TrustedProxies::parse(&proxies);
        warnings.extend(
            ignored
                .into_iter()
                .map(|e| format!("{}: ignoring {e:?}, which is not an IP address or CIDR", TRUSTED_PROXY_CIDRS.var)),
        );
        Ok(Security {
            api_token: api_token(src, warnings)?,
            allow_loopback: src.get(&API_ALLOW_LOOPBACK, super::source::boolean)?,
            allowed_origins: src.get_opt(&ALLOWED_ORIGINS, origins)?.unwrap_or_default(),
            agent_api_url: src.get_opt(&AGENT_API_URL, http_url)?,
            trusted_proxies,
        })
    }
}
