//! Health tells the truth, and nothing outside the request path takes the
//! daemon down: a full disk and a corrupt table make it unready (and are
//! named), a corrupt database is refused at start, bad settings are
//! start-up errors, the dispatcher retries after a store error, and a
//! closed stderr costs only the log.

use std::path::Path;
use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use crate::common::{Daemon, Launch, PATIENCE, db};
use crate::tools::{ci, eventually};

/// A tmpfs of `size` mounted on a new temporary directory, unmounted on
/// drop: a disk that really fills up. Needs root; None (a skip outside CI)
/// without it.
struct SmallDisk {
    dir: Arc<tempfile::TempDir>,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(SmallDisk { dir });
        }
        assert!(!ci(), "mounting a tmpfs needs root, which CI=true runs have");
        eprintln!("!!! SKIPPING: cannot mount a tmpfs here (not root?)");
        None
    }

    /// Fills the disk with one file until no byte is left.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_503_that_names_the_data_dir() {
    if db::sqlite_only("the database file fills the data dir's disk only on SQLite") {
        return;
    }
    let Some(disk) = SmallDisk::mount("16m") else { return };
    let d = Daemon::launch(disk.dir.clone(), &[], Launch::default()).await;
    d.ok("/api/v1/crews", json!({"slug": "alpha", "name": "A"}), 201).await;
    assert_eq!(d.get("/readyz").await.status, 200);
    let filler = disk.fill();
    let dir = disk.dir.path().display().to_string();
    // Writes big enough to need new space are refused, naming the place.
    let big = "j".repeat(256 * 1024);
    let r = d.post("/api/v1/journal", json!({"entry_type": "note", "summary": big})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains(&dir), "{}", r.text);
    let ready = d.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.body["checks"]["db"].as_str().unwrap().contains(&dir), "{}", ready.text);
    // Room again: ready again, and writes go through.
    std::fs::remove_file(filler).unwrap();
    eventually("the daemon to be ready again", PATIENCE, || async {
        (d.get("/readyz").await.status == 200).then_some(())
    })
    .await;
    d.ok("/api/v1/journal", json!({"entry_type": "note", "summary": "room again"}), 201).await;
    // Nothing was half-written: the refused entry is not there.
    let notes = d.get("/api/v1/journal?type=note").await.body;
    assert_eq!(notes["items"].as_array().unwrap().len(), 1, "{notes}");
    let (status, _) = d.terminate().await;
    assert!(status.success());
}

/// Overwrites the header of the database page holding `needle` (a text
/// only table rows contain) with garbage.
fn corrupt_page_holding(db: &Path, needle: &str) {
    let mut bytes = std::fs::read(db).unwrap();
    let at = bytes.windows(needle.len()).position(|w| w == needle.as_bytes()).expect("the needle is in the file");
    let page = 4096;
    let start = at / page * page;
    for b in &mut bytes[start..start + 12] {
        *b = 0xEE;
    }
    std::fs::write(db, bytes).unwrap();
}

#[tokio::test]
async fn a_corrupt_database_is_refused_at_start() {
    if db::sqlite_only("it corrupts a page of the SQLite file; PostgreSQL's pages are its server's") {
        return;
    }
    let d = Daemon::start().await;
    for i in 0..300 {
        d.ok("/api/v1/journal", json!({"entry_type": "note", "summary": format!("needle-{i:04}")}), 201).await;
    }
    let (status, dir) = d.terminate().await;
    assert!(status.success());
    corrupt_page_holding(&dir.path().join("crewship.db"), "needle-0150");
    let (status, log) = Daemon::start_failure_in(dir.path(), &[]).await;
    assert!(!status.success());
    assert!(log.contains("is corrupt") && log.contains("restore it from a backup"), "{log}");
}

#[tokio::test]
async fn corruption_found_while_serving_makes_the_daemon_unready() {
    if db::sqlite_only("it corrupts a page of the SQLite file; PostgreSQL's pages are its server's") {
        return;
    }
    let d = Daemon::start().await;
    for i in 0..2000 {
        d.ok("/api/v1/journal", json!({"entry_type": "note", "summary": format!("needle-{i:04}")}), 201).await;
    }
    // A fresh start: the check passes, and no page of the journal is cached.
    let d = d.restart().await;
    assert_eq!(d.get("/readyz").await.status, 200);
    corrupt_page_holding(&d.db_path(), "needle-1000");
    // Reading through the journal reaches the page.
    let mut cursor = String::new();
    let failed = loop {
        let r = d.get(&format!("/api/v1/journal?type=note&limit=100{cursor}")).await;
        if r.status != 200 {
            break r;
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => panic!("read the whole journal without meeting the corrupt page"),
        }
    };
    assert_eq!(failed.status, 503, "{}", failed.text);
    let ready = d.get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.body["checks"]["db"].as_str().unwrap().contains("corrupt"), "{}", ready.text);
}

/// On either backend: a database migrated by a newer crewshipd is refused
/// at start, naming the version, rather than written with old rules.
#[tokio::test]
async fn a_database_from_a_newer_crewshipd_is_refused() {
    let d = Daemon::start().await;
    let db = d.database.clone();
    let (_, dir) = d.terminate().await;
    db.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99991231235959, 'future', 'later')")
        .await;
    let (status, log) = Daemon::start_failure_in(dir.path(), &[]).await;
    assert!(!status.success());
    assert!(log.contains("99991231235959") && log.contains("run a newer crewshipd"), "{log}");
}

#[tokio::test]
async fn bad_settings_are_start_up_errors() {
    for (var, value) in [
        ("CREWSHIP_EVENT_BUFFER", "100000000000"),
        ("CREWSHIP_LOG", "info,[[[not a filter"),
        ("CREWSHIP_DB_SYNC", "sometimes"),
    ] {
        let (status, log) = Daemon::start_failure(&[(var, value)]).await;
        assert_eq!(status.code(), Some(2), "{var}: {log}");
        assert!(log.contains(var), "{var}: {log}");
    }
    let d = Daemon::start_with(&[("CREWSHIP_DB_SYNC", "normal")]).await;
    assert_eq!(d.get("/readyz").await.status, 200);
}

#[tokio::test]
async fn the_dispatcher_retries_after_a_store_error() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "echo done").await;
    // A trigger that makes every claim fail, as a broken disk would.
    let (fail, mend) = match d.database {
        db::Database::Sqlite(_) => (
            "CREATE TRIGGER no_claims BEFORE UPDATE OF status ON assignments WHEN NEW.status = 'running'
             BEGIN SELECT RAISE(ABORT, 'claims are failing'); END;",
            "DROP TRIGGER no_claims",
        ),
        db::Database::Postgres(_) => (
            "CREATE FUNCTION no_claims() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'claims are failing'; END $$;
             CREATE TRIGGER no_claims BEFORE UPDATE OF status ON assignments
                 FOR EACH ROW WHEN (NEW.status = 'running') EXECUTE FUNCTION no_claims();",
            "DROP TRIGGER no_claims ON assignments; DROP FUNCTION no_claims()",
        ),
    };
    d.database.exec(fail).await;
    let a = d.ok("/api/v1/assignments", json!({"crew": "alpha", "agent": "worker", "task": "t"}), 201).await;
    let id = a["id"].as_str().unwrap().to_string();
    eventually("a failed dispatch", PATIENCE, || async { d.log().contains("dispatch failed").then_some(()) }).await;
    // Mended: with no other event, the retry timer starts the work.
    d.database.exec(mend).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let done = d.await_assignment(&mut ws, &id, &["completed", "failed"]).await;
    assert_eq!(done["status"], "completed", "{done}");
}

#[tokio::test]
async fn a_closed_stderr_neither_stops_requests_nor_shutdown() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut d =
        Daemon::launch(dir, &[("CREWSHIP_LOG", "debug")], Launch { closed_stderr: true, ..Launch::default() }).await;
    // Each of these logs (an unpriced model is a warning), into a pipe
    // nobody reads.
    for i in 0..20 {
        let call = json!({"provider": "nobody", "model": format!("m{i}"), "input_tokens": 1, "output_tokens": 1});
        d.ok("/api/v1/llm-calls", call, 201).await;
    }
    d.crew_with_agent("alpha", 1, "echo fine").await;
    assert_eq!(d.run_to_end("alpha", "worker", "t").await["status"], "completed");
    assert_eq!(d.request(Method::GET, "/readyz", None).await.status, 200);
    d.signal(libc::SIGTERM);
    let status = d.exit_within(PATIENCE).await.expect("exited");
    assert!(status.success(), "a clean shutdown, not a panic: {status}");
}
