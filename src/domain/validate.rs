//! Input rules shared by every entry point.

use super::ids::{self, Kind};
use super::{DomainError, Result};

/// 2-50 characters of `[a-z0-9_-]`, and not shaped like an id of the same
/// kind (an id is always tried first when a path names an entity).
pub fn slug(value: &str, kind: Kind) -> Result<()> {
    let ok_chars = value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !(2..=50).contains(&value.len()) || !ok_chars {
        return Err(DomainError::invalid(format!("slug {value:?} must be 2-50 characters of a-z, 0-9, _ and -")));
    }
    if ids::parse(kind, value).is_some() {
        return Err(DomainError::invalid(format!("slug {value:?} is shaped like an id; choose another")));
    }
    Ok(())
}

pub fn name(value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid("name must not be empty"));
    }
    if value.len() > 200 {
        return Err(DomainError::invalid("name must be at most 200 bytes"));
    }
    Ok(())
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
