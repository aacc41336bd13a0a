//! One PostgreSQL connection: statements prepared once and kept, `?N`
//! placeholders turned into PostgreSQL's `$N`, and driver errors mapped to
//! the domain's (remembering whether the transaction is worth running
//! again).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use crate::domain::{DomainError, Result};
use crate::store::sql::Arg;

/// How long PostgreSQL lets a session sit idle inside a transaction before
/// it ends the session. This daemon runs a transaction's statements back
/// to back, so only a node that stopped mid-transaction (a paused process
/// or VM) idles there; its row locks would otherwise keep the fleet from
/// taking back its work for as long as it is paused.
const IDLE_IN_TRANSACTION: &str = "5s";

pub struct PgConn {
    client: RefCell<Client>,
    statements: RefCell<HashMap<String, Statement>>,
    /// The last error was a deadlock or a serialization failure.
    retryable: Cell<bool>,
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

impl PgConn {
    pub fn connect(config: &postgres::Config) -> Result<PgConn> {
        let mut client = config
            .connect(NoTls)
            .map_err(|e| DomainError::Unavailable(format!("the database is unreachable: {}", e.to_string().trim())))?;
        client
            .batch_execute(&format!("SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"))
            .map_err(|e| DomainError::Unavailable(format!("cannot set up the database session: {e}")))?;
        Ok(PgConn { client: RefCell::new(client), statements: RefCell::default(), retryable: Cell::new(false) })
    }

    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// Whether the last error is worth running the transaction again for
    /// (and forgets it).
    pub fn take_retryable(&self) -> bool {
        self.retryable.replace(false)
    }

    fn map(&self, e: postgres::Error) -> DomainError {
        let code = e.code().cloned();
        if matches!(code, Some(SqlState::T_R_SERIALIZATION_FAILURE) | Some(SqlState::T_R_DEADLOCK_DETECTED)) {
            self.retryable.set(true);
            return DomainError::Unavailable(format!("the database aborted the transaction: {e}"));
        }
        match code {
            Some(SqlState::UNIQUE_VIOLATION) => {
                DomainError::conflict(e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
            }
            // A NUL in a query parameter (a path or query string): the
            // client's input, not a fault.
            Some(SqlState::CHARACTER_NOT_IN_REPERTOIRE | SqlState::UNTRANSLATABLE_CHARACTER) => {
                DomainError::invalid("text may not contain the NUL character (U+0000)")
            }
            Some(SqlState::DISK_FULL) => DomainError::Unavailable(super::super::sqlite::DISK_FULL.into()),
            Some(
                SqlState::ADMIN_SHUTDOWN
                | SqlState::CRASH_SHUTDOWN
                | SqlState::CANNOT_CONNECT_NOW
                | SqlState::TOO_MANY_CONNECTIONS
                | SqlState::QUERY_CANCELED,
            ) => DomainError::Unavailable(format!("the database is unavailable: {e}")),
            _ if e.is_closed() || code.is_none() => {
                DomainError::Unavailable(format!("the database connection was lost: {}", e.to_string().trim()))
            }
            _ => {
                // The driver's own message for a server error is only "db error".
                let message = match e.as_db_error() {
                    Some(db) => format!("database error {}: {}", db.code().code(), db.message()),
                    None => e.to_string(),
                };
                DomainError::Internal { message, source: Some(std::sync::Arc::new(e)) }
            }
        }
    }

    fn prepare(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.borrow_mut().prepare(&dollar_placeholders(sql)).map_err(|e| self.map(e))?;
        self.statements.borrow_mut().insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn params<'a>(args: &'a [&'a dyn Arg]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
        args.iter().map(|a| *a as &(dyn postgres::types::ToSql + Sync)).collect()
    }

    pub fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<u64> {
        let stmt = self.prepare(sql)?;
        self.client.borrow_mut().execute(&stmt, &Self::params(args)).map_err(|e| self.map(e))
    }

    pub fn query(&self, sql: &str, args: &[&dyn Arg]) -> Result<Vec<postgres::Row>> {
        let stmt = self.prepare(sql)?;
        self.client.borrow_mut().query(&stmt, &Self::params(args)).map_err(|e| self.map(e))
    }

    pub fn batch(&self, sql: &str) -> Result<()> {
        self.client.borrow_mut().batch_execute(sql).map_err(|e| self.map(e))
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
