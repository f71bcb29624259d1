//! Turns Prometheus Alertmanager notifications into SMS sent through the Sipgate REST API.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod clock;
pub mod compose;
pub mod config;
pub mod delivery;
pub mod health;
pub mod log_sampler;
pub mod matcher;
pub mod metrics;
pub mod oncall;
pub mod outcome;
pub mod payload;
pub mod pipeline;
pub mod plural;
pub mod probe;
pub mod provider;
pub mod ratelimit;
pub mod redact;
pub mod routing;
pub mod server;
pub mod shifts;
pub mod sms;
pub mod state;
pub mod template;
pub mod template_fields;
pub mod template_syntax;
pub mod test_sms;
pub mod timeinterval;
pub mod version;
pub mod watchdog;
