//! Settings and where their values come from: a flag, else the
//! environment, else the declared default, parsed alike.

use std::time::Duration;

pub use crewship_wire::{Setting, Shown};

/// A setting's flag, with its help and default from the declaration.
pub(super) fn arg(s: &Setting) -> clap::Arg {
    let name = s.flag.expect("a setting with a flag").trim_start_matches('-');
    clap::Arg::new(name).long(name).value_name("VALUE").help(format!(
        "{} [env: {}] [default: {}]",
        s.help,
        s.var,
        s.shown_default().replace('`', "")
    ))
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {source_name}={value:?}: {reason}")]
pub struct ConfigError {
    pub source_name: String,
    pub value: String,
    pub reason: String,
}

pub(super) fn bad(source_name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { source_name: source_name.to_string(), value: value.to_string(), reason: reason.into() }
}

/// Flags and the environment, as given.
pub(super) struct Source<'a> {
    flags: &'a dyn Fn(&Setting) -> Option<String>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Source<'a> {
    pub fn new(flags: &'a dyn Fn(&Setting) -> Option<String>, env: &'a dyn Fn(&str) -> Option<String>) -> Source<'a> {
        Source { flags, env }
    }

    /// A variable of the environment that is no setting of ours (`HOME`).
    pub fn env(&self, var: &str) -> Option<String> {
        (self.env)(var).filter(|v| !v.is_empty())
    }

    /// The value given for `s` (no default), with the name to blame.
    pub fn given(&self, s: &Setting) -> Option<(String, String)> {
        if let Some(v) = (self.flags)(s) {
            return Some((v, s.flag.unwrap_or(s.var).to_string()));
        }
        self.env(s.var).map(|v| (v, s.var.to_string()))
    }

    /// The value of `s`: given, else its default value; None when neither.
    pub fn get_opt<T>(&self, s: &Setting, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        let raw = self.given(s).or(match s.default {
            Shown::Value(v) => Some((v.to_string(), format!("the default of {}", s.var))),
            _ => None,
        });
        raw.map(|(value, name)| parse(value.trim()).map_err(|reason| bad(&name, &value, reason))).transpose()
    }

    /// The value of a setting with a default value.
    pub fn get<T>(&self, s: &Setting, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ConfigError> {
        self.get_opt(s, parse)?.ok_or_else(|| bad(s.var, "", "has no default and is unset"))
    }
}

pub(super) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("expected a duration like 15s, 500ms or 30d ({e})"))
}

pub(super) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

pub(super) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn positive<T: std::str::FromStr + PartialOrd + Default>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err("expected a positive whole number".into()),
    }
}

pub(super) fn text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

/// A token as configured, trimmed; surrounding whitespace (a newline from
/// `echo` into a file, say) is worth a warning, never a silent mismatch.
pub(super) fn trimmed_token(value: &str, source: &str, warnings: &mut Vec<String>) -> Option<String> {
    let t = value.trim();
    if t.len() != value.len() {
        warnings.push(format!("{source}: the token had surrounding whitespace, which was trimmed"));
    }
    Some(t.to_string()).filter(|t| !t.is_empty())
}

pub(super) fn read_token_file(path: &str, name: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| bad(name, path, format!("cannot read the token file: {e}")))
}

/// `http://` or `https://` URLs, without a trailing slash.
pub(super) fn http_url(s: &str) -> Result<String, String> {
    match s.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(s.trim_end_matches('/').to_string()),
        _ => Err("expected an http:// or https:// URL".into()),
    }
}
