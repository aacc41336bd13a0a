//! `OTEL_TRACES_SAMPLER`, as the OpenTelemetry SDK specification defines
//! its built-in samplers. The ratio sampler decides from the trace id
//! alone, so every node (and an agent's own SDK) decides a run's trace
//! alike.

use super::context::TraceId;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Sample a fraction of traces, 0 to 1.
    Ratio(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    pub root: Root,
    /// Follow a remote parent's sampled flag (the `parentbased_*` ones).
    pub parent_based: bool,
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler { root: Root::AlwaysOn, parent_based: true }
    }
}

impl Sampler {
    /// The sampler named by `OTEL_TRACES_SAMPLER` with its argument.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Sampler, String> {
        let ratio = || -> Result<f64, String> {
            match arg {
                None => Ok(1.0),
                Some(a) => a
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={a:?}: expected a ratio from 0 to 1")),
            }
        };
        let (root, parent_based) = match name.trim().to_ascii_lowercase().as_str() {
            "always_on" => (Root::AlwaysOn, false),
            "always_off" => (Root::AlwaysOff, false),
            "traceidratio" => (Root::Ratio(ratio()?), false),
            "parentbased_always_on" => (Root::AlwaysOn, true),
            "parentbased_always_off" => (Root::AlwaysOff, true),
            "parentbased_traceidratio" => (Root::Ratio(ratio()?), true),
            other => {
                return Err(format!(
                    "unknown sampler {other:?}: use always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio"
                ));
            }
        };
        Ok(Sampler { root, parent_based })
    }

    /// Its name as `OTEL_TRACES_SAMPLER` spells it, with the ratio.
    pub fn describe(&self) -> String {
        let root = match self.root {
            Root::AlwaysOn => "always_on".to_string(),
            Root::AlwaysOff => "always_off".to_string(),
            Root::Ratio(r) => format!("traceidratio({r})"),
        };
        if self.parent_based { format!("parentbased_{root}") } else { root }
    }

    /// Whether a trace that starts here is recorded.
    pub fn root(&self, trace: &TraceId) -> bool {
        match self.root {
            Root::AlwaysOn => true,
            Root::AlwaysOff => false,
            Root::Ratio(r) => {
                // The specification's rule: the trace id's low 63 random
                // bits below the ratio's share of 2^63.
                let bound = (r * (1u64 << 63) as f64) as u64;
                let low = u64::from_be_bytes(trace[8..16].try_into().unwrap_or_default()) >> 1;
                low < bound
            }
        }
    }

    /// Whether a span under a parent that was (or was not) sampled is.
    pub fn child(&self, trace: &TraceId, parent_sampled: bool) -> bool {
        if self.parent_based { parent_sampled } else { self.root(trace) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_decisions() {
        assert_eq!(Sampler::parse("parentbased_always_on", None).unwrap(), Sampler::default());
        let zero = Sampler::parse("traceidratio", Some("0")).unwrap();
        let half = Sampler::parse("parentbased_traceidratio", Some("0.5")).unwrap();
        let low = [0u8; 16];
        let mut high = [0u8; 16];
        high[8] = 0xff;
        assert!(!zero.root(&low) && !zero.root(&high));
        assert!(!zero.child(&low, true), "not parent based");
        assert!(half.root(&low) && !half.root(&high));
        assert!(half.child(&high, true) && !half.child(&low, false));
        assert!(Sampler::parse("traceidratio", Some("1.5")).is_err());
        assert!(Sampler::parse("jaeger_remote", None).is_err());
        assert!(Sampler::parse("ALWAYS_OFF", None).is_ok_and(|s| !s.root(&low)));
        assert_eq!(half.describe(), "parentbased_traceidratio(0.5)");
    }
}
