//! Options several commands share: paging and time windows.

use std::time::SystemTime;

use clap::Args;

use super::client::Query;

#[derive(Args)]
pub struct PageArgs {
    /// Items per page (the server's default is 50, its maximum 500).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Follow `next_cursor` through every page instead of showing one.
    #[arg(long)]
    pub all: bool,
}

impl PageArgs {
    pub fn query(&self) -> Query {
        Query::default().opt("limit", self.limit)
    }
}

#[derive(Args)]
pub struct Window {
    /// From this time on: RFC 3339 (2026-01-31T12:00:00Z) or an age (90m, 2d).
    #[arg(long, value_name = "TIME", value_parser = moment)]
    pub since: Option<String>,
    /// Up to this time: RFC 3339 or an age, as --since.
    #[arg(long, value_name = "TIME", value_parser = moment)]
    pub until: Option<String>,
}

impl Window {
    pub fn apply(&self, query: Query) -> Query {
        query.opt("since", self.since.as_deref()).opt("until", self.until.as_deref())
    }
}

/// An RFC 3339 UTC time, or an age ("1h") as the time that long ago: the API
/// takes only the former, operators often think in the latter.
fn moment(s: &str) -> Result<String, String> {
    // Weak parsing also takes "2026-01-31 12:00:00"; what is sent is strict.
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(humantime::format_rfc3339(t).to_string());
    }
    let age = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time (2026-01-31T12:00:00Z) nor an age (90m, 2d)"))?;
    let then = SystemTime::now().checked_sub(age).ok_or_else(|| format!("{s} ago is before the epoch"))?;
    Ok(humantime::format_rfc3339_seconds(then).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_times_or_ages() {
        assert_eq!(moment("2026-01-31T12:00:00Z").unwrap(), "2026-01-31T12:00:00Z");
        assert_eq!(moment("2026-01-31 12:00:00").unwrap(), "2026-01-31T12:00:00Z");
        let ago = moment("1h").unwrap();
        assert!(humantime::parse_rfc3339(&ago).unwrap() < SystemTime::now(), "{ago}");
        assert!(moment("yesterday-ish").is_err());
    }
}
