//! PostgreSQL's SQL for each migration of `store::migrations`, applied
//! under an advisory lock: daemons starting at once on an empty database
//! migrate it once, the others wait and find it done.

use super::conn::PgConn;
use crate::domain::{DomainError, Result, time};
use crate::store::migrations::{MIGRATIONS, too_new};
use crate::store::sql::args;

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

pub fn apply(conn: &PgConn) -> Result<()> {
    conn.execute("SELECT pg_advisory_lock(?1)", args![crate::store::locks::MIGRATIONS])?;
    let applied = apply_locked(conn);
    let unlocked = conn.execute("SELECT pg_advisory_unlock(?1)", args![crate::store::locks::MIGRATIONS]);
    applied.and(unlocked.map(drop))
}

fn apply_locked(conn: &PgConn) -> Result<()> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TEXT NOT NULL
         );",
    )?;
    let applied: Vec<i64> = conn
        .query("SELECT version FROM schema_migrations ORDER BY version", args![])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()
        .map_err(DomainError::caused_by)?;
    if let Some(unknown) = applied.iter().find(|v| !MIGRATIONS.iter().any(|m| m.version == **v)) {
        return Err(DomainError::invalid(too_new(*unknown)));
    }
    for (m, (_, sql)) in MIGRATIONS.iter().zip(SQL).filter(|(m, _)| !applied.contains(&m.version)) {
        conn.batch("BEGIN")?;
        let done = conn.batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                args![m.version, m.name, time::rfc3339(time::now_ms())],
            )
        });
        match done {
            Ok(_) => conn.batch("COMMIT")?,
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
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
    fn every_migration_has_its_sql_under_its_version_and_name() {
        assert_eq!(SQL.len(), MIGRATIONS.len());
        for (m, (file, _)) in MIGRATIONS.iter().zip(SQL) {
            assert_eq!(*file, format!("{}_{}", m.version, m.name));
        }
    }
}
