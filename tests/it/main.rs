//! Story tests: each starts the real `crewshipd` binary and drives it over
//! HTTP and WebSocket, as outside clients do.

mod common;

mod api_assignments;
mod api_crews;
mod api_docs;
mod api_errors;
mod api_journal;
mod api_paymaster;
mod api_pipelines;
mod api_reference;
mod api_runs;
mod archiving;
mod bounds;
mod cli;
mod containers;
mod containment;
mod counters;
mod durability;
mod fleet;
mod health;
mod layers;
mod metrics_auth;
mod metrics_cache;
mod metrics_format;
mod operator;
mod postgres;
mod prometheus_e2e;
mod readme_db;
mod recovery;
mod runtime_process;
mod runtime_queue;
mod security;
mod tools;
mod traces;
mod ws;
