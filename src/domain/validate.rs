//! Input rules shared by every entry point.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::ids::{self, Kind};
use super::{DomainError, Result};

const SLUG_LEN: (usize, usize) = (2, 50);

/// What a blank text is made of. Explicit, so the API description's
/// pattern for "not blank" means the same to every regex engine.
pub const BLANK: &[char] = &[' ', '\t', '\n', '\r'];

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

/// Declares the API description's schema of a text rule: [`text`] with
/// the same bound.
macro_rules! text_schema {
    ($(#[$meta:meta])* $ty:ident, $title:literal, $max:expr) => {
        $(#[$meta])*
        pub struct $ty;

        impl $ty {
            pub const MAX: Option<usize> = $max;
        }

        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("[^ \t\n\r]"))
                    .max_length(Self::MAX)
                    .description(Some("not blank (not only spaces, tabs and line breaks)"))
                    .into()
            }
        }

        impl utoipa::ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                $title.into()
            }
        }
    };
}

text_schema!(
    /// A name: of a crew, an agent, a pipeline.
    NameSchema,
    "Name",
    Some(200)
);
text_schema!(
    /// A journal entry's type.
    EntryTypeSchema,
    "EntryType",
    Some(100)
);
text_schema!(
    /// An LLM provider, compared case-insensitively.
    ProviderSchema,
    "Provider",
    Some(100)
);
text_schema!(
    /// An LLM model.
    ModelSchema,
    "Model",
    Some(200)
);
text_schema!(
    /// Free text with no bound of its own (the body limit bounds it).
    TextSchema,
    "Text",
    None
);

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

/// A slug's rule, as the API description states it.
pub struct SlugSchema;

impl utoipa::PartialSchema for SlugSchema {
    fn schema() -> RefOr<Schema> {
        let (min, max) = SLUG_LEN;
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^[a-z0-9_-]{{{min},{max}}}$")))
            .description(Some("2-50 characters of a-z, 0-9, _ and -, not shaped like an id"))
            .into()
    }
}

impl utoipa::ToSchema for SlugSchema {
    fn name() -> Cow<'static, str> {
        "Slug".into()
    }
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
