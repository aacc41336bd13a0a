//! What only PostgreSQL has: its schema against SQLite's, migrations raced
//! by several daemons, aborted transactions run again, and the database
//! lost and found again under load. These run in the suite's PostgreSQL
//! pass (scripts/test.sh); the loss tests stop and start a cluster of their
//! own, since the shared one serves the tests running beside them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::db::{self, Database};
use crate::common::pg::Cluster;
use crate::common::{Daemon, PATIENCE, sample};
use crate::tools::eventually;

/// A column's type class, the same words for both backends (SQLite has
/// no boolean: its flags are integers 0 and 1).
fn class(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "smallint" | "boolean" => "integer",
        "text" => "text",
        "real" | "double precision" => "real",
        "blob" | "bytea" => "blob",
        other => panic!("a column type the comparison does not know: {other}"),
    }
}

/// Tables, columns, keys and indexes of a database, normalized, one line
/// each.
async fn schema(db: &Database) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match db {
        Database::Sqlite(_) => {
            let tables = "m.type = 'table' AND m.name NOT LIKE 'sqlite_%'";
            for line in db
                .column(&format!(
                    "SELECT m.name || ' ' || p.name || ' ' || p.type || ' ' || (p.\"notnull\" OR p.pk > 0)
                     FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE {tables}"
                ))
                .await
            {
                let f: Vec<&str> = line.split(' ').collect();
                let null = if f[3] == "1" { "not null" } else { "null" };
                out.insert(format!("column {}.{} {} {null}", f[0], f[1], class(f[2])));
            }
            for line in db
                .column(&format!(
                    "SELECT m.name || ' ' || (SELECT group_concat(name, ',') FROM
                         (SELECT name FROM pragma_table_info(m.name) WHERE pk > 0 ORDER BY pk))
                     FROM sqlite_master m WHERE {tables}"
                ))
                .await
                .into_iter()
                .filter(|l| !l.is_empty())
            {
                out.insert(format!("primary key {line}"));
            }
            for line in db
                .column(&format!(
                    "SELECT m.name || ' ' || il.name || ' ' || il.\"unique\" || ' ' || il.partial || ' ' || il.origin
                         || ' ' || (SELECT group_concat(name, ',') FROM
                             (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno))
                     FROM sqlite_master m JOIN pragma_index_list(m.name) il WHERE {tables}"
                ))
                .await
            {
                let f: Vec<&str> = line.split(' ').collect();
                match f[4] {
                    "pk" => {}
                    "u" => {
                        out.insert(format!("unique {}({})", f[0], f[5]));
                    }
                    _ => {
                        let kind = if f[2] == "1" { "unique index" } else { "index" };
                        let partial = if f[3] == "1" { " partial" } else { "" };
                        out.insert(format!("{kind} {} on {}({}){partial}", f[1], f[0], f[5]));
                    }
                }
            }
        }
        Database::Postgres(_) => {
            for line in db
                .column(
                    "SELECT table_name || ' ' || column_name || ' ' || replace(data_type, ' ', '_') || ' ' || is_nullable
                     FROM information_schema.columns WHERE table_schema = current_schema()",
                )
                .await
            {
                let f: Vec<&str> = line.split(' ').collect();
                let null = if f[3] == "NO" { "not null" } else { "null" };
                out.insert(format!("column {}.{} {} {null}", f[0], f[1], class(&f[2].replace('_', " "))));
            }
            let keys = |kind: &str| {
                format!(
                    "SELECT tc.table_name || ' ' || string_agg(k.column_name, ',' ORDER BY k.ordinal_position)
                     FROM information_schema.table_constraints tc
                     JOIN information_schema.key_column_usage k
                         USING (constraint_schema, constraint_name, table_name)
                     WHERE tc.constraint_type = '{kind}' AND tc.table_schema = current_schema()
                     GROUP BY tc.table_name, tc.constraint_name"
                )
            };
            for line in db.column(&keys("PRIMARY KEY")).await {
                out.insert(format!("primary key {line}"));
            }
            for line in db.column(&keys("UNIQUE")).await {
                let (table, cols) = line.split_once(' ').unwrap();
                out.insert(format!("unique {table}({cols})"));
            }
            for line in db
                .column(
                    "SELECT t.relname || ' ' || i.relname || ' ' || ix.indisunique || ' ' || (ix.indpred IS NOT NULL)
                         || ' ' || array_to_string(ARRAY(
                             SELECT a.attname FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(n, o)
                             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o), ',')
                     FROM pg_index ix
                     JOIN pg_class i ON i.oid = ix.indexrelid
                     JOIN pg_class t ON t.oid = ix.indrelid
                     JOIN pg_namespace n ON n.oid = t.relnamespace
                     WHERE n.nspname = current_schema()
                         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)",
                )
                .await
            {
                let f: Vec<&str> = line.split(' ').collect();
                let kind = if f[2] == "true" { "unique index" } else { "index" };
                let partial = if f[3] == "true" { " partial" } else { "" };
                out.insert(format!("{kind} {} on {}({}){partial}", f[1], f[0], f[4]));
            }
        }
    }
    for line in db.column("SELECT version || ' ' || name FROM schema_migrations").await {
        out.insert(format!("migration {line}"));
    }
    out
}

#[tokio::test]
async fn both_backends_have_the_same_schema() {
    if !db::postgres_only("the PostgreSQL backend itself") {
        return;
    }
    let on_pg = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = format!("sqlite:{}", dir.path().join("same.db").display());
    let on_sqlite = Daemon::start_with(&[("CREWSHIP_DATABASE_URL", &file)]).await;
    assert!(matches!(on_sqlite.database, Database::Sqlite(_)));
    let (pg, sqlite) = (schema(&on_pg.database).await, schema(&on_sqlite.database).await);
    assert!(pg.iter().any(|l| l.starts_with("index assignments_queue on assignments(crew_id,queued_at,id) partial")));
    assert!(pg.iter().any(|l| l.starts_with("migration ")), "{pg:#?}");
    let only_pg: Vec<_> = pg.difference(&sqlite).collect();
    let only_sqlite: Vec<_> = sqlite.difference(&pg).collect();
    assert!(
        only_pg.is_empty() && only_sqlite.is_empty(),
        "only on PostgreSQL: {only_pg:#?}\nonly on SQLite: {only_sqlite:#?}"
    );
}

#[tokio::test]
async fn daemons_starting_at_once_on_an_empty_database_migrate_it_once() {
    if !db::postgres_only("the PostgreSQL backend itself") {
        return;
    }
    let first = tempfile::tempdir().unwrap();
    let Database::Postgres(url) = Database::of(first.path()).await else { unreachable!() };
    let env = [("CREWSHIP_DATABASE_URL", url.as_str())];
    let (a, b, c) = tokio::join!(Daemon::start_with(&env), Daemon::start_with(&env), Daemon::start_with(&env));
    let applied: usize = [&a, &b, &c].iter().map(|d| d.log().matches("applied schema migration").count()).sum();
    let versions = a.database.column("SELECT version FROM schema_migrations").await;
    assert_eq!(applied, versions.len(), "each migration once, by one daemon");
    assert_eq!(versions.len(), crewship::internals::store::migrations::MIGRATIONS.len());
    for d in [&a, &b, &c] {
        assert_eq!(d.get("/readyz").await.status, 200);
    }
}

#[tokio::test]
async fn aborted_transactions_run_again_a_bounded_number_of_times() {
    if !db::postgres_only("the PostgreSQL backend itself") {
        return;
    }
    let d = Daemon::start().await;
    // Every other attempt fails as a serialization failure would; the
    // sequence counts attempts, since a rollback does not undo it.
    d.database
        .exec(
            "CREATE SEQUENCE attempts;
             CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 IF nextval('attempts') % 2 = 1 THEN
                     RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER flaky BEFORE INSERT ON journal FOR EACH ROW EXECUTE FUNCTION flaky();",
        )
        .await;
    d.ok("/api/v1/journal", json!({"entry_type": "note", "summary": "second time lucky"}), 201).await;
    assert_eq!(d.database.column("SELECT last_value FROM attempts").await, ["2"]);

    // A deadlock every time: a bounded number of attempts, then 503.
    d.database
        .exec(
            "CREATE OR REPLACE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                 PERFORM nextval('attempts');
                 RAISE EXCEPTION 'injected' USING ERRCODE = 'deadlock_detected';
             END $$;",
        )
        .await;
    let r = d.post("/api/v1/journal", json!({"entry_type": "note", "summary": "never"})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(d.database.column("SELECT last_value FROM attempts").await, ["7"], "five more attempts");
    let journal = d.get("/api/v1/journal").await.body;
    let summaries: Vec<&str> =
        journal["items"].as_array().unwrap().iter().filter_map(|e| e["summary"].as_str()).collect();
    assert!(summaries.contains(&"second time lucky") && !summaries.contains(&"never"), "{summaries:?}");
}

/// Writers posting journal entries and LLM calls as fast as answers come:
/// what was acknowledged, and how often the daemon said "retry".
struct Load {
    acked: Arc<std::sync::Mutex<Vec<String>>>,
    calls: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(d: &Daemon, writers: usize) -> Load {
        let load = Load {
            acked: Arc::default(),
            calls: Arc::default(),
            refused: Arc::default(),
            stop: Arc::default(),
            writers: Vec::new(),
        };
        let mut handles = Vec::new();
        for w in 0..writers {
            let (client, base, bearer) = (d.client().clone(), d.base.clone(), d.bearer());
            let (acked, calls, refused, stop) =
                (load.acked.clone(), load.calls.clone(), load.refused.clone(), load.stop.clone());
            handles.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (path, body) = if n.is_multiple_of(2) {
                        ("/api/v1/journal", json!({"entry_type": "note", "summary": format!("w{w}-{n}")}))
                    } else {
                        let call = json!({"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5});
                        ("/api/v1/llm-calls", call)
                    };
                    let r = client.post(format!("{base}{path}")).header("authorization", &bearer).json(&body).send().await;
                    let Ok(r) = r else { panic!("the daemon dropped a connection") };
                    let (status, retry) = (r.status().as_u16(), r.headers().contains_key("retry-after"));
                    let text = r.text().await.unwrap_or_default();
                    match status {
                        201 if path == "/api/v1/journal" => {
                            let v: Value = serde_json::from_str(&text).unwrap();
                            acked.lock().unwrap().push(v["id"].to_string());
                        }
                        201 => {
                            calls.fetch_add(1, Ordering::Relaxed);
                        }
                        503 if retry => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            // Not synchronisation: a writer that was told to
                            // retry backs off a little, as a client would.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        _ => panic!("POST {path}: {status} (Retry-After: {retry}) {text}"),
                    }
                }
            }));
        }
        Load { writers: handles, ..load }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond now were acknowledged.
    async fn acks(&self, more: usize, what: &str) {
        let want = self.acked() + more;
        eventually(what, PATIENCE, || async { (self.acked() >= want).then_some(()) }).await;
    }

    /// Stops the writers (a writer that failed fails the test here).
    async fn finish(self) -> (Vec<String>, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            w.await.expect("a writer failed");
        }
        let acked = self.acked.lock().unwrap().clone();
        (acked, self.calls.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }
}

/// Every journal id the daemon lists.
async fn journal_ids(d: &Daemon) -> BTreeSet<String> {
    let (mut ids, mut cursor) = (BTreeSet::new(), String::new());
    loop {
        let page = d.get(&format!("/api/v1/journal?type=note&limit=500{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        ids.extend(page.body["items"].as_array().unwrap().iter().map(|e| e["id"].to_string()));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return ids,
        }
    }
}

/// After the loss: every acknowledged write is there, and the counters
/// count at least what was acknowledged (a write answered 503 may still
/// have committed: its answer was lost, not its row).
async fn nothing_acknowledged_was_lost(d: &Daemon, load: Load) -> u64 {
    let (acked, calls, refused) = load.finish().await;
    let ids = journal_ids(d).await;
    let lost: Vec<_> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged journal entries lost: {lost:?}", lost.len());
    let counted = eventually("the LLM calls counted", PATIENCE, || async {
        let page = d.metrics().await;
        let up = sample(&page, "crewshipd_metrics_collector_up", Some(("collector", "llm"))) == Some(1.0);
        let n = sample(&page, "crewshipd_llm_calls_total", Some(("provider", "p"))).unwrap_or(0.0) as u64;
        (up && n >= calls).then_some(n)
    })
    .await;
    assert!(counted <= calls + refused, "{counted} calls counted, {calls} acknowledged, {refused} refused");
    refused
}

/// A daemon on the test's own cluster, which the test may crash.
async fn daemon_on(cluster: &Cluster) -> Daemon {
    let url = cluster.url();
    Daemon::start_with(&[("CREWSHIP_DATABASE_URL", url.as_str()), ("CREWSHIP_METRICS_CACHE_TTL", "200ms")]).await
}

#[tokio::test]
async fn a_crashed_database_is_an_outage_not_a_crash() {
    if !db::postgres_only("the PostgreSQL backend itself") {
        return;
    }
    let cluster = Cluster::start().await.expect("PostgreSQL");
    let d = daemon_on(&cluster).await;
    let load = Load::start(&d, 4);
    load.acks(50, "writes before the crash").await;
    let good = eventually("a page with the load on it", PATIENCE, || async {
        let page = d.metrics().await;
        (sample(&page, "crewshipd_llm_calls_total", Some(("provider", "p"))).unwrap_or(0.0) > 0.0).then_some(page)
    })
    .await;

    cluster.stop_immediate().await;
    // While it is down: writes are 503 with Retry-After (checked by every
    // writer), the daemon is unready, and /metrics serves the last good
    // DB block marked stale.
    let r = d.post("/api/v1/crews", json!({"slug": "down", "name": "Down"})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(d.get("/readyz").await.status, 503);
    let stale = eventually("collector_up 0 while the database is down", PATIENCE, || async {
        let page = d.metrics().await;
        (sample(&page, "crewshipd_metrics_collector_up", Some(("collector", "llm"))) == Some(0.0)).then_some(page)
    })
    .await;
    let before = sample(&good, "crewshipd_llm_calls_total", Some(("provider", "p"))).unwrap();
    let kept = sample(&stale, "crewshipd_llm_calls_total", Some(("provider", "p"))).unwrap();
    assert!(kept >= before, "the last good value is served: {kept} < {before}");
    assert!(sample(&stale, "crewshipd_db_migration_version", None).is_some_and(|v| v > 0.0), "{stale}");
    let refused_while_down = load.refused.load(Ordering::Relaxed);

    cluster.start_again().await;
    // Back by itself: no restart of the daemon.
    eventually("ready again", PATIENCE, || async { (d.get("/readyz").await.status == 200).then_some(()) }).await;
    load.acks(50, "writes after the database came back").await;
    let refused = nothing_acknowledged_was_lost(&d, load).await;
    assert!(refused >= refused_while_down && refused > 0, "no writer was ever told to retry");
    assert!(d.log().matches("connected to the database").count() >= 1, "{}", d.log());
}

#[tokio::test]
async fn a_fast_restart_of_the_database_loses_nothing() {
    if !db::postgres_only("the PostgreSQL backend itself") {
        return;
    }
    let cluster = Cluster::start().await.expect("PostgreSQL");
    let d = daemon_on(&cluster).await;
    let load = Load::start(&d, 4);
    load.acks(50, "writes before the restart").await;
    cluster.restart_fast().await;
    load.acks(50, "writes after the restart").await;
    assert_eq!(d.get("/readyz").await.status, 200);
    nothing_acknowledged_was_lost(&d, load).await;
    // The pool's sessions were ended by the restart and opened again.
    assert!(d.log().matches("connected to the database").count() >= 1, "{}", d.log());
}
