//! Several write operations in one transaction: each in its own
//! savepoint, so a failing one rolls back alone while the rest share one
//! commit, and their counter changes written once. A backend that commits
//! in groups runs a group here, then commits and answers.

use std::collections::HashSet;

use super::backend::{Answer, Failure, Value, WriteFn, failure, guarded};
use super::counters;
use super::sql::Db;
use super::tx::{Counted, Tx};
use crate::domain::event::Event;
use crate::domain::time;

/// An operation that succeeded in the open transaction, with what it
/// publishes: answered once the transaction commits.
pub(super) type Done = (Answer, Value, Vec<Event>);

/// Answers each of `answers` with `failure`.
pub(super) fn answer_all(answers: impl IntoIterator<Item = Answer>, failure: &Failure) {
    for answer in answers {
        let _ = answer.send(Err(failure.clone()));
    }
}

/// Runs a group's operations in the open transaction, with the counter
/// changes of those that succeeded. Answers each failing operation; None
/// (every operation answered) when nothing is to be committed.
pub(super) fn run(
    db: &Db<'_>,
    group: Vec<(WriteFn, Answer)>,
    counting: bool,
    stripe: i64,
    folded: &mut HashSet<String>,
) -> Option<Vec<Done>> {
    // An operation alone in its transaction needs no savepoint: the
    // transaction itself rolls back if it fails.
    let alone = group.len() == 1;
    let (open, release, undo) =
        if alone { ("", "", "") } else { ("SAVEPOINT op", "RELEASE op", "ROLLBACK TO op; RELEASE op") };
    let mut done: Vec<Done> = Vec::with_capacity(group.len());
    let mut counted = Counted::default();
    let mut group = group.into_iter();
    while let Some((mut f, answer)) = group.next() {
        if let Err(e) = db.batch(open) {
            let _ = answer.send(Err(failure(db, e)));
            continue;
        }
        let mut op = Tx::new(*db, time::now_ms(), counting, stripe, folded);
        let result = guarded(db, || f(&mut op));
        let (events, pending) = (op.events, op.counted);
        let closed = match &result {
            Ok(_) => db.batch(release),
            Err(_) => db.batch(undo),
        };
        if let Err(e) = closed {
            // The transaction's state is unknown: give up the group rather
            // than commit it.
            let answers = done.into_iter().map(|(answer, _, _)| answer).chain([answer]);
            answer_all(answers.chain(group.map(|(_, answer)| answer)), &failure(db, e));
            return None;
        }
        match result {
            Ok(value) => {
                counted.merge(pending);
                done.push((answer, value, events));
            }
            Err(e) => {
                let _ = answer.send(Err(e));
                if alone {
                    return None;
                }
            }
        }
    }
    if let Err(e) = counters::write(db, counted, stripe) {
        answer_all(done.into_iter().map(|(answer, _, _)| answer), &failure(db, e));
        return None;
    }
    Some(done)
}
