//! `check-config`: validates the config file and its templates, and with `--at` shows what each
//! route would do at that instant.

use std::path::Path;

use chrono::Utc;

use super::{At, load_config};
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
        let when = given.with_timezone(&Utc);
        for route in &config.routes {
            let state = if config.muted_at(route, when) {
                "muted".to_string()
            } else {
                let quiet: Vec<&str> = config
                    .recipients_at(route, when)
                    .into_iter()
                    .filter(|r| !route.ignore_quiet_hours && config.in_quiet_hours(r, when))
                    .collect();
                let texts = config.recipients_at(route, when).join(", ");
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
