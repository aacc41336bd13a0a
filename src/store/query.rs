//! A SELECT with only the filters a request gave, so the database can pick
//! the index that fits instead of scanning past `?n IS NULL OR …` clauses.

use super::sql::{Arg, Db, Row};
use crate::domain::Result;

/// A value a filter compares with.
pub enum Value {
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

pub struct Query {
    sql: String,
    args: Vec<Value>,
}

impl Query {
    /// `select` ends in a FROM/JOIN clause; conditions are ANDed after it.
    pub fn new(select: &str) -> Query {
        Query { sql: format!("{select} WHERE 1 = 1"), args: Vec::new() }
    }

    /// Adds `AND <lhs>?n` with `value` bound to `?n` (`lhs` like `"s.id < "`).
    pub fn and(&mut self, lhs: &str, value: impl Into<Value>) -> &mut Query {
        self.args.push(value.into());
        self.sql.push_str(&format!(" AND {lhs}?{}", self.args.len()));
        self
    }

    /// Adds a condition without an argument (`deleted_at IS NULL`).
    pub fn and_sql(&mut self, condition: &str) -> &mut Query {
        self.sql.push_str(&format!(" AND {condition}"));
        self
    }

    /// Runs the query with `ORDER BY <order> LIMIT limit`.
    pub fn fetch<T>(
        mut self,
        db: &Db<'_>,
        order: &str,
        limit: i64,
        read: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.args.push(Value::Int(limit));
        self.sql.push_str(&format!(" ORDER BY {order} LIMIT ?{}", self.args.len()));
        let args: Vec<&dyn Arg> = self
            .args
            .iter()
            .map(|v| match v {
                Value::Int(i) => i as &dyn Arg,
                Value::Text(t) => t as &dyn Arg,
            })
            .collect();
        db.query(&self.sql, &args, read)
    }
}
