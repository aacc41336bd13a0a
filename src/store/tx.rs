//! One write operation's view of its transaction: where it runs its
//! statements, the events it publishes once committed, the counter changes
//! it has gathered, and one clock reading for every row it writes.

use std::any::Any;
use std::collections::HashSet;
use std::ops::Deref;

use super::counters::Pending;
use super::sql::Db;
use crate::domain::Result;
use crate::domain::event::Event;

/// What a backend hands back from a job, typed again by `Store`.
pub(super) type Value = Box<dyn Any + Send>;
/// A write operation: run again if its transaction is aborted.
pub(super) type WriteFn = Box<dyn FnMut(&mut Tx<'_>) -> Result<Value> + Send>;
/// Work in a transaction of its own (the recount, maintenance).
pub(super) type ExclusiveFn = Box<dyn FnOnce(&Db<'_>) -> Result<Value> + Send>;

pub struct Tx<'c> {
    db: Db<'c>,
    pub(super) events: Vec<Event>,
    /// One clock reading per operation, so every row it writes agrees.
    pub now: i64,
    /// False only in the benchmark variant that measures what counter
    /// maintenance costs (`Options::maintain_counters`).
    counting: bool,
    pub(super) pending: Pending,
    /// Which slot of each striped counter this operation adds to.
    pub(super) stripe: i64,
    /// Providers known to count under `other` (a decision for good).
    pub(super) folded: &'c mut HashSet<String>,
}

impl<'c> Deref for Tx<'c> {
    type Target = Db<'c>;
    fn deref(&self) -> &Db<'c> {
        &self.db
    }
}

impl<'c> Tx<'c> {
    pub(super) fn new(db: Db<'c>, now: i64, counting: bool, stripe: i64, folded: &'c mut HashSet<String>) -> Tx<'c> {
        Tx { db, events: Vec::new(), now, counting, pending: Pending::default(), stripe, folded }
    }

    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn counting(&self) -> bool {
        self.counting
    }
}
