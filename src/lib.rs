//! crewshipd: the control-plane daemon for crews of AI agents (its operator
//! CLI is the crate `crewship-cli`). The binary uses `daemon` and `config`;
//! the layers below them (docs/architecture.md) are private to the crate, and
//! `internals` is the one deliberate door the benchmarks and the story
//! tests use to reach below the HTTP API.

mod api;
mod bearer;
mod capture;
mod clientip;
pub mod config;
mod containers;
pub mod daemon;
mod domain;
mod latency;
mod metrics;
mod otel;
mod runtime;
mod server;
mod store;
mod sync;
mod ws;

/// What the benchmarks and story tests reach below the HTTP API: the store
/// and its tables, the rules, and the pieces of /metrics. Not a stable
/// interface.
pub mod internals {
    pub mod store {
        pub use crate::store::{
            Db, Location, Options, Store, Synchronous, Tx, agents, assignments, counters, crews, journal, ledger,
            migrations, pipelines, postgresql, recount, runs, snapshot, sqlite,
        };
    }

    pub mod domain {
        pub use crate::domain::{Result, event, pricing, provider, time};
    }

    pub mod latency {
        pub use crate::latency::{Histogram, RUN_BUCKETS};
    }

    pub mod metrics {
        pub use crate::metrics::{exposition, families, process, snapshot};
    }
}
