//! The rate card: USD per million tokens by provider and model, priced in
//! integer nano-dollars so sums never drift.

use serde::Deserialize;

use super::{DomainError, Result};
pub use crewship_wire::answers::Rate;

pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Tokens of one type one call may report.
pub const MAX_TOKENS_PER_CALL: i64 = 1_000_000_000;
/// What one call may cost, given or priced.
pub const MAX_USD_PER_CALL: f64 = 10_000_000.0;
const MAX_NANOS_PER_CALL: i128 = 10_000_000 * NANOS_PER_USD as i128;
/// A rate card price (USD per million tokens) may not exceed this: a
/// hundred times today's dearest list price, and far from any overflow.
pub const MAX_PRICE_PER_MILLION: f64 = 10_000.0;
/// Bound of every running total of one LLM series (its cost in nano-USD,
/// its tokens of each type): 2^58, so that the sum over all 25 series still
/// fits an i64, and no sum over calls (spend reports, the recount) can
/// overflow. 2^58 nano-USD is about 288 million USD.
pub const SERIES_TOTAL_MAX: i64 = 1 << 58;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cached_input: i64,
    pub cache_creation: i64,
}

/// Summing series (`other` gathers several when rendering), saturating:
/// a table written by hand could hold more than the 25 bounded rows.
impl std::ops::AddAssign for Tokens {
    fn add_assign(&mut self, t: Tokens) {
        self.input = self.input.saturating_add(t.input);
        self.output = self.output.saturating_add(t.output);
        self.cached_input = self.cached_input.saturating_add(t.cached_input);
        self.cache_creation = self.cache_creation.saturating_add(t.cache_creation);
    }
}

#[derive(Debug, Clone)]
pub struct RateCard {
    rates: Vec<Rate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateCardFile {
    models: Vec<Rate>,
}

/// List prices (USD per million tokens) for common models.
const DEFAULTS: &[(&str, &str, f64, f64, f64, f64)] = &[
    ("anthropic", "claude-opus-4", 15.0, 75.0, 1.5, 18.75),
    ("anthropic", "claude-sonnet-4", 3.0, 15.0, 0.3, 3.75),
    ("anthropic", "claude-3-7-sonnet", 3.0, 15.0, 0.3, 3.75),
    ("anthropic", "claude-3-5-sonnet", 3.0, 15.0, 0.3, 3.75),
    ("anthropic", "claude-haiku-4", 1.0, 5.0, 0.1, 1.25),
    ("anthropic", "claude-3-5-haiku", 0.8, 4.0, 0.08, 1.0),
    ("anthropic", "claude-3-haiku", 0.25, 1.25, 0.03, 0.3),
    ("openai", "gpt-5", 1.25, 10.0, 0.125, 1.25),
    ("openai", "gpt-5-mini", 0.25, 2.0, 0.025, 0.25),
    ("openai", "gpt-4.1", 2.0, 8.0, 0.5, 2.0),
    ("openai", "gpt-4.1-mini", 0.4, 1.6, 0.1, 0.4),
    ("openai", "gpt-4o", 2.5, 10.0, 1.25, 2.5),
    ("openai", "gpt-4o-mini", 0.15, 0.6, 0.075, 0.15),
    ("openai", "o3", 2.0, 8.0, 0.5, 2.0),
    ("openai", "o4-mini", 1.1, 4.4, 0.275, 1.1),
    ("google", "gemini-2.5-pro", 1.25, 10.0, 0.31, 1.25),
    ("google", "gemini-2.5-flash", 0.3, 2.5, 0.075, 0.3),
    ("google", "gemini-2.0-flash", 0.1, 0.4, 0.025, 0.1),
];

fn per_million_nanos(usd: f64) -> i128 {
    (usd * NANOS_PER_USD as f64).round() as i128
}

impl Default for RateCard {
    fn default() -> Self {
        let rates = DEFAULTS
            .iter()
            .map(|&(provider, model, input, output, cached, creation)| Rate {
                provider: provider.into(),
                model: model.into(),
                input,
                output,
                cached_input: Some(cached),
                cache_creation: Some(creation),
            })
            .collect();
        RateCard { rates }
    }
}

impl RateCard {
    /// Every rate, in the card's order.
    pub fn rates(&self) -> &[Rate] {
        &self.rates
    }

    /// The providers the card prices, each once, in the card's order.
    pub fn providers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rates {
            if !out.contains(&r.provider) {
                out.push(r.provider.clone());
            }
        }
        out
    }

    /// The defaults, with the file's entries replacing or adding models.
    pub fn with_overrides(json: &str) -> Result<RateCard> {
        let file: RateCardFile =
            serde_json::from_str(json).map_err(|e| DomainError::invalid(format!("rate card: {e}")))?;
        let mut card = RateCard::default();
        for mut rate in file.models {
            rate.provider = rate.provider.trim().to_lowercase();
            rate.model = rate.model.trim().to_lowercase();
            let prices = [Some(rate.input), Some(rate.output), rate.cached_input, rate.cache_creation];
            if prices.iter().flatten().any(|p| !p.is_finite() || !(0.0..=MAX_PRICE_PER_MILLION).contains(p)) {
                return Err(DomainError::invalid(format!(
                    "rate card: prices of {}/{} must be numbers from 0 to {MAX_PRICE_PER_MILLION} (USD per million \
                     tokens)",
                    rate.provider, rate.model
                )));
            }
            card.rates.retain(|r| !(r.provider == rate.provider && r.model == rate.model));
            card.rates.push(rate);
        }
        Ok(card)
    }

    /// The longest matching model prefix of the (normalized) provider.
    pub fn rate(&self, provider: &str, model: &str) -> Option<&Rate> {
        let model = model.trim().to_lowercase();
        self.rates
            .iter()
            .filter(|r| r.provider == provider && model.starts_with(&r.model))
            .max_by_key(|r| r.model.len())
    }

    /// Cost in nano-USD (None when the card has no price for the model), or
    /// an error when it is over the per-call bound. Tokens are within
    /// `MAX_TOKENS_PER_CALL` and prices within `MAX_PRICE_PER_MILLION`, so
    /// the i128 arithmetic cannot overflow.
    pub fn price(&self, provider: &str, model: &str, t: Tokens) -> Result<Option<i64>> {
        let Some(r) = self.rate(provider, model) else { return Ok(None) };
        let total = i128::from(t.input) * per_million_nanos(r.input)
            + i128::from(t.output) * per_million_nanos(r.output)
            + i128::from(t.cached_input) * per_million_nanos(r.cached_input.unwrap_or(r.input))
            + i128::from(t.cache_creation) * per_million_nanos(r.cache_creation.unwrap_or(r.input));
        // Round half up to the nearest nano-dollar.
        let nanos = (total + 500_000) / 1_000_000;
        if nanos > MAX_NANOS_PER_CALL {
            return Err(DomainError::invalid(format!(
                "this call prices at {} USD, over the bound of {MAX_USD_PER_CALL} USD per call",
                nanos / i128::from(NANOS_PER_USD)
            )));
        }
        Ok(Some(nanos as i64))
    }
}

/// Tokens of one type in one call: 0 to `MAX_TOKENS_PER_CALL`.
pub fn check_tokens(field: &str, n: i64) -> Result<()> {
    if !(0..=MAX_TOKENS_PER_CALL).contains(&n) {
        return Err(DomainError::invalid(format!("{field} must be from 0 to {MAX_TOKENS_PER_CALL}")));
    }
    Ok(())
}

/// Converts a client-given USD amount to nano-USD.
pub fn usd_to_nanos(usd: f64) -> Result<i64> {
    if !usd.is_finite() || !(0.0..=MAX_USD_PER_CALL).contains(&usd) {
        return Err(DomainError::invalid(format!("cost_usd must be a number from 0 to {MAX_USD_PER_CALL}")));
    }
    Ok((usd * NANOS_PER_USD as f64).round() as i64)
}

pub fn nanos_to_usd(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_by_longest_prefix() {
        let card = RateCard::default();
        let t = Tokens { input: 1_000_000, output: 1_000_000, ..Tokens::default() };
        assert_eq!(card.price("openai", "gpt-4o-mini-2024-07-18", t).unwrap(), Some(750_000_000));
        assert_eq!(card.price("openai", "GPT-4o", t).unwrap(), Some(12_500_000_000));
        assert_eq!(
            card.price(
                "anthropic",
                "claude-sonnet-4-20250514",
                Tokens { input: 1000, output: 500, cached_input: 2000, cache_creation: 100 }
            )
            .unwrap(),
            // 1000*3 + 500*15 + 2000*0.3 + 100*3.75 micro-USD = 11475 micro-USD
            Some(11_475_000)
        );
        assert_eq!(card.price("anthropic", "unknown-model", t).unwrap(), None);
        assert_eq!(card.price("nobody", "gpt-4o", t).unwrap(), None);
        // The most a call can report, at the dearest price a card may hold:
        // refused as over the per-call bound, never wrapped around.
        let card =
            RateCard::with_overrides(r#"{"models":[{"provider":"acme","model":"m","input":10000,"output":10000}]}"#)
                .unwrap();
        let most = Tokens { input: MAX_TOKENS_PER_CALL, output: MAX_TOKENS_PER_CALL, ..Tokens::default() };
        assert!(card.price("acme", "m", most).is_err());
    }

    #[test]
    fn overrides_replace_and_add() {
        let card = RateCard::with_overrides(
            r#"{"models":[{"provider":"OpenAI","model":"gpt-4o","input":1,"output":2},
                           {"provider":"acme","model":"m","input":0.5,"output":0.5}]}"#,
        )
        .unwrap();
        let t = Tokens { input: 1_000_000, output: 1_000_000, ..Tokens::default() };
        assert_eq!(card.price("openai", "gpt-4o", t).unwrap(), Some(3_000_000_000));
        assert_eq!(card.price("acme", "m-large", t).unwrap(), Some(1_000_000_000));
        assert!(
            RateCard::with_overrides(r#"{"models":[{"provider":"a","model":"b","input":-1,"output":0}]}"#).is_err()
        );
        assert!(RateCard::with_overrides("nonsense").is_err());
        let huge = r#"{"models":[{"provider":"a","model":"b","input":1e300,"output":0}]}"#;
        assert!(RateCard::with_overrides(huge).unwrap_err().to_string().contains("10000"));
    }

    #[test]
    fn usd_conversion() {
        assert_eq!(usd_to_nanos(0.75).unwrap(), 750_000_000);
        assert!(usd_to_nanos(-1.0).is_err());
        assert!(usd_to_nanos(1e9).is_err());
        assert_eq!(usd_to_nanos(MAX_USD_PER_CALL).unwrap(), 10_000_000 * NANOS_PER_USD);
        assert_eq!(nanos_to_usd(1_500_000_000), 1.5);
    }
}
