//! The database a test daemon runs on. By default its embedded SQLite file;
//! with `CREWSHIP_TEST_DATABASE_URL` (the URL of a throwaway PostgreSQL
//! cluster's admin database) a fresh PostgreSQL database per data
//! directory, so the whole suite runs on either backend. A restart on the
//! same directory finds the same database.

use std::path::{Path, PathBuf};

use super::PATIENCE;

/// Where the harness notes which PostgreSQL database a directory's daemon uses.
const MARKER: &str = "test-database-url";

/// The cluster the suite runs on, when it runs on PostgreSQL.
pub fn cluster() -> Option<String> {
    std::env::var("CREWSHIP_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// Whether this run is the PostgreSQL one.
pub fn on_postgres() -> bool {
    cluster().is_some()
}

/// For a test that only makes sense on PostgreSQL: true when this run is
/// the PostgreSQL one. Otherwise it is skipped, saying so, only where the
/// test command declares this the SQLite pass with a PostgreSQL pass to
/// follow (`CREWSHIP_TEST_PASS=sqlite`, as scripts/test.sh sets); anywhere
/// else under CI it fails, since it would pass without having run.
pub fn postgres_only(why: &str) -> bool {
    if on_postgres() {
        return true;
    }
    let pass = std::env::var("CREWSHIP_TEST_PASS").unwrap_or_default();
    assert!(
        pass == "sqlite" || !crate::tools::ci(),
        "PostgreSQL only ({why}), and this run has no PostgreSQL: set CREWSHIP_TEST_DATABASE_URL \
         (scripts/test.sh does), or CREWSHIP_TEST_PASS=sqlite where a PostgreSQL pass follows"
    );
    eprintln!("PostgreSQL only, not run on SQLite: {why}");
    false
}

/// The daemon's SQLite file, opened beside it (waiting while it writes).
fn open_sqlite(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open the daemon's database");
    conn.busy_timeout(PATIENCE).unwrap();
    conn
}

/// The daemon's database behind a data directory.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// The database of `dir`: created on first use on PostgreSQL.
    pub async fn of(dir: &Path) -> Database {
        let Some(cluster) = cluster() else {
            return Database::Sqlite(dir.join("crewship.db"));
        };
        let marker = dir.join(MARKER);
        if let Ok(url) = std::fs::read_to_string(&marker) {
            return Database::Postgres(url);
        }
        let name = format!("t_{}", uuid_like());
        let admin = connect(&cluster).await;
        admin.batch_execute(&format!("CREATE DATABASE {name} STRATEGY FILE_COPY")).await.expect("create database");
        let url = with_dbname(&cluster, &name);
        std::fs::write(&marker, &url).expect("write marker");
        Database::Postgres(url)
    }

    /// `CREWSHIP_DATABASE_URL` for the daemon, when it is not the default.
    pub fn url(&self) -> Option<&str> {
        match self {
            Database::Sqlite(_) => None,
            Database::Postgres(url) => Some(url),
        }
    }

    /// Runs SQL statements on it from outside the daemon, as an operator,
    /// a botched manual change or a broken disk might.
    pub async fn exec(&self, sql: &str) {
        match self {
            Database::Sqlite(path) => {
                let (path, sql) = (path.clone(), sql.to_string());
                tokio::task::spawn_blocking(move || {
                    let conn = open_sqlite(&path);
                    conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                })
                .await
                .unwrap();
            }
            Database::Postgres(url) => {
                connect(url).await.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// The first column of every row of a query, as text.
    pub async fn column(&self, sql: &str) -> Vec<String> {
        match self {
            Database::Sqlite(path) => {
                let (path, sql) = (path.clone(), sql.to_string());
                tokio::task::spawn_blocking(move || {
                    let conn = open_sqlite(&path);
                    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                    let rows = stmt.query_map([], |r| r.get::<_, rusqlite::types::Value>(0)).unwrap();
                    rows.map(|v| match v.unwrap() {
                        rusqlite::types::Value::Null => String::new(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Real(f) => f.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        rusqlite::types::Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
                    })
                    .collect()
                })
                .await
                .unwrap()
            }
            Database::Postgres(url) => {
                let rows = connect(url).await.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                rows.into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or_default().to_string()),
                        _ => None,
                    })
                    .collect()
            }
        }
    }
}

/// A connection whose driver task runs until the client is dropped.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio::time::timeout(PATIENCE, tokio_postgres::connect(url, tokio_postgres::NoTls))
        .await
        .expect("PostgreSQL answers in time")
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// `url` with its database name replaced.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let scheme = base.split_once("://").map_or("postgres", |(s, _)| s);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// A name no other test's database has.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{}_{}", std::process::id(), nanos % 1_000_000_000_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// For a test that only makes sense on SQLite: true (after saying why, so
/// the skip is visible) when this run is the PostgreSQL one.
pub fn sqlite_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("SQLite only, not run on PostgreSQL: {why}");
    }
    on_postgres()
}
