//! The API description's schemas of the input rules that are no type of
//! their own (a slug, a name, a bounded text): the bounds are declared here,
//! and the daemon's validation enforces these same constants.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A slug's length, at least and at most.
pub const SLUG_LEN: (usize, usize) = (2, 50);

/// What a blank text is made of. Explicit, so the API description's
/// pattern for "not blank" means the same to every regex engine.
pub const BLANK: &[char] = &[' ', '\t', '\n', '\r'];

/// Declares the API description's schema of a text rule: not blank, at
/// most `MAX` characters (the bound the daemon's validation enforces).
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
