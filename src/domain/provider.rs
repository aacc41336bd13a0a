//! Provider names and the bounded label set of the LLM families
//! (METRICS.md §4, decision 3).

use super::Result;
use super::validate::{self, ProviderSchema};

/// Providers that keep their own series, in order of first appearance.
pub const MAX_OWN_SERIES: i64 = 24;
/// The series every later provider (and one literally named so) folds into.
pub const OTHER: &str = "other";

/// `ANTHROPIC`, ` anthropic ` and `anthropic` are one provider.
pub fn normalize(raw: &str) -> Result<String> {
    validate::text("provider", raw, ProviderSchema::MAX)?;
    Ok(validate::trimmed(raw).to_lowercase())
}

/// Where a call of `provider` is counted. `own_series` tells whether the
/// provider already has its series; `own_count` how many providers do.
pub fn series_label(provider: &str, own_series: bool, own_count: i64) -> SeriesLabel {
    if provider == OTHER {
        SeriesLabel::Other
    } else if own_series {
        SeriesLabel::Own
    } else if own_count < MAX_OWN_SERIES {
        SeriesLabel::NewOwn
    } else {
        SeriesLabel::Other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesLabel {
    /// Counted under its own, existing series.
    Own,
    /// Gets a series of its own from now on.
    NewOwn,
    /// Counted under `provider="other"`.
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize("  ANTHROPIC\t").unwrap(), "anthropic");
        assert_eq!(normalize("Ünïcode").unwrap(), "ünïcode");
        assert!(normalize("   ").is_err());
        assert!(normalize(&"x".repeat(101)).is_err());
    }

    #[test]
    fn cap_and_literal_other() {
        assert_eq!(series_label("other", false, 0), SeriesLabel::Other);
        assert_eq!(series_label("a", false, 23), SeriesLabel::NewOwn);
        assert_eq!(series_label("a", false, 24), SeriesLabel::Other);
        assert_eq!(series_label("a", true, 24), SeriesLabel::Own);
    }
}
