//! Webhook bodies come straight off the network: parsing any bytes, as Alertmanager's or Grafana's
//! webhook and as Healthchecks.io's, must return, never panic.
#![no_main]

use alertmanager_sipgate::ingest::{parse_alertmanager, parse_healthchecks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = parse_alertmanager(body);
    let _ = parse_healthchecks(body);
});
