//! Versioned, ordered schema migrations, recorded in `schema_migrations`.

use rusqlite::Connection;

use crate::domain::{DomainError, Result, time};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order. Append only.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 20261125220000, name: "initial", sql: include_str!("migrations/20261125220000_initial.sql") },
    Migration {
        version: 20261126020000,
        name: "queue_depth_from_assignments",
        sql: include_str!("migrations/20261126020000_queue_depth_from_assignments.sql"),
    },
    Migration {
        version: 20261201100000,
        name: "hardening",
        sql: include_str!("migrations/20261201100000_hardening.sql"),
    },
];

pub fn latest_known() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Applies what is missing, each migration in its own transaction.
pub fn apply(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TEXT NOT NULL
         );",
    )?;
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(unknown) = applied.iter().find(|v| !MIGRATIONS.iter().any(|m| m.version == **v)) {
        return Err(DomainError::Internal(format!(
            "the database has schema migration {unknown}, which this crewshipd does not know \
             (it knows up to {}); run a newer crewshipd",
            latest_known()
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, time::rfc3339(time::now_ms())],
        )?;
        tx.commit()?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    Ok(())
}

/// The highest applied version.
pub fn current(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_and_refuses_newer_databases() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        assert_eq!(current(&conn).unwrap(), latest_known());
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
        conn.execute("INSERT INTO schema_migrations VALUES (99990101000000, 'future', 'x')", []).unwrap();
        let err = apply(&mut conn).unwrap_err().to_string();
        assert!(err.contains("99990101000000"), "{err}");
    }

    /// A store written by a binary that knew only the first migration: the
    /// second runs on the next start and drops the old queue-depth row.
    #[test]
    fn an_older_store_gets_the_missing_migration() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        apply(&mut conn).unwrap();
        conn.execute_batch(
            "DELETE FROM schema_migrations WHERE version = 20261126020000;
             INSERT INTO counters (family, label, value) VALUES ('queue', 'depth', 7), ('queue', 'crews', 2);",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        assert_eq!(current(&conn).unwrap(), latest_known());
        let left: Vec<String> = conn
            .prepare("SELECT label FROM counters WHERE family = 'queue'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(left, ["crews"]);
    }
}
