//! The dispatcher: FIFO per crew, budgets never exceeded.

use std::collections::HashMap;

use serde_json::json;

use crate::common::{Daemon, script};

#[tokio::test]
async fn a_crew_runs_its_queue_in_fifo_order() {
    let d = Daemon::start().await;
    let log = d.data_dir().join("order.log");
    let agent = script(d.data_dir(), "order.sh", &format!("echo \"$CREWSHIP_ASSIGNMENT_ID\" >> {}", log.display()));
    d.ok("/api/v1/crews", json!({"slug": "fifo", "name": "F", "max_concurrent_agents": 1}), 201).await;
    d.ok("/api/v1/crews/fifo/agents", json!({"slug": "wk", "name": "W", "command": [agent]}), 201).await;
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let a = d.ok("/api/v1/assignments", json!({"crew": "fifo", "agent": "wk", "task": format!("t{i}")}), 201).await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        d.await_assignment(&mut ws, id, &["completed"]).await;
    }
    let order: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    assert_eq!(order, ids);
}

/// Each run marks itself present in its crew's directory, counts who is
/// there, and leaves: any count above the crew's budget is a violation.
#[tokio::test]
async fn budgets_hold_under_concurrent_submissions() {
    let d = Daemon::start().await;
    let budgets = [1, 2, 3, 1, 4];
    let body = r#"dir="$1"; touch "$dir/$CREWSHIP_RUN_ID"; ls "$dir" | grep -v '^max$' | wc -l >> "$dir/max"; sleep 0.05; rm "$dir/$CREWSHIP_RUN_ID""#;
    let agent = script(d.data_dir(), "count.sh", body);
    for (i, max) in budgets.iter().enumerate() {
        let slug = format!("crew-{i}");
        let dir = d.data_dir().join(&slug);
        std::fs::create_dir_all(&dir).unwrap();
        d.ok("/api/v1/crews", json!({"slug": slug, "name": "c", "max_concurrent_agents": max}), 201).await;
        d.ok(
            &format!("/api/v1/crews/{slug}/agents"),
            json!({"slug": "wk", "name": "W", "command": [agent, dir.to_str().unwrap()]}),
            201,
        )
        .await;
    }
    let mut ws = d.ws().await;
    ws.subscribe(&["assignments"]).await;
    let submissions = (0..200).map(|i| {
        let d = &d;
        async move {
            let crew = format!("crew-{}", i % budgets.len());
            d.ok("/api/v1/assignments", json!({"crew": crew, "agent": "wk", "task": "count"}), 201).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    });
    let ids = futures::future::join_all(submissions).await;
    for id in &ids {
        let a = d.await_assignment(&mut ws, id, &["completed", "failed"]).await;
        assert_eq!(a["status"], "completed", "{a}");
    }
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for (i, max) in budgets.iter().enumerate() {
        let counts = std::fs::read_to_string(d.data_dir().join(format!("crew-{i}")).join("max")).unwrap();
        let counts: Vec<usize> = counts.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(counts.len(), 40, "every run of crew-{i} counted");
        let peak = *counts.iter().max().unwrap();
        assert!(peak <= *max as usize, "crew-{i} ran {peak} at once with a budget of {max}");
        seen.insert(i, peak);
    }
    // The budget is used, not just respected: some crew with room for more
    // than one ran more than one at a time.
    assert!(seen.values().any(|p| *p > 1), "{seen:?}");
}
