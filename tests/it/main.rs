//! The integration tests: one binary, one harness (`harness.rs`), a module per area.

mod harness;

mod alertmanager;
mod bad_input;
mod cli;
mod delivery;
mod disk_faults;
mod observability;
mod oncall;
mod operations;
mod process;
mod properties;
mod relay;
mod replicas;
mod senders;
mod state;
mod state_faults;
mod watchdog;
