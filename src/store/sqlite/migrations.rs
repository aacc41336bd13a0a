//! SQLite's SQL for each migration of `store::migrations`, and applying
//! what a database lacks, each migration in its own transaction.

use rusqlite::Connection;

use crate::domain::{DomainError, Result, time};
use crate::store::migrations::{MIGRATIONS, too_new};

/// The SQL of each migration, in the order of `MIGRATIONS`.
const SQL: &[(&str, &str)] = &[
    ("20261125220000_initial", include_str!("migrations/20261125220000_initial.sql")),
    (
        "20261126020000_queue_depth_from_assignments",
        include_str!("migrations/20261126020000_queue_depth_from_assignments.sql"),
    ),
    ("20261201100000_hardening", include_str!("migrations/20261201100000_hardening.sql")),
    ("20261202090000_striped_counters", include_str!("migrations/20261202090000_striped_counters.sql")),
    ("20261203090000_fleet", include_str!("migrations/20261203090000_fleet.sql")),
    ("20261204090000_crew_running_from_index", include_str!("migrations/20261204090000_crew_running_from_index.sql")),
    ("20261205090000_oldest_queued", include_str!("migrations/20261205090000_oldest_queued.sql")),
    ("20261206090000_trace_context", include_str!("migrations/20261206090000_trace_context.sql")),
    ("20261207090000_runs_by_crew", include_str!("migrations/20261207090000_runs_by_crew.sql")),
];

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
        return Err(DomainError::invalid(too_new(*unknown)));
    }
    for (m, (_, sql)) in MIGRATIONS.iter().zip(SQL).filter(|(m, _)| !applied.contains(&m.version)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, time::rfc3339(time::now_ms())],
        )?;
        tx.commit()?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations::latest_known;

    fn current(conn: &Connection) -> i64 {
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn every_migration_has_its_sql_under_its_version_and_name() {
        assert_eq!(SQL.len(), MIGRATIONS.len());
        for (m, (file, _)) in MIGRATIONS.iter().zip(SQL) {
            assert_eq!(*file, format!("{}_{}", m.version, m.name));
        }
    }

    #[test]
    fn applies_once_and_refuses_newer_databases() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        assert_eq!(current(&conn), latest_known());
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
        assert_eq!(current(&conn), latest_known());
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
