//! The SQLite backend on database files of the tests' own: migrating, and
//! (METRICS.md §5) what the DB-derived block of `/metrics` reads costing
//! the same on an empty store and on a large one, counted in SQLite VM
//! instructions (deterministic, unlike a timing).

use rusqlite::Connection;

use super::migrations::SCRIPTS;
use super::{migrate, with_db};
use crate::store::migrations::{MIGRATIONS, latest_known};
use crate::store::{counters, migrations, snapshot};

fn current(conn: &Connection) -> i64 {
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).unwrap()
}

#[test]
fn every_migration_has_its_sql() {
    assert_eq!(SCRIPTS.migrations.len(), MIGRATIONS.len());
}

#[test]
fn applies_once_and_refuses_newer_databases() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    migrate(&conn).unwrap();
    migrate(&conn).unwrap();
    assert_eq!(current(&conn), latest_known());
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(n as usize, MIGRATIONS.len());
    conn.execute("INSERT INTO schema_migrations VALUES (99990101000000, 'future', 'x')", []).unwrap();
    let err = migrate(&conn).unwrap_err().to_string();
    assert!(err.contains("99990101000000"), "{err}");
}

/// A store written by a binary that knew only the first migration: the
/// second runs on the next start and drops the old queue-depth row.
#[test]
fn an_older_store_gets_the_missing_migration() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    migrate(&conn).unwrap();
    conn.execute_batch(
        "DELETE FROM schema_migrations WHERE version = 20261126020000;
         INSERT INTO counters (family, label, value) VALUES ('queue', 'depth', 7), ('queue', 'crews', 2);",
    )
    .unwrap();
    migrate(&conn).unwrap();
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

/// SQLite VM instructions run by `f` on `conn` (deterministic, unlike a
/// timing): counted with a progress handler called on every instruction.
fn vm_steps(conn: &rusqlite::Connection, f: impl FnOnce(&rusqlite::Connection)) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    unsafe extern "C" fn tick(p: *mut std::ffi::c_void) -> std::ffi::c_int {
        // SAFETY: `p` is the AtomicU64 below, alive while the handler is set.
        unsafe { (*(p as *const AtomicU64)).fetch_add(1, Ordering::Relaxed) };
        0
    }
    let count = AtomicU64::new(0);
    // SAFETY: the handler is removed before `count` goes out of scope, and
    // the connection is used on this thread only.
    unsafe {
        rusqlite::ffi::sqlite3_progress_handler(
            conn.handle(),
            1,
            Some(tick),
            &count as *const AtomicU64 as *mut std::ffi::c_void,
        );
    }
    f(conn);
    // SAFETY: removing the handler installed above.
    unsafe {
        rusqlite::ffi::sqlite3_progress_handler(conn.handle(), 0, None, std::ptr::null_mut());
    }
    count.load(Ordering::Relaxed)
}

/// Every read the DB-derived block makes (src/metrics/snapshot.rs
/// `compute`), in one go.
fn snapshot_reads(conn: &rusqlite::Connection) {
    with_db(conn, |db| {
        for family in [counters::ASSIGNMENTS, counters::PIPELINE_RUNS, counters::RUN_EVENTS] {
            snapshot::family(db, family).unwrap();
        }
        snapshot::queue(db).unwrap();
        snapshot::llm_series(db).unwrap();
        migrations::current(db).unwrap();
    })
}

/// METRICS.md §5: the cost of the block must not grow with table sizes.
/// Two stores with the same bounded counter rows, one of them also holding
/// hundreds of thousands of assignments, journal and archive entries,
/// runs, ledger rows and thousands of crews: the snapshot reads must run
/// the same number of SQLite instructions on both.
#[test]
fn snapshot_cost_does_not_grow_with_table_sizes() {
    const ROWS: i64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let conn = rusqlite::Connection::open(dir.path().join(name)).unwrap();
        migrate(&conn).unwrap();
        // The same bounded rows in both stores.
        conn.execute_batch(
            "INSERT INTO counters (family, label, value) VALUES
                 ('assignments', 'queued', 5), ('assignments', 'running', 2),
                 ('assignments', 'completed', 9), ('pipeline_runs', 'running', 1),
                 ('run_events', 'started', 9), ('run_events', 'failed', 3),
                 ('queue', 'crews', 2);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25)
             INSERT INTO llm_series (label, position, calls, cost_nanos)
                 SELECT 'p' || i, i, i, i * 1000 FROM n;",
        )
        .unwrap();
        conn
    };
    let empty = open("empty.db");
    let big = open("big.db");
    big.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO crews (id, slug, name, max_concurrent_agents, runtime, created_at, updated_at)
             SELECT i, 'c' || i, 'c', 2, 'local', 0, 0 FROM n;
         INSERT INTO agents (id, crew_id, slug, name, role, command, env, timeout_seconds, created_at, updated_at)
             VALUES (1, 1, 'a', 'a', 'agent', '[]', '{{}}', 60, 0, 0);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
         INSERT INTO crew_counts (crew_id, queued) SELECT i, i % 17 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO assignments (crew_id, agent_id, task, status, created_at, queued_at)
             SELECT i % 5000 + 1, 1, 't',
                    CASE i % 4 WHEN 0 THEN 'queued' WHEN 1 THEN 'completed' WHEN 2 THEN 'failed' ELSE 'running' END,
                    i, i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO journal (ts, entry_type, severity, summary, payload)
             SELECT i, 'run.started', 'info', 's', '{{}}' FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO journal_archive (id, ts, entry_type, severity, summary, payload, archived_at)
             SELECT {ROWS} + i, i, 'run.failed', 'error', 's', '{{}}', i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO runs (id, managed, status, started_at) SELECT 'r' || i, 0, 'completed', i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
         INSERT INTO llm_calls (ts, provider, series, model, input_tokens, output_tokens,
                                cached_input_tokens, cache_creation_tokens, cost_nanos, billing_mode, priced)
             SELECT i, 'p1', 'p1', 'm', 1, 1, 0, 0, 10, 'metered', 1 FROM n;
         COMMIT;
         ANALYZE;"
    ))
    .unwrap();

    // The instrument works: a real scan of the big journal is expensive.
    let scan = vm_steps(&big, |c| {
        c.query_row("SELECT COUNT(*) FROM journal WHERE severity = 'info'", [], |r| r.get::<_, i64>(0)).unwrap();
    });
    assert!(scan > ROWS as u64, "a scan of {ROWS} rows took only {scan} steps");

    let on_empty = vm_steps(&empty, snapshot_reads);
    let on_big = vm_steps(&big, snapshot_reads);
    eprintln!("snapshot reads: {on_empty} SQLite instructions empty, {on_big} large; a journal scan: {scan}");
    assert!(
        on_big <= on_empty + 64,
        "the snapshot reads ran {on_empty} SQLite instructions on an empty store and {on_big} on a large one: \
         they read more than maintained counts"
    );
}
