//! Maintained counters always equal a recount from the base tables, and
//! the start-up check repairs (and reports) any drift.

use proptest::prelude::*;
use serde_json::json;

use crate::common::{Daemon, sample, script};

#[derive(Debug, Clone)]
enum Op {
    Crew,
    Agent { crew: usize, fails: bool },
    Assign { crew: usize, agent: usize },
    Cancel { assignment: usize },
    DeleteCrew { crew: usize },
    DeleteAgent { crew: usize, agent: usize },
    Budget { crew: usize, max: i64 },
    ReportedRun { status: usize },
    LlmCall { provider: usize, cents: u32 },
    Pipeline { crew: usize, dry: bool },
    Note,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Crew),
        2 => (0..4usize, any::<bool>()).prop_map(|(crew, fails)| Op::Agent { crew, fails }),
        6 => (0..4usize, 0..3usize).prop_map(|(crew, agent)| Op::Assign { crew, agent }),
        2 => (0..40usize).prop_map(|assignment| Op::Cancel { assignment }),
        1 => (0..4usize).prop_map(|crew| Op::DeleteCrew { crew }),
        1 => (0..4usize, 0..3usize).prop_map(|(crew, agent)| Op::DeleteAgent { crew, agent }),
        1 => (0..4usize, 1..4i64).prop_map(|(crew, max)| Op::Budget { crew, max }),
        2 => (0..5usize).prop_map(|status| Op::ReportedRun { status }),
        3 => (0..30usize, 0..500u32).prop_map(|(provider, cents)| Op::LlmCall { provider, cents }),
        1 => (0..4usize, any::<bool>()).prop_map(|(crew, dry)| Op::Pipeline { crew, dry }),
        1 => Just(Op::Note),
    ]
}

/// Applies one operation; rejected ones (a deleted crew, a finished
/// assignment) are part of the mix.
async fn apply(
    d: &Daemon,
    op: &Op,
    crews: &mut Vec<String>,
    assignments: &mut Vec<String>,
    ok: &str,
    bad: &str,
    n: usize,
) {
    let crew = |i: usize| crews.get(i % crews.len().max(1)).cloned().unwrap_or_else(|| "none".into());
    match op {
        Op::Crew => {
            let slug = format!("crew-{n}");
            d.post("/api/v1/crews", json!({"slug": slug, "name": "c", "max_concurrent_agents": 2})).await;
            crews.push(slug);
        }
        Op::Agent { crew: c, fails } => {
            let cmd = if *fails { bad } else { ok };
            d.post(
                &format!("/api/v1/crews/{}/agents", crew(*c)),
                json!({"slug": format!("a{n}"), "name": "a", "command": [cmd]}),
            )
            .await;
        }
        Op::Assign { crew: c, agent } => {
            let agents = d.get(&format!("/api/v1/crews/{}/agents", crew(*c))).await.body;
            if let Some(a) = agents["items"].as_array().and_then(|a| a.get(*agent % a.len().max(1))) {
                let r = d.post("/api/v1/assignments", json!({"crew": crew(*c), "agent": a["id"], "task": "t"})).await;
                if let Some(id) = r.body["id"].as_str() {
                    assignments.push(id.to_string());
                }
            }
        }
        Op::Cancel { assignment } => {
            if let Some(id) = assignments.get(*assignment % assignments.len().max(1)) {
                d.post(&format!("/api/v1/assignments/{id}/cancel"), json!({})).await;
            }
        }
        Op::DeleteCrew { crew: c } => {
            d.delete(&format!("/api/v1/crews/{}", crew(*c))).await;
        }
        Op::DeleteAgent { crew: c, agent } => {
            let agents = d.get(&format!("/api/v1/crews/{}/agents", crew(*c))).await.body;
            if let Some(a) = agents["items"].as_array().and_then(|a| a.get(*agent % a.len().max(1))) {
                d.delete(&format!("/api/v1/crews/{}/agents/{}", crew(*c), a["id"].as_str().unwrap())).await;
            }
        }
        Op::Budget { crew: c, max } => {
            d.patch(&format!("/api/v1/crews/{}", crew(*c)), json!({"max_concurrent_agents": max})).await;
        }
        Op::ReportedRun { status } => {
            let run = d.post("/api/v1/runs", json!({"trigger": "prop"})).await.body;
            let status = ["completed", "failed", "cancelled", "timeout", "running"][*status];
            if status != "running" {
                d.patch(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()), json!({"status": status})).await;
            }
        }
        Op::LlmCall { provider, cents } => {
            let name = if provider % 3 == 0 { format!("Provider-{provider}") } else { format!("provider-{provider}") };
            d.post(
                "/api/v1/llm-calls",
                json!({"provider": name, "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": f64::from(*cents) / 100.0}),
            )
            .await;
        }
        Op::Pipeline { crew: c, dry } => {
            let agents = d.get(&format!("/api/v1/crews/{}/agents", crew(*c))).await.body;
            if let Some(a) = agents["items"].as_array().and_then(|a| a.first()) {
                let slug = format!("pipe-{n}");
                let steps = json!([{"id": "s", "crew": crew(*c), "agent": a["id"], "task": "x"}]);
                d.post("/api/v1/pipelines", json!({"slug": slug, "name": "p", "steps": steps})).await;
                d.post(&format!("/api/v1/pipelines/{slug}/runs"), json!({"dry_run": dry})).await;
            }
        }
        Op::Note => {
            d.post("/api/v1/journal", json!({"entry_type": "note", "summary": "n"})).await;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn counters_match_a_recount_after_any_mix(ops in proptest::collection::vec(op(), 10..60)) {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let d = Daemon::start().await;
            let ok = script(d.data_dir(), "ok.sh", "cat >/dev/null; exit 0");
            let bad = script(d.data_dir(), "bad.sh", "exit 1");
            let (mut crews, mut assignments) = (Vec::new(), Vec::new());
            for (n, op) in ops.iter().enumerate() {
                apply(&d, op, &mut crews, &mut assignments, &ok, &bad, n).await;
            }
            // Restart cleanly (work in flight is requeued): the start-up
            // recount compares every counter with the base tables.
            let d = d.restart().await;
            let log = d.log();
            assert!(!log.contains("counter drift repaired"), "counters drifted from the base tables:\n{log}");
        });
    }
}

#[tokio::test]
async fn startup_check_repairs_a_corrupted_counter() {
    let d = Daemon::start().await;
    d.crew_with_agent("alpha", 1, "true").await;
    d.run_to_end("alpha", "worker", "t").await;
    d.ok(
        "/api/v1/llm-calls",
        json!({"provider": "p", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 1.5}),
        201,
    )
    .await;
    let db = d.database.clone();
    let (_, dir) = d.terminate().await;
    db.exec(
        "UPDATE counters SET value = value + 5 WHERE family = 'assignments' AND label = 'completed';
         UPDATE counters SET value = 0 WHERE family = 'run_events' AND label = 'started';
         UPDATE llm_series SET calls = 40, cost_nanos = 1 WHERE label = 'p';
         UPDATE crew_counts SET queued = 3;",
    )
    .await;

    let d = Daemon::start_in(dir, &[]).await;
    let page = d.metrics().await;
    assert_eq!(sample(&page, "crewshipd_assignments", Some(("status", "completed"))), Some(1.0));
    assert_eq!(sample(&page, "crewshipd_agent_run_events_total", Some(("event", "started"))), Some(1.0));
    assert_eq!(sample(&page, "crewshipd_llm_calls_total", Some(("provider", "p"))), Some(1.0));
    assert_eq!(sample(&page, "crewshipd_llm_cost_usd_total", Some(("provider", "p"))), Some(1.5));
    assert_eq!(sample(&page, "crewshipd_assignment_queue_depth_max", None), Some(0.0));
    let log = d.log();
    for counter in ["assignments/completed", "run_events/started", "llm_series/p/calls", "crew_counts/1/queued"] {
        assert!(log.contains("counter drift repaired") && log.contains(counter), "{counter} not reported:\n{log}");
    }
}
