//! The paymaster's cost ledger and its per-provider running totals.

use super::counters;
use super::sql::{Db, args};
use super::tx::Tx;
use crate::domain::Result;
use crate::domain::ids::{self, Kind};
use crate::domain::kinds::BillingMode;
use crate::domain::named::named_enum;
use crate::domain::pricing::{self, Tokens};
use crate::domain::types::{LlmCallRecorded, SpendRow};

#[derive(Debug, Clone)]
pub struct NewCall {
    /// Already normalized.
    pub provider: String,
    pub model: String,
    pub tokens: Tokens,
    pub cost_nanos: i64,
    /// False when no price was given and the rate card had none.
    pub priced: bool,
    pub billing_mode: BillingMode,
    pub crew_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub run_id: Option<String>,
}

/// Makes the rate card's providers known before their first call, so their
/// series are on /metrics at zero from the first scrape on.
pub fn announce_providers(tx: &mut Tx<'_>, providers: &[String]) -> Result<()> {
    counters::seed_series(tx, providers)
}

pub fn record(tx: &mut Tx<'_>, call: NewCall) -> Result<LlmCallRecorded> {
    let series = counters::llm_call(
        tx,
        &call.provider,
        counters::LlmDelta { cost_nanos: call.cost_nanos, tokens: call.tokens },
    )?;
    let t = call.tokens;
    let id = tx.insert(
        "INSERT INTO llm_calls (ts, provider, series, model, input_tokens, output_tokens, cached_input_tokens,
             cache_creation_tokens, cost_nanos, billing_mode, priced, crew_id, agent_id, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        "id",
        args![
            tx.now,
            call.provider,
            series,
            call.model,
            t.input,
            t.output,
            t.cached_input,
            t.cache_creation,
            call.cost_nanos,
            call.billing_mode.as_str(),
            call.priced,
            call.crew_id,
            call.agent_id,
            call.run_id
        ],
    )?;
    Ok(LlmCallRecorded {
        id: ids::format(Kind::LlmCall, id),
        provider: call.provider,
        model: call.model,
        cost_usd: pricing::nanos_to_usd(call.cost_nanos),
        priced: call.priced,
    })
}

pub fn run_exists(db: &Db<'_>, run_id: &str) -> Result<bool> {
    Ok(db.query_opt("SELECT 1 FROM runs WHERE id = ?1", args![run_id], |_| Ok(()))?.is_some())
}

named_enum!(
    /// What spend is reported by.
    GroupBy {
        Provider => "provider",
        Crew => "crew",
        Agent => "agent",
        Model => "model",
    }
);

impl GroupBy {
    fn key_sql(self) -> &'static str {
        match self {
            GroupBy::Provider => "l.provider",
            GroupBy::Crew => "c.slug",
            GroupBy::Agent => "a.slug",
            GroupBy::Model => "l.model",
        }
    }
}

/// Spend over `[since, until]`, most expensive first.
pub fn spend(db: &Db<'_>, group_by: GroupBy, since: Option<i64>, until: Option<i64>) -> Result<Vec<SpendRow>> {
    let sql = format!(
        "SELECT {key}, COUNT(*), CAST(SUM(l.cost_nanos) AS BIGINT), CAST(SUM(l.input_tokens) AS BIGINT),
                CAST(SUM(l.output_tokens) AS BIGINT)
         FROM llm_calls l LEFT JOIN crews c ON c.id = l.crew_id LEFT JOIN agents a ON a.id = l.agent_id
         WHERE l.ts >= ?1 AND l.ts <= ?2
         GROUP BY {key} ORDER BY 3 DESC, 1",
        key = group_by.key_sql()
    );
    db.query(&sql, args![since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX)], |r| {
        Ok(SpendRow {
            key: r.get(0)?,
            calls: r.get(1)?,
            cost_usd: pricing::nanos_to_usd(r.get(2)?),
            input_tokens: r.get(3)?,
            output_tokens: r.get(4)?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DomainError;
    use crate::store::{Location, Options, Store};

    fn call(input: i64) -> NewCall {
        NewCall {
            provider: "acme".into(),
            model: "m".into(),
            tokens: Tokens { input, ..Tokens::default() },
            cost_nanos: 1,
            priced: true,
            billing_mode: BillingMode::Metered,
            crew_id: None,
            agent_id: None,
            run_id: None,
        }
    }

    #[tokio::test]
    async fn a_call_past_a_series_total_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &Location::Sqlite(dir.path().join("t.db")),
            tokio::sync::broadcast::channel(8).0,
            Options::default(),
        )
        .unwrap();
        store.write(|tx| record(tx, call(1))).await.unwrap();
        // As if the series had taken in nearly all it may.
        let near = pricing::SERIES_TOTAL_MAX - 5;
        store.exclusive(move |db| db.execute("UPDATE llm_series SET input_tokens = ?1", args![near])).await.unwrap();
        let refused = store.write(|tx| record(tx, call(6))).await.unwrap_err();
        assert!(matches!(refused, DomainError::Invalid(ref m) if m.contains("bound")), "{refused}");
        // Exactly at the bound still fits.
        store.write(|tx| record(tx, call(5))).await.unwrap();
        let (calls, series) = store
            .read(|db| {
                let calls: i64 = db.query_one("SELECT COUNT(*) FROM llm_calls", args![], |r| r.get(0))?;
                let series = db.query_one("SELECT calls, input_tokens FROM llm_series", args![], |r| {
                    Ok((r.get::<i64>(0)?, r.get::<i64>(1)?))
                })?;
                Ok((calls, series))
            })
            .await
            .unwrap();
        assert_eq!(calls, 2, "the refused call left no row");
        assert_eq!(series, (2, pricing::SERIES_TOTAL_MAX));
    }
}
