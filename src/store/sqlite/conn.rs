//! A SQLite connection behind the store's `Conn`: statements prepared once
//! and cached, values bound and read as the seam's `Value` and `Cell`, and
//! SQLite's errors mapped to `Fault`s.

use std::cell::RefCell;

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, ValueRef};

use crate::domain::{DomainError, Result};
use crate::store::fault::Fault;
use crate::store::sql::{Arg, Cell, Cells, Conn, Db, Dialect, Value};

pub(super) static DIALECT: Dialect =
    Dialect { now_ms: "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)", concurrent: None };

/// The fault behind a SQLite error.
pub(super) fn fault(e: rusqlite::Error) -> Fault {
    use rusqlite::ErrorCode::{
        ConstraintViolation, DatabaseBusy, DatabaseCorrupt, DatabaseLocked, DiskFull, NotADatabase,
    };
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => Fault::Busy(e.to_string()),
        Some(DiskFull) => Fault::DiskFull,
        Some(DatabaseCorrupt | NotADatabase) => Fault::Corrupt(e.to_string()),
        Some(ConstraintViolation) if e.to_string().starts_with("UNIQUE constraint failed: ") => {
            Fault::unique(e.to_string().trim_start_matches("UNIQUE constraint failed: "))
        }
        _ => Fault::other(e),
    }
}

/// A connection, remembering the fault behind its last error.
pub(super) struct SqliteConn<'c> {
    conn: &'c Connection,
    fault: RefCell<Option<Fault>>,
}

/// A bound argument, as rusqlite takes it.
struct Bound<'a>(&'a dyn Arg);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0.value() {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(n),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn bound<'a>(args: &'a [&'a dyn Arg]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(args.iter().map(|a| Bound(*a)))
}

impl Cells for rusqlite::Row<'_> {
    fn cell(&self, i: usize) -> Result<Cell<'_>> {
        let value = self.get_ref(i).map_err(|e| DomainError::internal(format!("column {i}: {e}")))?;
        Ok(match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(n) => Cell::Integer(n),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(b) => Cell::Text(b),
            ValueRef::Blob(b) => Cell::Blob(b),
        })
    }
}

impl<'c> SqliteConn<'c> {
    pub fn new(conn: &'c Connection) -> SqliteConn<'c> {
        SqliteConn { conn, fault: RefCell::new(None) }
    }

    /// The store's SQL interface on this connection.
    pub fn db(&self) -> Db<'_> {
        Db::new(self)
    }

    fn fail(&self, e: rusqlite::Error) -> DomainError {
        let fault = fault(e);
        *self.fault.borrow_mut() = Some(fault.clone());
        fault.into()
    }
}

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute(bound(args))).map_err(|e| self.fail(e))
    }

    fn insert(&self, sql: &str, _key: &str, args: &[&dyn Arg]) -> Result<i64> {
        // SQLite hands back the rowid without RETURNING (which costs an
        // ephemeral table per statement).
        self.conn.prepare_cached(sql).and_then(|mut s| s.insert(bound(args))).map_err(|e| self.fail(e))
    }

    fn query(&self, sql: &str, args: &[&dyn Arg], each: &mut dyn FnMut(&dyn Cells) -> Result<bool>) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.fail(e))?;
        let mut rows = stmt.query(bound(args)).map_err(|e| self.fail(e))?;
        while let Some(row) = rows.next().map_err(|e| self.fail(e))? {
            if !each(row)? {
                break;
            }
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| self.fail(e))
    }

    fn take_fault(&self) -> Option<Fault> {
        self.fault.borrow_mut().take()
    }
}
