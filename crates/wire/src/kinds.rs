//! The small closed vocabularies of entities: how a crew's agents run, an
//! agent's role, a journal entry's severity, how an LLM call is billed.

use crate::named_enum;

named_enum!(
    /// Where a crew's agents run.
    Runtime {
        /// As child processes of the daemon.
        Local => "local",
        /// As execs in the crew's container.
        Docker => "docker",
    }
);

named_enum!(
    /// An agent's role in its crew (at most one live lead).
    Role {
        Lead => "lead",
        Agent => "agent",
    }
);

named_enum!(
    Severity {
        Debug => "debug",
        Info => "info",
        Warning => "warning",
        Error => "error",
    }
);

named_enum!(
    /// How an LLM call is paid: per token, or under a flat rate (0 USD a
    /// call, counted all the same).
    BillingMode {
        Metered => "metered",
        FlatRate => "flat_rate",
    }
);

named_enum!(
    /// Whether a fleet node's lease is current.
    LeaseState {
        Live => "live",
        Expired => "expired",
    }
);
