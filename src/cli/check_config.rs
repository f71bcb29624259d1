//! `check-config`: validates the config file and its templates, and with `--at` shows what each
//! route would do at that instant.

use std::path::Path;

use chrono::Utc;

use super::{At, load_config};
use crate::routing::{self, Rules as _};
use crate::text::plural::counted;

pub(super) fn check_config(path: &Path, at: &At) -> anyhow::Result<()> {
    let config = load_config(path)?;
    println!(
        "{}: OK ({}, {}, schedules: {}, templates: {}, state: {})",
        path.display(),
        counted(config.recipients.len(), "recipient", "recipients"),
        counted(config.routes.len(), "route", "routes"),
        if config.schedules.is_empty() {
            "none".to_string()
        } else {
            config
                .schedules
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        },
        config.templates.names().join(", "),
        config.state.backend()
    );
    if config.dry_run() {
        println!("no Sipgate credentials: the service would run in dry-run mode and send nothing");
    }
    if let Some(given) = at.at {
        println!("at {}:", given.to_rfc3339());
        let rules = routing::At::new(
            &config.schedules,
            &config.time_intervals,
            &config.quiet_hours,
            given.with_timezone(&Utc),
        );
        for route in &config.routes {
            let state = if rules.muted(route) {
                "muted".to_string()
            } else {
                let recipients = rules.recipients(route);
                let quiet: Vec<&str> = recipients
                    .iter()
                    .copied()
                    .filter(|r| rules.quiet(route, r))
                    .collect();
                let texts = recipients.join(", ");
                if quiet.is_empty() {
                    format!("texts {texts}")
                } else {
                    format!("texts {texts} (in quiet hours: {})", quiet.join(", "))
                }
            };
            println!("  route {}: {state}", route.name);
        }
    }
    Ok(())
}
