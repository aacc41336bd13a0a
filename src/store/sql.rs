//! The table modules' one interface to SQL, whichever database runs it:
//! they say what to run, with which arguments, and how to read a row; a
//! backend's connection (`Conn`) prepares (and caches) the statement, binds,
//! runs and maps errors. Statements are written with `?N` placeholders in
//! the SQL both databases share. Arguments and columns cross the seam as
//! plain values (`Value`, `Cell`), so no driver is named outside its own
//! backend.

use super::fault::Fault;
use crate::domain::{DomainError, Result};

/// A statement parameter's value, as every backend can bind it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value bound to a statement parameter.
pub trait Arg: Sync {
    fn value(&self) -> Value<'_>;
}

macro_rules! integer_args {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn value(&self) -> Value<'_> {
                Value::Integer(i64::from(*self))
            }
        }
    )*};
}
integer_args!(i64, i32, u32, bool);

impl Arg for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Arg for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl Arg for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl Arg for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: Arg + ?Sized> Arg for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Arg> Arg for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, Arg::value)
    }
}

/// Arguments of a statement, in parameter order: `args![a, b]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        &[$(&$a as &dyn $crate::store::sql::Arg),*] as &[&dyn $crate::store::sql::Arg]
    };
}
pub(crate) use args;

/// A column's value in a row, as every backend can read it. Text is bytes:
/// SQLite does not promise UTF-8.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'r> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'r [u8]),
    Blob(&'r [u8]),
}

impl Cell<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Cell::Null => "NULL",
            Cell::Integer(_) => "an integer",
            Cell::Real(_) => "a real",
            Cell::Text(_) => "text",
            Cell::Blob(_) => "a blob",
        }
    }
}

/// A value read from a column.
pub trait Column: Sized {
    /// The value, or what the cell held instead.
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str>;
}

impl Column for i64 {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Integer(n) => Ok(n),
            other => Err(other.kind()),
        }
    }
}

impl Column for i32 {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        i32::try_from(i64::read(cell)?).map_err(|_| "an integer out of range")
    }
}

impl Column for u32 {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        u32::try_from(i64::read(cell)?).map_err(|_| "an integer out of range")
    }
}

impl Column for bool {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        i64::read(cell).map(|n| n != 0)
    }
}

impl Column for f64 {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Real(f) => Ok(f),
            // An aggregate over no rows, or a whole REAL, may come back as an
            // integer.
            Cell::Integer(n) => Ok(n as f64),
            other => Err(other.kind()),
        }
    }
}

impl Column for String {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Text(b) => String::from_utf8(b.to_vec()).map_err(|_| "text that is not UTF-8"),
            other => Err(other.kind()),
        }
    }
}

impl Column for Vec<u8> {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Blob(b) => Ok(b.to_vec()),
            other => Err(other.kind()),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn read(cell: Cell<'_>) -> std::result::Result<Self, &'static str> {
        match cell {
            Cell::Null => Ok(None),
            other => T::read(other).map(Some),
        }
    }
}

/// What differs in the SQL of a backend beyond what both share.
#[derive(Debug)]
pub(super) struct Dialect {
    /// The database's clock as epoch milliseconds.
    pub now_ms: &'static str,
    /// Where other transactions commit beside this one (a fleet's
    /// database), its advisory locks; rows are then locked as they are
    /// read, and failures confined by savepoints.
    pub concurrent: Option<AdvisoryLocks>,
}

/// Statements taking and releasing a lock named by the integer `?1`.
#[derive(Debug)]
pub(super) struct AdvisoryLocks {
    /// Held until the transaction ends.
    pub transaction: &'static str,
    /// The same, without waiting: one boolean column, whether it was taken.
    pub try_transaction: &'static str,
    /// Held until released, across transactions.
    pub session: &'static str,
    pub release_session: &'static str,
}

/// One row's columns, as a backend reads them.
pub(super) trait Cells {
    fn cell(&self, i: usize) -> Result<Cell<'_>>;
}

/// A backend's connection, or a transaction on one. Its errors are the
/// domain's, made from a `Fault` that it also keeps for the backend to
/// look at (`take_fault`).
pub(super) trait Conn {
    fn dialect(&self) -> &'static Dialect;
    /// The number of rows the statement changed.
    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize>;
    /// Runs an INSERT; the new row's key (the integer column `key`).
    fn insert(&self, sql: &str, key: &str, args: &[&dyn Arg]) -> Result<i64>;
    /// Hands each row to `each` until it answers false.
    fn query(&self, sql: &str, args: &[&dyn Arg], each: &mut dyn FnMut(&dyn Cells) -> Result<bool>) -> Result<()>;
    /// Statements without arguments (DDL, transaction control).
    fn batch(&self, sql: &str) -> Result<()>;
    /// The fault behind the last error, forgotten once taken.
    fn take_fault(&self) -> Option<Fault>;
}

/// A connection, or a transaction on one, to run statements on.
#[derive(Clone, Copy)]
pub struct Db<'c> {
    conn: &'c dyn Conn,
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
    cells: &'r dyn Cells,
}

impl<'c> Db<'c> {
    pub(super) fn new(conn: &'c dyn Conn) -> Db<'c> {
        Db { conn }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        self.conn.execute(sql, args)
    }

    /// Runs an INSERT; the new row's key (the column `key`, an integer).
    pub fn insert(&self, sql: &str, key: &str, args: &[&dyn Arg]) -> Result<i64> {
        self.conn.insert(sql, key, args)
    }

    /// Every row of a query, each read by `read`.
    pub fn query<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut read: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.conn.query(sql, args, &mut |cells| {
            out.push(read(&Row { cells })?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        read: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let (mut read, mut out) = (Some(read), None);
        self.conn.query(sql, args, &mut |cells| {
            if let Some(read) = read.take() {
                out = Some(read(&Row { cells })?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// The first row of a query that always has one (an aggregate).
    pub fn query_one<T>(&self, sql: &str, args: &[&dyn Arg], read: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        self.query_opt(sql, args, read)?.ok_or_else(|| DomainError::internal(format!("no row from {sql}")))
    }

    /// Runs statements without arguments (DDL, pragmas).
    pub fn batch(&self, sql: &str) -> Result<()> {
        self.conn.batch(sql)
    }

    /// Runs `f` so that its failure leaves the transaction usable for what
    /// follows (PostgreSQL aborts a whole transaction at its first error;
    /// a savepoint confines it). A fault confined so is forgotten.
    pub fn isolated<T>(&self, f: impl FnOnce(&Db<'c>) -> Result<T>) -> Result<T> {
        if !self.concurrent() {
            return f(self);
        }
        self.batch("SAVEPOINT isolated")?;
        let result = f(self);
        if result.is_ok() {
            self.batch("RELEASE SAVEPOINT isolated")?;
        } else {
            self.batch("ROLLBACK TO SAVEPOINT isolated")?;
            self.conn.take_fault();
        }
        result
    }

    /// The database's clock as epoch milliseconds, as an SQL expression:
    /// every node of a fleet reads leases against the one clock.
    pub fn now_ms(&self) -> &'static str {
        self.conn.dialect().now_ms
    }

    /// The clause that ends a SELECT to lock the rows it reads (of table
    /// alias `of`) where transactions commit concurrently; nothing where one
    /// writer commits.
    pub fn locking(&self, lock: RowLock, of: &str) -> String {
        if !self.concurrent() {
            return String::new();
        }
        match lock {
            RowLock::Update => format!(" FOR UPDATE OF {of}"),
            RowLock::SkipLocked => format!(" FOR UPDATE OF {of} SKIP LOCKED"),
            RowLock::KeyShare => format!(" FOR KEY SHARE OF {of}"),
        }
    }

    /// Whether another transaction may commit beside this one (a fleet's
    /// database).
    pub fn concurrent(&self) -> bool {
        self.conn.dialect().concurrent.is_some()
    }

    /// Takes `key` until the transaction ends if no other transaction
    /// holds it (always, where one writer commits).
    pub fn try_lock_for_transaction(&self, key: i64) -> Result<bool> {
        match &self.conn.dialect().concurrent {
            Some(locks) => self.query_one(locks.try_transaction, args![key], |r| r.get(0)),
            None => Ok(true),
        }
    }

    /// Holds `key` until the transaction ends, against concurrent
    /// transactions doing the same (a no-op where one writer commits).
    pub fn lock_for_transaction(&self, key: i64) -> Result<()> {
        match &self.conn.dialect().concurrent {
            Some(locks) => self.execute(locks.transaction, args![key]).map(drop),
            None => Ok(()),
        }
    }

    /// Runs `f` holding `key` for the session, against other sessions
    /// doing the same (the migrations of nodes starting at once).
    pub(super) fn with_session_lock<T>(&self, key: i64, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(locks) = &self.conn.dialect().concurrent else { return f() };
        self.execute(locks.session, args![key])?;
        let result = f();
        let released = self.execute(locks.release_session, args![key]);
        result.and_then(|value| released.map(|_| value))
    }

    /// The fault behind the last error, forgotten once taken.
    pub(super) fn take_fault(&self) -> Option<Fault> {
        self.conn.take_fault()
    }
}

impl Row<'_> {
    pub fn get<T: Column>(&self, i: usize) -> Result<T> {
        T::read(self.cells.cell(i)?).map_err(|found| DomainError::internal(format!("column {i} holds {found}")))
    }

    /// A column as text whatever it holds (invalid UTF-8 replaced): for
    /// labels, which must never fail a read.
    pub fn text_lossy(&self, i: usize) -> Result<String> {
        Ok(match self.cells.cell(i)? {
            Cell::Text(b) | Cell::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            Cell::Integer(n) => n.to_string(),
            Cell::Real(f) => f.to_string(),
            Cell::Null => String::new(),
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
