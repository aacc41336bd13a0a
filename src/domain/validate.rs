//! Input rules shared by every entry point.

pub use crewship_wire::schema::{
    BLANK, EntryTypeSchema, ModelSchema, NameSchema, ProviderSchema, SLUG_LEN, TextSchema,
};

use super::ids::{self, Kind};
use super::{DomainError, Result};

/// `value` without its leading and trailing blanks.
pub fn trimmed(value: &str) -> &str {
    value.trim_matches(BLANK)
}

/// A text field's rule: not blank, and at most `max` characters as sent.
pub fn text(field: &str, value: &str, max: Option<usize>) -> Result<()> {
    if trimmed(value).is_empty() {
        return Err(DomainError::invalid(format!("{field} must not be blank")));
    }
    if let Some(max) = max
        && value.chars().count() > max
    {
        return Err(DomainError::invalid(format!("{field} must be at most {max} characters")));
    }
    Ok(())
}

/// 2-50 characters of `[a-z0-9_-]`, and not shaped like an id of the same
/// kind (an id is always tried first when a path names an entity).
pub fn slug(value: &str, kind: Kind) -> Result<()> {
    let ok_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    let (min, max) = SLUG_LEN;
    if !(min..=max).contains(&value.len()) || !ok_chars {
        return Err(DomainError::invalid(format!(
            "slug {value:?} must be {min}-{max} characters of a-z, 0-9, _ and -"
        )));
    }
    if ids::parse(kind, value).is_some() {
        return Err(DomainError::invalid(format!("slug {value:?} is shaped like an id; choose another")));
    }
    Ok(())
}

pub fn name(value: &str) -> Result<()> {
    text("name", value, NameSchema::MAX)
}

pub fn at_least_one(field: &str, v: i64) -> Result<()> {
    if v < 1 {
        return Err(DomainError::invalid(format!("{field} must be at least 1")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["ab", "crew-1", "a_b", &"x".repeat(50), "crw_x"] {
            assert!(slug(ok, Kind::Crew).is_ok(), "{ok}");
        }
        for bad in ["a", "", "Abc", "a b", "ü-x", &"x".repeat(51), "crw_7"] {
            assert!(slug(bad, Kind::Crew).is_err(), "{bad}");
        }
        assert!(slug("crw_7", Kind::Agent).is_ok());
    }
}
