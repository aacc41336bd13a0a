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

/// Runs `sql` with a database's own shell, as an operator would, and
/// hands back what it printed: `sqlite3` on a file (waiting while the
/// daemon writes; `json` rows), `psql` on a URL (one transaction; the first
/// column of each row, NUL-terminated).
async fn shell(db: &Database, sql: &str, json: bool) -> Vec<u8> {
    let mut cmd = match db {
        Database::Sqlite(path) => {
            let mut c = tokio::process::Command::new(crate::tools::sqlite3().expect("the sqlite3 shell"));
            c.args(["-bail", "-cmd", &format!(".timeout {}", PATIENCE.as_millis())]);
            if json {
                c.arg("-json");
            }
            c.arg(path).stdin(std::process::Stdio::piped());
            c
        }
        Database::Postgres(url) => psql(url, sql),
    };
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run the database's shell: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(sql.as_bytes()).await.expect("write the SQL");
    }
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the database's shell answers in time")
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `psql` running `sql` (several statements are one transaction) on `url`,
/// printing the first column of each row, NUL-terminated, NULL as nothing.
pub fn psql(url: &str, sql: &str) -> tokio::process::Command {
    let bin =
        std::env::var_os("CREWSHIP_TEST_PG_BIN").map_or_else(|| PathBuf::from("psql"), |d| Path::new(&d).join("psql"));
    let mut c = tokio::process::Command::new(bin);
    c.args(["-X", "-q", "-A", "-t", "-0", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]);
    c
}

/// Runs `sql` on the PostgreSQL database at `url` as its owner would.
pub async fn psql_exec(url: &str, sql: &str) {
    shell(&Database::Postgres(url.to_string()), sql, false).await;
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
        psql_exec(&cluster, &format!("CREATE DATABASE {name} STRATEGY FILE_COPY")).await;
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
        shell(self, sql, false).await;
    }

    /// The first column of every row of a query, as text (NULL as empty).
    pub async fn column(&self, sql: &str) -> Vec<String> {
        let out = shell(self, sql, true).await;
        match self {
            Database::Sqlite(_) if out.is_empty() => Vec::new(),
            Database::Sqlite(_) => {
                let rows: Vec<serde_json::Map<String, serde_json::Value>> =
                    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{sql}: sqlite3 printed no JSON: {e}"));
                rows.into_iter()
                    .map(|row| match row.into_iter().next().map(|(_, v)| v) {
                        Some(serde_json::Value::String(s)) => s,
                        Some(serde_json::Value::Number(n)) => {
                            n.as_i64().map_or_else(|| n.as_f64().unwrap().to_string(), |i| i.to_string())
                        }
                        Some(serde_json::Value::Null) | None => String::new(),
                        Some(other) => other.to_string(),
                    })
                    .collect()
            }
            Database::Postgres(_) => out
                .split(|b| *b == 0)
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, rows)| rows.to_vec())
                .unwrap_or_default(),
        }
    }
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
