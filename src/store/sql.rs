//! The table modules' one interface to SQL, whichever database runs it:
//! they say what to run, with which arguments, and how to read a row; the
//! backend (`sqlite`, `postgres`) prepares (and caches) the statement,
//! binds, runs and maps errors. Statements are written with `?N`
//! placeholders in the SQL both databases share. No database driver type
//! is named outside `store/`.

use super::postgres::PgConn;
use crate::domain::{DomainError, Result};

/// A value bound to a statement parameter.
pub trait Arg: rusqlite::ToSql + postgres::types::ToSql + Sync {}
impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> Arg for T {}

/// A value read from a column.
pub trait Column: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a> {}
impl<T: rusqlite::types::FromSql + for<'a> postgres::types::FromSql<'a>> Column for T {}

/// Arguments of a statement, in parameter order: `args![a, b]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::store::sql::Arg),*] as &[&dyn $crate::store::sql::Arg]
    };
}
pub(crate) use args;

/// A connection, or a transaction on one, to run statements on.
#[derive(Clone, Copy)]
pub struct Db<'c> {
    on: On<'c>,
}

#[derive(Clone, Copy)]
enum On<'c> {
    Sqlite(&'c rusqlite::Connection),
    Postgres(&'c PgConn),
}

/// How a SELECT locks what it reads (`Db::locking`).
#[derive(Debug, Clone, Copy)]
pub enum RowLock {
    /// Others writing or locking these rows wait.
    Update,
    /// Rows another transaction holds are left out.
    SkipLocked,
    /// Others may read-lock and update the rows, but not delete them, nor
    /// take them with `Update`.
    KeyShare,
}

/// One row of a result.
pub struct Row<'r> {
    row: RowOf<'r>,
}

enum RowOf<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

fn bound<'a>(args: &'a [&'a dyn Arg]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(args.iter().map(|a| *a as &dyn rusqlite::ToSql))
}

impl<'c> Db<'c> {
    pub(super) fn sqlite(conn: &'c rusqlite::Connection) -> Db<'c> {
        Db { on: On::Sqlite(conn) }
    }

    pub(super) fn postgres(conn: &'c PgConn) -> Db<'c> {
        Db { on: On::Postgres(conn) }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        match self.on {
            On::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(bound(args))?),
            On::Postgres(c) => c.execute(sql, args).map(|n| n as usize),
        }
    }

    /// Runs an INSERT; the new row's key (the column `key`, an integer).
    pub fn insert(&self, sql: &str, key: &str, args: &[&dyn Arg]) -> Result<i64> {
        match self.on {
            // SQLite hands back the rowid without RETURNING (which costs an
            // ephemeral table per statement).
            On::Sqlite(c) => Ok(c.prepare_cached(sql)?.insert(bound(args))?),
            On::Postgres(c) => {
                let rows = c.query(&format!("{sql} RETURNING {key}"), args)?;
                let row = rows.first().ok_or_else(|| DomainError::internal("an INSERT returned no row"))?;
                Row { row: RowOf::Postgres(row) }.get(0)
            }
        }
    }

    /// Every row of a query, each read by `read`.
    pub fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut read: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self.on {
            On::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(bound(args))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(read(&Row { row: RowOf::Sqlite(row) })?);
                }
                Ok(out)
            }
            On::Postgres(c) => c.query(sql, args)?.iter().map(|row| read(&Row { row: RowOf::Postgres(row) })).collect(),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        read: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.on {
            On::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(bound(args))?;
                rows.next()?.map(|row| read(&Row { row: RowOf::Sqlite(row) })).transpose()
            }
            On::Postgres(c) => {
                c.query(sql, args)?.first().map(|row| read(&Row { row: RowOf::Postgres(row) })).transpose()
            }
        }
    }

    /// The first row of a query that always has one (an aggregate).
    pub fn query_one<T>(&self, sql: &str, args: &[&dyn Arg], read: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        self.query_opt(sql, args, read)?.ok_or_else(|| DomainError::internal(format!("no row from {sql}")))
    }

    /// Runs statements without arguments (DDL, pragmas).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self.on {
            On::Sqlite(c) => Ok(c.execute_batch(sql)?),
            On::Postgres(c) => c.batch(sql),
        }
    }

    /// Runs `f` so that its failure leaves the transaction usable for what
    /// follows (PostgreSQL aborts a whole transaction at its first error;
    /// a savepoint confines it).
    pub fn isolated<T>(&self, f: impl FnOnce(&Db<'c>) -> Result<T>) -> Result<T> {
        match self.on {
            On::Sqlite(_) => f(self),
            On::Postgres(c) => {
                c.batch("SAVEPOINT isolated")?;
                let result = f(self);
                c.batch(if result.is_ok() { "RELEASE SAVEPOINT isolated" } else { "ROLLBACK TO SAVEPOINT isolated" })?;
                result
            }
        }
    }

    /// The database's clock as epoch milliseconds, as an SQL expression:
    /// every node of a fleet reads leases against the one clock.
    pub fn now_ms(&self) -> &'static str {
        match self.on {
            On::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            On::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The clause that ends a SELECT to lock the rows it reads (of table
    /// alias `of`) where transactions commit concurrently; nothing where one
    /// writer commits.
    pub fn locking(&self, lock: RowLock, of: &str) -> String {
        match self.on {
            On::Sqlite(_) => String::new(),
            On::Postgres(_) => match lock {
                RowLock::Update => format!(" FOR UPDATE OF {of}"),
                RowLock::SkipLocked => format!(" FOR UPDATE OF {of} SKIP LOCKED"),
                RowLock::KeyShare => format!(" FOR KEY SHARE OF {of}"),
            },
        }
    }

    /// Whether another transaction may commit beside this one (a fleet's
    /// database).
    pub fn concurrent(&self) -> bool {
        matches!(self.on, On::Postgres(_))
    }

    /// Takes `key` until the transaction ends if no other transaction
    /// holds it (always, where one writer commits).
    pub fn try_lock_for_transaction(&self, key: i64) -> Result<bool> {
        match self.on {
            On::Sqlite(_) => Ok(true),
            On::Postgres(_) => self.query_one("SELECT pg_try_advisory_xact_lock(?1)", args![key], |r| r.get(0)),
        }
    }

    /// Holds `key` until the transaction ends, against concurrent
    /// transactions doing the same (a no-op where one writer commits).
    pub fn lock_for_transaction(&self, key: i64) -> Result<()> {
        match self.on {
            On::Sqlite(_) => Ok(()),
            On::Postgres(c) => c.execute("SELECT pg_advisory_xact_lock(?1)", args![key]).map(drop),
        }
    }
}

impl Row<'_> {
    pub fn get<T: Column>(&self, i: usize) -> Result<T> {
        match &self.row {
            RowOf::Sqlite(r) => Ok(r.get(i)?),
            RowOf::Postgres(r) => r.try_get(i).map_err(|e| DomainError::internal(format!("column {i}: {e}"))),
        }
    }

    /// A column as text whatever it holds (invalid UTF-8 replaced): for
    /// labels, which must never fail a read.
    pub fn text_lossy(&self, i: usize) -> Result<String> {
        use rusqlite::types::ValueRef;
        match &self.row {
            RowOf::Sqlite(r) => Ok(match r.get_ref(i)? {
                ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
                ValueRef::Integer(n) => n.to_string(),
                ValueRef::Real(f) => f.to_string(),
                ValueRef::Null => String::new(),
            }),
            // PostgreSQL text is valid UTF-8 by construction.
            RowOf::Postgres(_) => Ok(self.get::<Option<String>>(i)?.unwrap_or_default()),
        }
    }

    /// A column holding the name of a `Named` value.
    pub fn named<T: crate::domain::named::Named>(&self, i: usize) -> Result<T> {
        let text: String = self.get(i)?;
        T::parse(&text).ok_or_else(|| DomainError::internal(format!("unknown value {text:?} in column {i}")))
    }

    /// A JSON column.
    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T> {
        let text: String = self.get(i)?;
        serde_json::from_str(&text).map_err(|e| DomainError::internal(format!("stored JSON in column {i}: {e}")))
    }
}
