//! crewshipd: the control-plane daemon for crews of AI agents.
//!
//! Layers, outermost first: `api` (HTTP handlers), `metrics` (the
//! /metrics endpoint), `ws` (the event hub), `runtime` (long-running
//! workers), `store` (the only SQL), `domain` (rules, no I/O).

pub mod api;
pub mod bearer;
pub mod capture;
pub mod cli;
pub mod clientip;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod domain;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod store;
pub mod sync;
pub mod ws;
