//! One write operation's view of its transaction: where it runs its
//! statements, the events it publishes once committed, the counter changes
//! it has gathered, and one clock reading for every row it writes.

use std::collections::{BTreeMap, HashSet};
use std::ops::Deref;

use super::sql::Db;
use crate::domain::event::Event;

pub struct Tx<'c> {
    db: Db<'c>,
    pub(super) events: Vec<Event>,
    /// One clock reading per operation, so every row it writes agrees.
    pub now: i64,
    /// False only in the benchmark variant that measures what counter
    /// maintenance costs (`Options::maintain_counters`).
    counting: bool,
    pub(super) counted: Counted,
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
        Tx { db, events: Vec::new(), now, counting, counted: Counted::default(), stripe, folded }
    }

    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn counting(&self) -> bool {
        self.counting
    }
}

/// Counter changes gathered by operations, not yet written (`counters`
/// writes them once per transaction).
#[derive(Debug, Default)]
pub struct Counted(BTreeMap<(&'static str, String), i64>);

impl Counted {
    pub(super) fn add(&mut self, family: &'static str, label: &str, delta: i64) {
        *self.0.entry((family, label.to_string())).or_default() += delta;
    }

    pub(super) fn merge(&mut self, other: Counted) {
        for (key, delta) in other.0 {
            *self.0.entry(key).or_default() += delta;
        }
    }

    /// The changes that move a counter (those that cancelled out do not).
    pub(super) fn into_changes(self) -> impl Iterator<Item = ((&'static str, String), i64)> {
        self.0.into_iter().filter(|(_, delta)| *delta != 0)
    }
}
