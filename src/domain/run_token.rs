//! Run tokens: what an agent's process gets to call back for its run only.
//! A token names its run and carries a 256-bit secret; only the secret's
//! SHA-256 is stored, so a copy of the database lets nobody act as a run.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::{hex, new_secret};

const PREFIX: &str = "crr.";

/// A token's text, kept out of `Debug` output (and so out of logs).
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A freshly issued token: the text the agent gets, and what is stored.
pub struct Issued {
    pub token: Secret,
    pub hash: String,
}

fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn issue(run_id: &str) -> Issued {
    let secret = new_secret();
    Issued { token: Secret(format!("{PREFIX}{run_id}.{secret}")), hash: digest(&secret) }
}

/// A token shaped like a run token: its run id and secret.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (run_id, secret) = token.strip_prefix(PREFIX)?.split_once('.')?;
    let hex32 = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex32(run_id, 32) && hex32(secret, 64)).then_some((run_id, secret))
}

/// Whether `secret` is the one whose digest was stored (constant time).
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    digest(secret).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_parse_and_verify() {
        let run = "0123456789abcdef0123456789abcdef";
        let t = issue(run);
        let (id, secret) = parse(&t.token.0).unwrap();
        assert_eq!(format!("{:?}", t.token), "<redacted>");
        assert_eq!(id, run);
        assert!(verify(secret, &t.hash));
        assert!(!verify(secret, &issue(run).hash));
        assert!(parse("crr.short.x").is_none());
        assert!(parse(&t.token.0.replacen("crr.", "api.", 1)).is_none());
        assert!(!t.hash.contains(secret));
    }
}
