//! `crewship llm …`: record an LLM call in the paymaster's ledger, and
//! show the rate card that prices calls recorded without a cost.

use clap::Subcommand;
use serde_json::Value;

use super::client::{Query, body};
use super::ctx::Ctx;
use super::error::Result;
use super::render::{Columns, View};

const RATES: Columns = &[
    ("PROVIDER", "provider"),
    ("MODEL", "model"),
    ("INPUT", "input"),
    ("OUTPUT", "output"),
    ("CACHED INPUT", "cached_input"),
    ("CACHE CREATION", "cache_creation"),
];

#[derive(Subcommand)]
pub enum LlmCmd {
    /// Record one LLM call (priced by the rate card unless --cost-usd).
    Record {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        #[arg(long, value_name = "N")]
        input_tokens: i64,
        #[arg(long, value_name = "N")]
        output_tokens: i64,
        #[arg(long, value_name = "N")]
        cached_input_tokens: Option<i64>,
        #[arg(long, value_name = "N")]
        cache_creation_tokens: Option<i64>,
        /// The call's cost as billed, instead of the rate card's price.
        #[arg(long, value_name = "USD")]
        cost_usd: Option<f64>,
        /// A call under a flat-rate plan: counted, at 0 USD.
        #[arg(long)]
        flat_rate: bool,
        #[arg(long)]
        crew: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// The run the call belongs to (its id).
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
    },
    /// The rate card: USD per million tokens, by provider and model prefix.
    Rates,
}

pub async fn run(ctx: &Ctx, cmd: LlmCmd) -> Result<()> {
    let c = &ctx.client;
    match cmd {
        LlmCmd::Record {
            provider,
            model,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_creation_tokens,
            cost_usd,
            flat_rate,
            crew,
            agent,
            run,
        } => {
            let call = body([
                ("provider", Some(provider.into())),
                ("model", Some(model.into())),
                ("input_tokens", Some(input_tokens.into())),
                ("output_tokens", Some(output_tokens.into())),
                ("cached_input_tokens", cached_input_tokens.map(Value::from)),
                ("cache_creation_tokens", cache_creation_tokens.map(Value::from)),
                ("cost_usd", cost_usd.map(Value::from)),
                ("billing_mode", flat_rate.then(|| "flat_rate".into())),
                ("crew", crew.map(Value::from)),
                ("agent", agent.map(Value::from)),
                ("run_id", run.map(Value::from)),
            ]);
            ctx.show(&c.post(&["llm-calls"], &call).await?, View::Record)
        }
        LlmCmd::Rates => {
            ctx.show(&c.get(&["paymaster", "rates"], &Query::default()).await?, View::Rows("rates", RATES))
        }
    }
}
