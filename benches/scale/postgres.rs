//! (f) PostgreSQL beside SQLite, in the same run: the big store copied
//! into PostgreSQL with `COPY` (the same rows, so the two stores describe
//! the same world), the /metrics snapshot on both (empty against big,
//! maintained against naive), the start-up recount on the big PostgreSQL
//! store, and the write paths on PostgreSQL against SQLite and with striped
//! counters against one row per counter.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use serde::Serialize;

use crewship::internals::metrics::snapshot::compute;
use crewship::internals::store::postgresql::Settings;
use crewship::internals::store::{Location, Options, Store};

use crate::Res;
use crate::snapshot::{Agreement, NAIVE, NaiveQuery, Rows, agreement, naive_rounds, time_compute};
use crate::stats::Timing;
use crate::writes::{self, Kind, PathResult};

const BLOCKS: usize = 5;
const PER_BLOCK: usize = 100;
const NAIVE_ROUNDS: usize = 3;
/// Connections of each PostgreSQL store (the daemon's default).
const POOL: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    pub seconds: f64,
    pub index_seconds: f64,
    pub rows: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Medians of `compute` on each store, blocks alternating among them.
    pub pg_empty: Timing,
    pub pg_big: Timing,
    pub sqlite_empty: Timing,
    pub sqlite_big: Timing,
    pub naive: Vec<NaiveQuery>,
    pub naive_total: Timing,
    /// Naive on PostgreSQL / maintained on PostgreSQL, big store.
    pub ratio: f64,
    /// PostgreSQL big / PostgreSQL empty.
    pub big_over_empty: f64,
    /// PostgreSQL / SQLite, big store.
    pub pg_over_sqlite: f64,
    pub agreement: Vec<Agreement>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub server: String,
    pub pool: usize,
    pub copy: Copy,
    pub snapshot: Snapshot,
    /// The start-up recount (`Store::recount`) on the big store, and what
    /// it repaired (nothing, on a faithful copy).
    pub recount_seconds: f64,
    pub recount_drift: usize,
    /// "with" = PostgreSQL, "without" = SQLite; both default options.
    pub against_sqlite: Vec<PathResult>,
    /// "with" = counters in 8 stripes (the default), "without" = 1.
    pub striped: Vec<PathResult>,
}

/// Runs `f` on a thread of its own: the blocking driver may not run on the
/// async runtime's threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Res<T> + Send + 'static) -> Res<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.map_err(|_| "a PostgreSQL helper thread died")?
}

pub fn connect(url: &str) -> Res<postgres::Client> {
    Ok(postgres::Client::connect(url, postgres::NoTls)?)
}

/// `url` (the cluster's admin database) with another database name.
fn with_db(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => url.to_string(),
    }
}

/// A fresh, empty database on the cluster: its URL.
pub async fn fresh(admin: &str, name: &str) -> Res<String> {
    let (url, n) = (admin.to_string(), name.to_string());
    blocking(move || {
        let mut c = connect(&url)?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))?;
        c.batch_execute(&format!("CREATE DATABASE {n}"))?;
        Ok(())
    })
    .await?;
    Ok(with_db(admin, name))
}

fn open(url: &str, options: Options) -> Res<Store> {
    let settings = Settings::parse(url, None, None, POOL)?;
    Ok(Store::open(&Location::Postgres(Box::new(settings)), tokio::sync::broadcast::channel(16).0, options)?)
}

/// A value in COPY's text format.
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"\\N"),
        Value::Integer(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Real(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Text(s) => {
            for b in s.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b => out.push(b),
                }
            }
        }
        Value::Blob(b) => {
            out.extend_from_slice(b"\\\\x");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// Copies every row of the SQLite store into the (migrated, empty)
/// PostgreSQL database with `COPY … FROM STDIN`, secondary indexes dropped
/// meanwhile and built afterwards, identities moved past the copied ids.
fn copy_store(sqlite: &Path, url: &str) -> Res<Copy> {
    let started = Instant::now();
    let src = rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut dst = connect(url)?;
    // Foreign keys are the source's business: it is consistent already.
    dst.batch_execute("SET session_replication_role = replica")?;
    let tables: Vec<String> = src
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
             AND name <> 'schema_migrations' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let indexes: Vec<(String, String)> = dst
        .query(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema()
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, _) in &indexes {
        dst.batch_execute(&format!("DROP INDEX {name}"))?;
    }
    dst.batch_execute(&format!("TRUNCATE {} CASCADE", tables.join(", ")))?;
    let mut rows = BTreeMap::new();
    for table in &tables {
        let cols: Vec<String> = src
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
            .query_map([table], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let list = cols.join(", ");
        let mut writer = dst.copy_in(&format!("COPY {table} ({list}) FROM STDIN"))?;
        let mut stmt = src.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut q = stmt.query([])?;
        let (mut buf, mut n) = (Vec::with_capacity(1 << 20), 0u64);
        while let Some(row) = q.next()? {
            for i in 0..cols.len() {
                if i > 0 {
                    buf.push(b'\t');
                }
                encode(&row.get::<_, Value>(i)?, &mut buf);
            }
            buf.push(b'\n');
            n += 1;
            if buf.len() >= 1 << 20 {
                writer.write_all(&buf)?;
                buf.clear();
            }
        }
        writer.write_all(&buf)?;
        writer.finish()?;
        rows.insert(table.clone(), n);
        println!("  copied {table}: {n} rows ({:.0} s so far)", started.elapsed().as_secs_f64());
    }
    dst.batch_execute("SET session_replication_role = origin")?;
    let identities: Vec<(String, String)> = dst
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (t, c) in identities {
        dst.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)"
        ))?;
    }
    let copied = started.elapsed();
    let t = Instant::now();
    for (_, def) in &indexes {
        dst.batch_execute(def)?;
    }
    // Statistics and the visibility map, as autovacuum leaves a settled
    // database (index-only scans for the naive counts too).
    dst.batch_execute("VACUUM (ANALYZE)")?;
    Ok(Copy { seconds: copied.as_secs_f64(), index_seconds: t.elapsed().as_secs_f64(), rows })
}

/// The naive queries on PostgreSQL, in one repeatable-read transaction, raw
/// SQL through the driver.
fn naive_round(url: &str) -> Res<Vec<(Duration, Rows)>> {
    let mut c = connect(url)?;
    let mut tx =
        c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
    let mut out = Vec::new();
    for (_, sql) in NAIVE {
        let t = Instant::now();
        let rows = tx.query(*sql, &[])?;
        let rows: Rows = rows
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| match *r.columns()[i].type_() {
                        postgres::types::Type::TEXT => {
                            r.get::<_, Option<String>>(i).map(Value::Text).unwrap_or(Value::Null)
                        }
                        postgres::types::Type::INT4 => Value::Integer(r.get::<_, i32>(i).into()),
                        _ => r.get::<_, Option<i64>>(i).map(Value::Integer).unwrap_or(Value::Null),
                    })
                    .collect()
            })
            .collect();
        out.push((t.elapsed(), rows));
    }
    tx.commit()?;
    Ok(out)
}

async fn snapshot(pg_big: &Store, pg_url: &str, admin: &str, sqlite_big: &Path, data: &Path) -> Res<Snapshot> {
    let pg_empty = open(&fresh(admin, "bench_empty").await?, Options::default())?;
    let empty_path = data.join("pg-side-empty.db");
    crate::datagen::remove_db(&empty_path);
    let sqlite_empty =
        Store::open(&Location::Sqlite(empty_path.clone()), tokio::sync::broadcast::channel(16).0, Options::default())?;
    let sqlite_big = Store::open(
        &Location::Sqlite(sqlite_big.to_path_buf()),
        tokio::sync::broadcast::channel(16).0,
        Options::default(),
    )?;
    let stores = [&pg_empty, pg_big, &sqlite_empty, &sqlite_big];
    let snap = compute(pg_big, None).await;
    if let Some((name, _, _)) = snap.health().iter().find(|h| !h.1) {
        return Err(format!("the {name} collector failed on the big PostgreSQL store").into());
    }
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for s in stores {
        time_compute(s, 20, &mut Vec::new()).await;
    }
    for block in 0..BLOCKS {
        for k in 0..stores.len() {
            let i = (block + k) % stores.len();
            time_compute(stores[i], PER_BLOCK, &mut samples[i]).await;
        }
    }
    let [pe, pb, se, sb] = samples.map(|s| Timing::of(&s));
    println!(
        "  snapshot compute: PostgreSQL empty {:.0} µs, big {:.0} µs; SQLite empty {:.0} µs, big {:.0} µs",
        pe.median_us, pb.median_us, se.median_us, sb.median_us
    );
    let naive = naive_rounds(" on PostgreSQL,", NAIVE_ROUNDS, || {
        let url = pg_url.to_string();
        blocking(move || naive_round(&url))
    })
    .await?;
    drop((pg_empty, sqlite_empty, sqlite_big));
    crate::datagen::remove_db(&empty_path);
    Ok(Snapshot {
        ratio: naive.total.median_us / pb.median_us,
        big_over_empty: pb.median_us / pe.median_us,
        pg_over_sqlite: pb.median_us / sb.median_us,
        agreement: agreement(&snap, &naive.last),
        pg_empty: pe,
        pg_big: pb,
        sqlite_empty: se,
        sqlite_big: sb,
        naive: naive.queries,
        naive_total: naive.total,
    })
}

/// Every write path, sequential and in flight, on `a` against `b`.
async fn paths(a: &Store, b: &Store) -> Res<Vec<PathResult>> {
    let stores = [(a.clone(), Arc::new(writes::fixture(a).await?)), (b.clone(), Arc::new(writes::fixture(b).await?))];
    let mut out = Vec::new();
    for kind in Kind::ALL {
        for concurrent in [false, true] {
            out.push(writes::compare(kind, &stores, [kind, kind], concurrent).await?);
        }
    }
    Ok(out)
}

async fn write_paths(admin: &str, data: &Path) -> Res<(Vec<PathResult>, Vec<PathResult>)> {
    let pg = open(&fresh(admin, "bench_writes").await?, Options::default())?;
    let path: PathBuf = data.join("pg-side-writes.db");
    crate::datagen::remove_db(&path);
    let sqlite =
        Store::open(&Location::Sqlite(path.clone()), tokio::sync::broadcast::channel(16).0, Options::default())?;
    println!("  writes: PostgreSQL against SQLite");
    let against_sqlite = paths(&pg, &sqlite).await?;
    drop(sqlite);
    crate::datagen::remove_db(&path);
    drop(pg);
    let striped = open(&fresh(admin, "bench_writes_striped").await?, Options::default())?;
    let plain = open(&fresh(admin, "bench_writes_plain").await?, Options { counter_stripes: 1, ..Options::default() })?;
    println!("  writes on PostgreSQL: counters in 8 stripes against one row each");
    let striped = paths(&striped, &plain).await?;
    Ok((against_sqlite, striped))
}

pub async fn run(admin: &str, sqlite_big: &Path, data: &Path) -> Res<Report> {
    let server = {
        let admin = admin.to_string();
        blocking(move || Ok(connect(&admin)?.query_one("SHOW server_version", &[])?.get::<_, String>(0))).await?
    };
    let url = fresh(admin, "bench_big").await?;
    // Migrated by the daemon's own code, then filled.
    drop(open(&url, Options::default())?);
    println!("  copying the big store into PostgreSQL {server} with COPY");
    let copy = {
        let (src, url) = (sqlite_big.to_path_buf(), url.clone());
        blocking(move || copy_store(&src, &url)).await?
    };
    println!("  copied in {:.0} s, indexes built in {:.0} s", copy.seconds, copy.index_seconds);
    let big = open(&url, Options::default())?;
    let t = Instant::now();
    let drift = big.recount().await?;
    let recount_seconds = t.elapsed().as_secs_f64();
    println!("  start-up recount on the big store: {recount_seconds:.1} s, {} counters repaired", drift.len());
    let snapshot = snapshot(&big, &url, admin, sqlite_big, data).await?;
    drop(big);
    let (against_sqlite, striped) = write_paths(admin, data).await?;
    Ok(Report {
        server,
        pool: POOL,
        copy,
        snapshot,
        recount_seconds,
        recount_drift: drift.len(),
        against_sqlite,
        striped,
    })
}
