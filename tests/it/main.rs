//! The integration tests: one binary, a module per area, all on one harness (`harness/`: a module
//! per concern, each re-exported, so that `use crate::harness::*;` brings all of it).

mod harness;

mod alertmanager;
mod alertmanager_api;
mod bad_input;
mod browser;
mod calendar;
mod cli;
mod delivery;
mod disk_faults;
mod escalation;
mod observability;
mod oncall;
mod operations;
mod pages;
mod process;
mod properties;
mod relay;
mod replicas;
mod senders;
mod state;
mod state_faults;
mod watchdog;
