//! Enums of named values (statuses, kinds, modes): each with its text, a
//! parser, and `ALL`, from which every "must be one of" message and every
//! closed metric label set is built, so no list is ever written twice.

/// A closed set of named values.
pub trait Named: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// `s` as a value of `field`, or what it may be.
    fn parse_field(field: &str, s: &str) -> Result<Self, NotOneOf> {
        Self::parse(s).ok_or_else(|| NotOneOf(must_be_one_of(field, Self::ALL.iter().map(|v| v.as_str()))))
    }
}

/// A value that is none of a field's names: "`field` must be one of a, b, c".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOneOf(pub String);

impl std::fmt::Display for NotOneOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotOneOf {}

/// "`field` must be one of a, b, c".
pub fn must_be_one_of<'a>(field: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    format!("{field} must be one of {}", values.into_iter().collect::<Vec<_>>().join(", "))
}

/// Declares an enum of named values (`Named`, `Display`, and serde as
/// their text, and in the API description the closed set).
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::named::Named for $name {
            const ALL: &'static [$name] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                $crate::named::Named::as_str(self)
            }

            pub fn parse(s: &str) -> Option<$name> {
                <$name as $crate::named::Named>::parse(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        // In the API description, the closed set itself.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let all = <$name as $crate::named::Named>::ALL.iter().map(|v| v.as_str());
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(all))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a {}: {s:?}", stringify!($name))))
            }
        }
    };
}
pub use crate::named_enum;

#[cfg(test)]
mod tests {
    use super::*;

    named_enum!(Colour { Red => "red", Dark => "dark_blue" });

    #[test]
    fn names_parse_and_list_themselves() {
        assert_eq!(Colour::parse("dark_blue"), Some(Colour::Dark));
        assert_eq!(Colour::Red.to_string(), "red");
        let e = Colour::parse_field("colour", "green").unwrap_err().to_string();
        assert_eq!(e, "colour must be one of red, dark_blue");
    }
}
