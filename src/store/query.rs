//! A SELECT with only the filters a request gave, so SQLite can pick the
//! index that fits instead of scanning past `?n IS NULL OR …` clauses.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, Row, params_from_iter};

use crate::domain::Result;

pub struct Query {
    sql: String,
    args: Vec<SqlValue>,
}

impl Query {
    /// `select` ends in a FROM/JOIN clause; conditions are ANDed after it.
    pub fn new(select: &str) -> Query {
        Query { sql: format!("{select} WHERE 1 = 1"), args: Vec::new() }
    }

    /// Adds `AND <lhs>?n` with `value` bound to `?n` (`lhs` like `"s.id < "`).
    pub fn and(&mut self, lhs: &str, value: impl Into<SqlValue>) -> &mut Query {
        self.args.push(value.into());
        self.sql.push_str(&format!(" AND {lhs}?{}", self.args.len()));
        self
    }

    /// Runs the query with `ORDER BY <order> LIMIT limit`.
    pub fn fetch<T>(
        mut self,
        conn: &Connection,
        order: &str,
        limit: i64,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.args.push(limit.into());
        self.sql.push_str(&format!(" ORDER BY {order} LIMIT ?{}", self.args.len()));
        Ok(conn
            .prepare_cached(&self.sql)?
            .query_map(params_from_iter(self.args), map)?
            .collect::<rusqlite::Result<_>>()?)
    }
}
