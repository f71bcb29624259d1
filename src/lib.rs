//! Turns Prometheus Alertmanager notifications into SMS sent through the Sipgate REST API.
#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod escalation;
pub mod health;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod live;
pub mod log_sampler;
pub mod metrics;
pub mod model;
pub mod oncall;
pub mod panic;
pub mod pipeline;
pub mod provider;
pub mod ratelimit;
pub mod redact;
pub mod reload;
pub mod routing;
pub mod startup;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;
pub mod version;
pub mod watchdog;
