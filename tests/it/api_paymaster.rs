//! The paymaster: pricing, flat-rate calls, spend reports.

use serde_json::json;

use crate::common::{Daemon, sample};

#[tokio::test]
async fn calls_are_priced_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("rates.json");
    std::fs::write(&card, r#"{"models":[{"provider":"acme","model":"rocket","input":2.0,"output":4.0}]}"#).unwrap();
    let d =
        Daemon::start_with(&[("CREWSHIP_RATE_CARD", card.to_str().unwrap()), ("CREWSHIP_METRICS_CACHE_TTL", "1ms")])
            .await;
    d.crew_with_agent("alpha", 1, "true").await;

    let priced = d
        .ok(
            "/api/v1/llm-calls",
            json!({"provider": "Anthropic", "model": "claude-sonnet-4-20250514", "input_tokens": 1_000_000, "output_tokens": 100_000,
                   "crew": "alpha", "agent": "worker"}),
            201,
        )
        .await;
    assert_eq!(priced["cost_usd"], 4.5);
    assert_eq!(priced["provider"], "anthropic");
    let overridden = d
        .ok(
            "/api/v1/llm-calls",
            json!({"provider": "acme", "model": "rocket-2", "input_tokens": 500_000, "output_tokens": 250_000}),
            201,
        )
        .await;
    assert_eq!(overridden["cost_usd"], 2.0);
    let given = d
        .ok(
            "/api/v1/llm-calls",
            json!({"provider": "ANTHROPIC", "model": "x", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.25}),
            201,
        )
        .await;
    assert_eq!(given["cost_usd"], 0.25);
    let flat = d
        .ok(
            "/api/v1/llm-calls",
            json!({"provider": "openai", "model": "gpt-4o", "input_tokens": 9, "output_tokens": 9, "billing_mode": "flat_rate", "cost_usd": 3}),
            201,
        )
        .await;
    assert_eq!(flat["cost_usd"], 0.0);
    let unknown = d
        .ok(
            "/api/v1/llm-calls",
            json!({"provider": "openai", "model": "mystery", "input_tokens": 9, "output_tokens": 9}),
            201,
        )
        .await;
    assert_eq!((unknown["cost_usd"].as_f64(), unknown["priced"].as_bool()), (Some(0.0), Some(false)));

    let by_provider = d.get("/api/v1/paymaster/spend?group_by=provider").await.body;
    let rows = by_provider["rows"].as_array().unwrap();
    let anthropic = rows.iter().find(|r| r["key"] == "anthropic").unwrap();
    assert_eq!((anthropic["calls"].as_i64(), anthropic["cost_usd"].as_f64()), (Some(2), Some(4.75)));
    assert_eq!(anthropic["input_tokens"], 1_000_001);
    assert_eq!(rows.iter().find(|r| r["key"] == "openai").unwrap()["calls"], 2);
    let by_crew = d.get("/api/v1/paymaster/spend?group_by=crew").await.body;
    assert!(by_crew["rows"].as_array().unwrap().iter().any(|r| r["key"] == "alpha" && r["calls"] == 1));
    let empty = d.get("/api/v1/paymaster/spend?since=2999-01-01T00:00:00Z").await.body;
    assert!(empty["rows"].as_array().unwrap().is_empty());
    assert_eq!(empty["since"], "2999-01-01T00:00:00.000Z");

    let page = d.metrics().await;
    assert_eq!(sample(&page, "crewshipd_llm_calls_total", Some(("provider", "anthropic"))), Some(2.0));
    assert_eq!(sample(&page, "crewshipd_llm_cost_usd_total", Some(("provider", "anthropic"))), Some(4.75));
    assert_eq!(sample(&page, "crewshipd_llm_calls_total", Some(("provider", "openai"))), Some(2.0));
    assert_eq!(sample(&page, "crewshipd_llm_cost_usd_total", Some(("provider", "acme"))), Some(2.0));
}

#[tokio::test]
async fn a_bad_rate_card_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("rates.json");
    std::fs::write(&card, "{not json").unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .env("CREWSHIP_DATA_DIR", dir.path())
        .env("CREWSHIP_PORT", "0")
        .env("CREWSHIP_RATE_CARD", &card)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate card"), "{}", String::from_utf8_lossy(&out.stderr));
}
