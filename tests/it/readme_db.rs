//! The README's database examples, run: the daemon on PostgreSQL as
//! "Running on PostgreSQL" starts it, and the backup commands of both
//! backends, each copy restored and served by a daemon with every row.
//! Paths and the server's port are the test's own; the commands are the
//! README's.

use serde_json::{Value, json};

use crate::common::db::{self, Database};
use crate::common::pg::Cluster;
use crate::common::{Daemon, PATIENCE};
use crate::tools;

/// The lines of the first `sh` block after `heading`, continuation lines
/// joined.
fn block(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split(&format!("\n{heading}\n")).nth(1).unwrap_or_else(|| panic!("no {heading}"));
    let body = section.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("an sh block");
    body.replace("\\\n", " ").lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

/// The README's server address, and where it says backups go.
const README_SERVER: &str = "127.0.0.1:5432";
const README_BACKUPS: &str = "/backups";

/// What a restored copy must hold: the crews and the journal.
async fn contents(d: &Daemon) -> Value {
    json!({
        "crews": d.get("/api/v1/crews").await.body["items"],
        "journal": d.get("/api/v1/journal?limit=500").await.body["items"],
    })
}

async fn populate(d: &Daemon) {
    d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "Alpha"}), 201).await;
    for i in 0..20 {
        d.ok("/api/v1/journal", json!({"entry_type": "note", "summary": format!("entry {i}")}), 201).await;
    }
}

async fn sh(line: &str) {
    let out = tokio::time::timeout(PATIENCE, tokio::process::Command::new("sh").args(["-c", line]).output())
        .await
        .expect("in time")
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_readme_postgres_example_runs() {
    if !db::postgres_only("the README's PostgreSQL section") {
        return;
    }
    let lines = block("## Running on PostgreSQL");
    // The role and database the setup lines create, as the URL names them.
    assert!(lines.iter().any(|l| l.contains("createuser crewship")), "{lines:?}");
    assert!(lines.iter().any(|l| l.ends_with("createdb --owner crewship crewship")), "{lines:?}");
    let run = lines.iter().find(|l| l.starts_with("CREWSHIP_DATABASE_URL=")).expect("the daemon's line");
    assert!(run.ends_with("cargo run --release --bin crewshipd"), "{run}");
    let url = run.split_whitespace().next().unwrap().trim_start_matches("CREWSHIP_DATABASE_URL=");
    assert!(url.contains(README_SERVER), "{url}");
    // This cluster's bootstrap role is `crewship` already; the database is
    // made as the README's createdb line makes it.
    let cluster = Cluster::start().await.expect("PostgreSQL");
    db::psql_exec(&cluster.url(), "CREATE DATABASE crewship OWNER crewship").await;
    let url = url.replace(README_SERVER, &format!("127.0.0.1:{}", cluster.port));
    let d = Daemon::start_with(&[("CREWSHIP_DATABASE_URL", &url)]).await;
    assert!(matches!(&d.database, Database::Postgres(u) if *u == url));
    populate(&d).await;
    assert_eq!(d.get("/readyz").await.status, 200);
    assert_eq!(d.database.column("SELECT slug FROM crews").await, ["alpha"]);
    assert!(d.log().contains("postgres://crewship@127.0.0.1"), "the log names the database");
}

#[tokio::test]
async fn the_readme_backup_commands_restore_every_row() {
    let lines = block("### Backups");
    let backups = tempfile::tempdir().unwrap();
    let local = |line: &str, server: Option<u16>| {
        let mut l = line.replace(README_BACKUPS, &backups.path().display().to_string());
        if let Some(port) = server {
            l = l.replace(README_SERVER, &format!("127.0.0.1:{port}")).replace("-p 5432", &format!("-p {port}"));
        }
        l
    };
    if !db::on_postgres() {
        let Some(_) = tools::sqlite3() else { return };
        let d = Daemon::start().await;
        populate(&d).await;
        let line = lines.iter().find(|l| l.starts_with("sqlite3 ")).expect("the SQLite line");
        // Online: the daemon keeps running while the copy is taken.
        sh(&local(line, None).replace("~/.crewship", &d.data_dir().display().to_string())).await;
        let before = contents(&d).await;
        let restored = tempfile::tempdir().unwrap();
        std::fs::copy(backups.path().join("crewship.db"), restored.path().join("crewship.db")).unwrap();
        let copy = Daemon::start_in(std::sync::Arc::new(restored), &[]).await;
        assert_eq!(contents(&copy).await, before);
        return;
    }
    let cluster = Cluster::start().await.expect("PostgreSQL");
    db::psql_exec(&cluster.url(), "CREATE DATABASE crewship").await;
    let url = format!("postgres://crewship@127.0.0.1:{}/crewship", cluster.port);
    let d = Daemon::start_with(&[("CREWSHIP_DATABASE_URL", &url)]).await;
    populate(&d).await;
    for line in lines.iter().filter(|l| !l.starts_with("sqlite3 ")) {
        sh(&local(line, Some(cluster.port))).await;
    }
    let before = contents(&d).await;
    let restored = format!("postgres://crewship@127.0.0.1:{}/crewship_restored", cluster.port);
    let copy = Daemon::start_with(&[("CREWSHIP_DATABASE_URL", &restored)]).await;
    assert_eq!(contents(&copy).await, before);
    assert!(!copy.log().contains("counter drift repaired"), "{}", copy.log());
}
