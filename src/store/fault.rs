//! What can go wrong in a database, whichever backend: each backend maps
//! its driver's errors to a `Fault`, and this file alone says what a fault
//! means to the rest of the daemon.

use std::path::Path;
use std::sync::Arc;

use crate::domain::DomainError;

#[derive(Debug, Clone)]
pub enum Fault {
    /// No room left for the database to grow.
    DiskFull,
    /// The database's file or pages are damaged: not ready until restored.
    Corrupt(String),
    /// Another writer holds the database, or the server turns sessions away
    /// for now.
    Busy(String),
    /// No connection could be made.
    Unreachable(String),
    /// The connection broke.
    ConnectionLost(String),
    /// The database aborted the transaction to order it against others
    /// (a deadlock, a serialization failure): running it again may succeed.
    Aborted(String),
    /// A row would break a uniqueness rule, said in words.
    Unique(&'static str),
    /// Text the database cannot hold (a NUL character).
    BadText,
    /// Anything else: a bug, kept with what it came from.
    Other { message: String, source: Option<Arc<dyn std::error::Error + Send + Sync>> },
}

/// Uniqueness rules in words, by the name of the index that enforces them
/// (PostgreSQL names it) or the columns it covers (SQLite names them).
const UNIQUE_RULES: &[(&str, &str, &str)] = &[
    ("crews_live_slug", "crews.slug", "a live crew has this slug"),
    ("agents_live_slug", "agents.crew_id, agents.slug", "a live agent of this crew has this slug"),
    ("agents_live_lead", "agents.crew_id", "this crew has a lead already"),
    ("pipelines_live_slug", "pipelines.slug", "a live pipeline has this slug"),
];

impl Fault {
    /// The fault of a uniqueness rule, from the index or columns the
    /// database named.
    pub(super) fn unique(named: &str) -> Fault {
        let rule = UNIQUE_RULES
            .iter()
            .find(|(index, columns, _)| named == *index || named == *columns)
            .map_or("a row with this key exists", |(_, _, rule)| rule);
        Fault::Unique(rule)
    }

    pub(super) fn other(source: impl std::error::Error + Send + Sync + 'static) -> Fault {
        Fault::Other { message: source.to_string(), source: Some(Arc::new(source)) }
    }

    /// What callers see; `disk` is the directory holding the database,
    /// where the store knows it.
    pub(super) fn to_error(&self, disk: Option<&Path>) -> DomainError {
        let unavailable = |m: String| DomainError::Unavailable(m);
        match self {
            Fault::DiskFull => unavailable(match disk {
                Some(dir) => format!("no space left on the disk holding {}", dir.display()),
                None => "no space left on the database's disk".into(),
            }),
            Fault::Corrupt(what) => unavailable(format!("the database is corrupt: {what}")),
            Fault::Busy(what) => unavailable(format!("the database is busy: {what}")),
            Fault::Unreachable(what) => unavailable(format!("the database is unreachable: {what}")),
            Fault::ConnectionLost(what) => unavailable(format!("the database connection was lost: {what}")),
            Fault::Aborted(what) => unavailable(format!("the database aborted the transaction: {what}")),
            Fault::Unique(rule) => DomainError::conflict(*rule),
            Fault::BadText => DomainError::invalid("text may not contain the NUL character (U+0000)"),
            Fault::Other { message, source } => {
                DomainError::Internal { message: message.clone(), source: source.clone() }
            }
        }
    }
}

impl From<Fault> for DomainError {
    fn from(fault: Fault) -> DomainError {
        fault.to_error(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_fault_names_the_rule_not_the_index() {
        for named in ["crews_live_slug", "crews.slug"] {
            assert!(matches!(Fault::unique(named), Fault::Unique("a live crew has this slug")));
        }
        assert!(matches!(Fault::unique("runs.id"), Fault::Unique("a row with this key exists")));
    }

    #[test]
    fn a_full_disk_names_the_directory_where_known() {
        let e = Fault::DiskFull.to_error(Some(Path::new("/data")));
        assert_eq!(e.to_string(), "unavailable: no space left on the disk holding /data");
    }
}
