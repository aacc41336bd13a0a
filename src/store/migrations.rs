//! The schema's versions: every migration this binary knows, in order, by
//! version and name, derived at build time from the backends' migration
//! directories (each holds its SQL of every migration, under the same
//! `VERSION_NAME.sql`). Applying what a database lacks, recording it in
//! `schema_migrations`, and refusing a database newer than this list are
//! the same for every backend, so they are here.

use super::locks;
use super::sql::{Db, args};
use crate::domain::{DomainError, Result, time};

#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
}

/// Append only: a new migration is a new file in each backend's directory.
pub const MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// A backend's schema scripts.
pub(super) struct Scripts {
    /// Creates `schema_migrations` where it is missing.
    pub ledger: &'static str,
    /// The SQL of each migration, in the order of `MIGRATIONS`.
    pub migrations: &'static [&'static str],
}

pub fn latest_known() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// The highest applied version that this binary knows: in a fleet, a node
/// still running old code after a newer one migrated shows an older
/// version than its peers.
pub fn current(db: &Db<'_>) -> Result<i64> {
    db.query_one(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE version <= ?1",
        args![latest_known()],
        |r| r.get(0),
    )
}

/// Applies what the database lacks, each migration in its own transaction.
/// Nodes starting at once on one database migrate it once: the others
/// wait for the lock and find it done.
pub(super) fn apply(db: &Db<'_>, scripts: &Scripts) -> Result<()> {
    db.with_session_lock(locks::MIGRATIONS, || apply_locked(db, scripts))
}

fn apply_locked(db: &Db<'_>, scripts: &Scripts) -> Result<()> {
    db.batch(scripts.ledger)?;
    let applied: Vec<i64> =
        db.query("SELECT version FROM schema_migrations ORDER BY version", args![], |r| r.get(0))?;
    if let Some(unknown) = applied.iter().find(|v| !MIGRATIONS.iter().any(|m| m.version == **v)) {
        return Err(DomainError::invalid(format!(
            "the database has schema migration {unknown}, which this crewshipd does not know (it knows up to {}); \
             run a newer crewshipd",
            latest_known()
        )));
    }
    for (m, sql) in MIGRATIONS.iter().zip(scripts.migrations).filter(|(m, _)| !applied.contains(&m.version)) {
        db.batch("BEGIN")?;
        let done = db.batch(sql).and_then(|()| {
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                args![m.version, m.name, time::rfc3339(time::now_ms())],
            )
        });
        match done {
            Ok(_) => db.batch("COMMIT")?,
            Err(e) => {
                let _ = db.batch("ROLLBACK");
                return Err(e);
            }
        }
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_in_version_order_and_named_like_its_files() {
        assert!(MIGRATIONS.len() >= 9);
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 20261125220000);
        assert_eq!(MIGRATIONS[0].name, "initial");
    }
}
