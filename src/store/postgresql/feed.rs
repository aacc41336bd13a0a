//! The fleet's event feed: what a transaction publishes is written to
//! `fleet_events` in that transaction and announced with NOTIFY, ids only
//! (a payload is bounded). Every node LISTENs on a connection of its own
//! and publishes to its subscribers what any node committed, its own
//! included, in the order the commits were announced, which is commit
//! order: so a change made here never overtakes an earlier one made
//! elsewhere. A feed that broke is reconnected, and subscribers are told
//! to fetch again (`EventKind::Resync`): nothing is lost silently.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fallible_iterator::FallibleIterator;
use tokio::sync::broadcast;

use crate::domain::event::{Event, EventKind};
use crate::domain::{Result, time};
use crate::store::sql::{Db, args};

const CHANNEL: &str = "crewship_events";
/// NOTIFY refuses payloads of 8000 bytes and more.
const PAYLOAD_MAX: usize = 7_900;
/// How long the feed keeps an event (a node reads it within moments).
const KEEP: Duration = Duration::from_secs(600);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_millis(500);
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// Writes `events` to the feed and announces them, in the caller's
/// transaction: they reach the other nodes if and when it commits.
pub(super) fn publish(db: &Db<'_>, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(events.len());
    for e in events {
        seqs.push(db.insert(
            "INSERT INTO fleet_events (node, ts, event) VALUES (?1, ?2, ?3)",
            "seq",
            args![origin(), time::now_ms(), serde_json::to_string(e)?],
        )?);
    }
    let mut payload = String::new();
    for seq in seqs {
        let item = format!("{seq} ");
        if payload.len() + item.len() > PAYLOAD_MAX {
            db.execute("SELECT pg_notify(?1, ?2)", args![CHANNEL, payload])?;
            payload.clear();
        }
        payload.push_str(&item);
    }
    db.execute("SELECT pg_notify(?1, ?2)", args![CHANNEL, payload]).map(drop)
}

/// Who wrote an event, for whoever reads the table: the host and process.
fn origin() -> String {
    format!("{}:{}", std::env::var("HOSTNAME").unwrap_or_default(), std::process::id())
}

/// The seqs a payload announces.
fn announced(payload: &str) -> impl Iterator<Item = i64> + '_ {
    payload.split_whitespace().filter_map(|s| s.parse().ok())
}

/// Follows the feed until `stop`: the body of the listener's thread.
pub(super) fn listen(config: postgres::Config, events: broadcast::Sender<Arc<Event>>, stop: Arc<AtomicBool>) {
    let mut connected_before = false;
    let mut pruned = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut client = match config.connect(postgres::NoTls).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(RECONNECT_EVERY);
                continue;
            }
        };
        if connected_before {
            tracing::warn!("the fleet's event feed was interrupted; subscribers are told to fetch again");
            let _ = events.send(Arc::new(Event::new(EventKind::Resync, None, &serde_json::Value::Null)));
        }
        connected_before = true;
        while !stop.load(Ordering::Relaxed) {
            let mut seqs = Vec::new();
            let mut broken = false;
            // Wait for one announcement, then take what else has arrived.
            match client.notifications().timeout_iter(WAIT).next() {
                Ok(Some(n)) => seqs.extend(announced(n.payload())),
                Ok(None) => {}
                Err(_) => broken = true,
            }
            while !broken && !seqs.is_empty() && seqs.len() < 1024 {
                match client.notifications().iter().next() {
                    Ok(Some(n)) => seqs.extend(announced(n.payload())),
                    Ok(None) => break,
                    Err(_) => broken = true,
                }
            }
            if broken || client.is_closed() {
                break;
            }
            if !seqs.is_empty() && deliver(&mut client, &seqs, &events).is_err() {
                break;
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                if let Err(e) = prune(&mut client) {
                    tracing::warn!(error = %e, "cannot prune the fleet's event feed");
                }
            }
        }
    }
}

/// Publishes the events `seqs` names, in that order.
fn deliver(
    client: &mut postgres::Client,
    seqs: &[i64],
    events: &broadcast::Sender<Arc<Event>>,
) -> std::result::Result<(), postgres::Error> {
    let rows = client.query("SELECT seq, event FROM fleet_events WHERE seq = ANY($1)", &[&seqs])?;
    let mut by_seq: HashMap<i64, String> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut lost = false;
    for seq in seqs {
        match by_seq.remove(seq).map(|text| serde_json::from_str::<Event>(&text)) {
            Some(Ok(e)) => {
                // No subscribers is fine.
                let _ = events.send(Arc::new(e));
            }
            _ => lost = true,
        }
    }
    if lost {
        let _ = events.send(Arc::new(Event::new(EventKind::Resync, None, &serde_json::Value::Null)));
    }
    Ok(())
}

fn prune(client: &mut postgres::Client) -> std::result::Result<(), postgres::Error> {
    let before = time::now_ms() - KEEP.as_millis() as i64;
    let mut tx = client.transaction()?;
    let locked: bool =
        tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&crate::store::locks::EVENT_PRUNE])?.get(0);
    if locked {
        tx.execute("DELETE FROM fleet_events WHERE ts < $1", &[&before])?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_list_seqs() {
        assert_eq!(announced("4 5 6 ").collect::<Vec<_>>(), vec![4, 5, 6]);
    }
}
