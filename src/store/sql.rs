//! The table modules' one interface to SQL, whichever database runs it:
//! they say what to run, with which arguments, and how to read a row; the
//! backend (`sqlite`) prepares (and caches) the statement, binds, runs and
//! maps errors. No database driver type is named outside `store/`.

use crate::domain::{DomainError, Result};

/// A value bound to a statement parameter.
pub trait Arg: rusqlite::ToSql {}
impl<T: rusqlite::ToSql + ?Sized> Arg for T {}

/// A value read from a column.
pub trait Column: rusqlite::types::FromSql {}
impl<T: rusqlite::types::FromSql> Column for T {}

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
    conn: &'c rusqlite::Connection,
}

/// One row of a result.
pub struct Row<'r> {
    row: &'r rusqlite::Row<'r>,
}

fn bound<'a>(args: &'a [&'a dyn Arg]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(args.iter().map(|a| *a as &dyn rusqlite::ToSql))
}

impl<'c> Db<'c> {
    pub(super) fn sqlite(conn: &'c rusqlite::Connection) -> Db<'c> {
        Db { conn }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        Ok(self.conn.prepare_cached(sql)?.execute(bound(args))?)
    }

    /// Runs an INSERT; the new row's key (the column `key`, an integer).
    pub fn insert(&self, sql: &str, _key: &str, args: &[&dyn Arg]) -> Result<i64> {
        // SQLite hands back the rowid without RETURNING (which costs an
        // ephemeral table per statement).
        Ok(self.conn.prepare_cached(sql)?.insert(bound(args))?)
    }

    /// Every row of a query, each read by `read`.
    pub fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut read: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(bound(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read(&Row { row })?);
        }
        Ok(out)
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        read: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(bound(args))?;
        rows.next()?.map(|row| read(&Row { row })).transpose()
    }

    /// The first row of a query that always has one (an aggregate).
    pub fn query_one<T>(&self, sql: &str, args: &[&dyn Arg], read: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        self.query_opt(sql, args, read)?.ok_or_else(|| DomainError::internal(format!("no row from {sql}")))
    }

    /// Runs statements without arguments (DDL, pragmas).
    pub fn batch(&self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

impl Row<'_> {
    pub fn get<T: Column>(&self, i: usize) -> Result<T> {
        Ok(self.row.get(i)?)
    }

    /// A column as text whatever it holds (invalid UTF-8 replaced): for
    /// labels, which must never fail a read.
    pub fn text_lossy(&self, i: usize) -> Result<String> {
        use rusqlite::types::ValueRef;
        Ok(match self.row.get_ref(i)? {
            ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            ValueRef::Integer(n) => n.to_string(),
            ValueRef::Real(f) => f.to_string(),
            ValueRef::Null => String::new(),
        })
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
