//! crewshipd: the control-plane daemon for crews of AI agents.
//!
//! Layers, outermost first: `api` (HTTP handlers), `metrics` (the
//! /metrics endpoint), `ws` (the event hub), `runtime` (long-running
//! workers), `store` (the only SQL), `domain` (rules, no I/O).

pub mod clientip;
pub mod config;
pub mod domain;
pub mod store;
