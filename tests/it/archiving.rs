//! Journal archiving and retention: entries move, old ones go, counters stay.

use serde_json::Value;

use crate::common::{Daemon, PATIENCE, sample};
use crate::tools::{eventually, poll_for};

const HOUR_MS: i64 = 3_600_000;

async fn journal(d: &Daemon, query: &str) -> Vec<Value> {
    d.get(&format!("/api/v1/journal?limit=500{query}")).await.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn old_entries_move_then_expire_and_counters_never_drop() {
    let env = [
        ("CREWSHIP_JOURNAL_ARCHIVE_AFTER", "1h"),
        ("CREWSHIP_JOURNAL_RETENTION", "3h"),
        ("CREWSHIP_JOURNAL_ARCHIVE_INTERVAL", "50ms"),
        ("CREWSHIP_JOURNAL_ARCHIVE_BATCH", "3"),
        ("CREWSHIP_METRICS_CACHE_TTL", "1ms"),
    ];
    let d = Daemon::start_with(&env).await;
    d.crew_with_agent("alpha", 1, "true").await;
    let runs: Vec<Value> = {
        let mut v = Vec::new();
        for t in ["a", "b", "c"] {
            v.push(d.run_to_end("alpha", "worker", t).await);
        }
        v
    };
    let events_before = d.metrics().await;
    let total = journal(&d, "").await.len();
    let db = d.database.clone();
    let (_, dir) = d.terminate().await;

    // Back-date: the first run's entries are past retention, the second's
    // past the archive age, the third's stay recent.
    for (run, age) in [(&runs[0], 5 * HOUR_MS), (&runs[1], 2 * HOUR_MS)] {
        let run_id = run["run_id"].as_str().unwrap();
        db.exec(&format!("UPDATE journal SET ts = ts - {age} WHERE trace_id = '{run_id}'")).await;
    }

    let d = Daemon::start_in(dir, &env).await;
    let expired = format!("&trace_id={}", runs[0]["run_id"].as_str().unwrap());
    // The sweep is periodic with no event to await; poll its visible effect.
    eventually("retention to delete the oldest entries", PATIENCE, || async {
        journal(&d, &expired).await.is_empty().then_some(())
    })
    .await;
    let archived = journal(&d, &format!("&trace_id={}", runs[1]["run_id"].as_str().unwrap())).await;
    assert!(!archived.is_empty());
    assert!(archived.iter().all(|e| e["archived"] == true), "{archived:?}");
    let types: Vec<&str> = archived.iter().map(|e| e["entry_type"].as_str().unwrap()).collect();
    assert!(types.contains(&"run.started") && types.contains(&"run.completed"));
    let recent = journal(&d, &format!("&trace_id={}", runs[2]["run_id"].as_str().unwrap())).await;
    assert!(!recent.is_empty() && recent.iter().all(|e| e["archived"] == false));
    // One history, newest first, across both tables.
    let all = journal(&d, "").await;
    assert!(all.len() < total + 10 && all.len() > archived.len());
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_str().unwrap()[4..].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // Counters are running totals: archiving and pruning change nothing.
    let page = d.metrics().await;
    for event in ["started", "completed"] {
        let before = sample(&events_before, "crewshipd_agent_run_events_total", Some(("event", event)));
        assert_eq!(sample(&page, "crewshipd_agent_run_events_total", Some(("event", event))), before);
        assert_eq!(before, Some(3.0));
    }
}

/// A quiet journal, every entry past the archive age: the newest stays live,
/// so entries written afterwards never reuse an archived id.
#[tokio::test]
async fn ids_stay_unique_when_every_entry_is_old() {
    let env = [
        ("CREWSHIP_JOURNAL_ARCHIVE_AFTER", "1h"),
        ("CREWSHIP_JOURNAL_ARCHIVE_INTERVAL", "50ms"),
        ("CREWSHIP_JOURNAL_ARCHIVE_BATCH", "2"),
    ];
    let d = Daemon::start_with(&env).await;
    d.crew_with_agent("alpha", 1, "true").await;
    d.run_to_end("alpha", "worker", "a").await;
    let total = journal(&d, "").await.len();
    let db = d.database.clone();
    let (_, dir) = d.terminate().await;
    db.exec(&format!("UPDATE journal SET ts = ts - {}", 2 * HOUR_MS)).await;

    let d = Daemon::start_in(dir, &env).await;
    let live = |items: &[Value]| items.iter().filter(|e| e["archived"] == false).count();
    // The sweep is periodic with no event to await; poll its visible effect.
    let caught_up = poll_for(PATIENCE, || async {
        let items = journal(&d, "").await;
        if items.len() > total || live(&items) > 1 { Err(items) } else { Ok(items) }
    });
    let items = caught_up.await.unwrap_or_else(|items| panic!("archiving never caught up: {items:?}"));
    assert_eq!(live(&items), 1, "{items:?}");
    let posted =
        d.ok("/api/v1/journal", serde_json::json!({"entry_type": "agent.note", "summary": "still here"}), 201).await;
    let all = journal(&d, "").await;
    assert_eq!(all.len(), total + 1);
    assert_eq!(all[0]["id"], posted["id"], "the new entry is the newest: {all:?}");
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_str().unwrap()[4..].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
}
