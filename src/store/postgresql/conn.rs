//! One PostgreSQL connection behind the store's `Conn`: statements prepared
//! once and kept, `?N` placeholders turned into PostgreSQL's `$N`, values
//! bound as the type each parameter was declared with, and driver errors
//! mapped to `Fault`s.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use crate::domain::{DomainError, Result};
use crate::store::fault::Fault;
use crate::store::sql::{AdvisoryLocks, Arg, Cell, Cells, Conn, Db, Dialect, Value};

static DIALECT: Dialect = Dialect {
    now_ms: "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    concurrent: Some(AdvisoryLocks {
        transaction: "SELECT pg_advisory_xact_lock(?1)",
        try_transaction: "SELECT pg_try_advisory_xact_lock(?1)",
        session: "SELECT pg_advisory_lock(?1)",
        release_session: "SELECT pg_advisory_unlock(?1)",
    }),
};

/// How long PostgreSQL lets a session sit idle inside a transaction before
/// it ends the session. This daemon runs a transaction's statements back
/// to back, so only a node that stopped mid-transaction (a paused process
/// or VM) idles there; its row locks would otherwise keep the fleet from
/// taking back its work for as long as it is paused.
const IDLE_IN_TRANSACTION: &str = "5s";

pub struct PgConn {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    fault: RefCell<Option<Fault>>,
}

/// `?1`-style placeholders (the SQL both backends share) as `$1`.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// The fault behind a driver error.
pub(super) fn fault(e: postgres::Error) -> Fault {
    let code = e.code().cloned();
    let said = || e.to_string().trim().to_string();
    match code {
        Some(SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED) => Fault::Aborted(said()),
        Some(SqlState::UNIQUE_VIOLATION) => {
            Fault::unique(e.as_db_error().and_then(|d| d.constraint()).unwrap_or_default())
        }
        // A NUL in a query parameter (a path or query string): the
        // client's input, not a fault of the database.
        Some(SqlState::CHARACTER_NOT_IN_REPERTOIRE | SqlState::UNTRANSLATABLE_CHARACTER) => Fault::BadText,
        Some(SqlState::DISK_FULL) => Fault::DiskFull,
        Some(SqlState::DATA_CORRUPTED | SqlState::INDEX_CORRUPTED) => Fault::Corrupt(said()),
        Some(
            SqlState::ADMIN_SHUTDOWN
            | SqlState::CRASH_SHUTDOWN
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::TOO_MANY_CONNECTIONS
            | SqlState::QUERY_CANCELED,
        ) => Fault::Busy(said()),
        _ if e.is_closed() || code.is_none() => Fault::ConnectionLost(said()),
        _ => match e.as_db_error() {
            // The driver's own message for a server error is only "db error".
            Some(db) => Fault::Other {
                message: format!("database error {}: {}", db.code().code(), db.message()),
                source: Some(std::sync::Arc::new(e)),
            },
            None => Fault::other(e),
        },
    }
}

/// An argument, bound as the type its parameter was declared with.
#[derive(Debug)]
struct Bound<'a>(Value<'a>);

impl ToSql for Bound<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.0, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Integer(n), &Type::INT8) => n.to_sql(ty, out),
            (Value::Integer(n), &Type::INT4) => i32::try_from(n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::INT2) => i16::try_from(n)?.to_sql(ty, out),
            (Value::Integer(n), &Type::BOOL) => (n != 0).to_sql(ty, out),
            (Value::Integer(n), &Type::FLOAT8) => (n as f64).to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (f as f32).to_sql(ty, out),
            (Value::Text(s), _) if <&str as ToSql>::accepts(ty) => s.to_sql(ty, out),
            (Value::Blob(b), &Type::BYTEA) => b.to_sql(ty, out),
            (value, _) => Err(format!("cannot bind {value:?} to a parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each value is checked against the parameter's type as it is bound.
        true
    }

    to_sql_checked!();
}

/// Runs `run` with `args` bound as parameters.
fn with_params<R>(args: &[&dyn Arg], run: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
    let bound: Vec<Bound<'_>> = args.iter().map(|a| Bound(a.value())).collect();
    let params: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    run(&params)
}

impl Cells for postgres::Row {
    fn cell(&self, i: usize) -> Result<Cell<'_>> {
        let ty = self.columns().get(i).map(|c| c.type_().clone());
        let read = |e: postgres::Error| DomainError::internal(format!("column {i}: {e}"));
        let cell = match ty {
            Some(Type::INT8) => self.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Integer)),
            Some(Type::INT4) => self.try_get::<_, Option<i32>>(i).map(|v| v.map(|n| Cell::Integer(n.into()))),
            Some(Type::INT2) => self.try_get::<_, Option<i16>>(i).map(|v| v.map(|n| Cell::Integer(n.into()))),
            Some(Type::BOOL) => self.try_get::<_, Option<bool>>(i).map(|v| v.map(|b| Cell::Integer(b.into()))),
            Some(Type::FLOAT8) => self.try_get::<_, Option<f64>>(i).map(|v| v.map(Cell::Real)),
            Some(Type::FLOAT4) => self.try_get::<_, Option<f32>>(i).map(|v| v.map(|f| Cell::Real(f.into()))),
            Some(Type::BYTEA) => self.try_get::<_, Option<&[u8]>>(i).map(|v| v.map(Cell::Blob)),
            Some(Type::VOID) => Ok(None),
            Some(ty) if <&str as postgres::types::FromSql>::accepts(&ty) => {
                self.try_get::<_, Option<&str>>(i).map(|v| v.map(|s| Cell::Text(s.as_bytes())))
            }
            Some(ty) => {
                return Err(DomainError::internal(format!("column {i} has type {ty}, which the store does not read")));
            }
            None => return Err(DomainError::internal(format!("no column {i}"))),
        };
        Ok(cell.map_err(read)?.unwrap_or(Cell::Null))
    }
}

impl PgConn {
    pub fn connect(config: &postgres::Config) -> std::result::Result<PgConn, Fault> {
        let mut client = config.connect(NoTls).map_err(|e| Fault::Unreachable(e.to_string().trim().to_string()))?;
        client
            .batch_execute(&format!("SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"))
            .map_err(fault)?;
        Ok(PgConn { client: RefCell::new(client), statements: RefCell::default(), fault: RefCell::new(None) })
    }

    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// The store's SQL interface on this connection.
    pub fn db(&self) -> Db<'_> {
        Db::new(self)
    }

    fn fail(&self, e: postgres::Error) -> DomainError {
        let fault = fault(e);
        *self.fault.borrow_mut() = Some(fault.clone());
        fault.into()
    }

    fn prepare(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.borrow_mut().prepare(&dollar_placeholders(sql)).map_err(|e| self.fail(e))?;
        self.statements.borrow_mut().insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn rows(&self, sql: &str, args: &[&dyn Arg]) -> Result<Vec<postgres::Row>> {
        let stmt = self.prepare(sql)?;
        with_params(args, |params| self.client.borrow_mut().query(&stmt, params)).map_err(|e| self.fail(e))
    }
}

impl Conn for PgConn {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize> {
        let stmt = self.prepare(sql)?;
        let n =
            with_params(args, |params| self.client.borrow_mut().execute(&stmt, params)).map_err(|e| self.fail(e))?;
        Ok(n as usize)
    }

    fn insert(&self, sql: &str, key: &str, args: &[&dyn Arg]) -> Result<i64> {
        let rows = self.rows(&format!("{sql} RETURNING {key}"), args)?;
        let row = rows.first().ok_or_else(|| DomainError::internal("an INSERT returned no row"))?;
        match row.cell(0)? {
            Cell::Integer(n) => Ok(n),
            other => Err(DomainError::internal(format!("an INSERT returned {other:?} as its key"))),
        }
    }

    fn query(&self, sql: &str, args: &[&dyn Arg], each: &mut dyn FnMut(&dyn Cells) -> Result<bool>) -> Result<()> {
        for row in self.rows(sql, args)? {
            if !each(&row)? {
                break;
            }
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<()> {
        self.client.borrow_mut().batch_execute(sql).map_err(|e| self.fail(e))
    }

    fn take_fault(&self) -> Option<Fault> {
        self.fault.borrow_mut().take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(dollar_placeholders("SELECT ?1, ?12 WHERE a = '?'"), "SELECT $1, $12 WHERE a = '?'");
    }
}
