//! `check-config`: validates the config file and its templates, and with `--at` shows what each
//! route would do at that instant.

use std::path::Path;

use chrono::Utc;

use super::{At, load_config};
use crate::routing::{self, Rules as _};
use crate::text::plural::counted;

pub(super) fn check_config(path: &Path, at: &At) -> anyhow::Result<()> {
    let config = load_config(path)?;
    // Policies are counted only where there are any: most configs have none.
    let policies = match config.escalation_policies.len() {
        0 => String::new(),
        n => format!(
            ", {}",
            counted(n, "escalation policy", "escalation policies")
        ),
    };
    println!(
        "{}: OK ({}, {}{policies}, schedules: {}, templates: {}, state: {})",
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
            let policy = route
                .escalation
                .as_ref()
                .and_then(|name| config.escalation_policies.get(name));
            let state = if rules.muted(route) {
                "muted".to_string()
            } else if let Some(policy) = policy {
                format!(
                    "escalates by {}: {}",
                    policy.name,
                    policy.plan_at(&config.schedules, given.with_timezone(&Utc))
                )
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
