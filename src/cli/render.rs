//! `render`: the SMS a webhook body would produce, printed instead of sent.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use chrono::{DateTime, Utc};

use super::{At, load_config};
use crate::config::Config;
use crate::escalation::code;
use crate::escalation::page::{self, Trailer};
use crate::ingest;
use crate::model::alert::AlertStatus;
use crate::model::content_key::ContentKey;
use crate::model::outcome::SuppressReason;
use crate::pipeline::{self, Escalating};
use crate::text::compose::Sms;
use crate::text::plural::counted;

pub(super) fn render(config_path: &Path, at: &At, payload_path: &Path) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let body = if payload_path == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the payload from standard input")?;
        body
    } else {
        std::fs::read(payload_path)
            .with_context(|| format!("cannot read {}", payload_path.display()))?
    };
    let notification = ingest::parse_alertmanager(&body)
        .with_context(|| format!("in {}", payload_path.display()))?;
    let now = at.or_now();
    let plan = pipeline::plan(&config, &notification, now);
    for sms in &plan.messages {
        print_sms(sms);
    }
    for escalating in &plan.escalations {
        print_escalation(&config, escalating, now);
    }
    for held in &plan.held {
        let why = match held.reason {
            SuppressReason::Muted => "the route is muted at this time (time intervals)",
            SuppressReason::SendResolved => "route does not send resolved alerts",
            other => other.as_str(),
        };
        println!(
            "route: {}  recipient: {}  held back: {why}\n",
            held.route, held.recipient
        );
    }
    if plan.unrouted > 0 {
        println!(
            "{} would not be sent: no route matches",
            counted(plan.unrouted, "alert", "alerts")
        );
    }
    if plan.messages.is_empty()
        && plan.held.is_empty()
        && plan.escalations.is_empty()
        && plan.unrouted == 0
    {
        if notification.alerts.is_empty() {
            println!("no SMS: the notification has no alerts");
        } else {
            // Routing keeps no record of an escalating route it skipped for being muted: that
            // is the one way routed alerts lead to nothing at all.
            println!(
                "no SMS: the routes that take its alerts are muted at this time (time intervals)"
            );
        }
    }
    Ok(())
}

fn print_sms(sms: &Sms) {
    println!(
        "route: {}  recipient: {}  encoding: {}  characters: {}  segments: {}",
        sms.route, sms.recipient, sms.size.encoding, sms.size.chars, sms.size.segments
    );
    if sms.quiet {
        println!("held back: the recipient's quiet hours; counted for their next SMS");
    }
    println!("{}\n", sms.text);
}

/// An escalating route's plan at `now` and the pages of its step 1, as an incident opened now
/// sends them. Each code is random: a placeholder as long stands for it, so that characters and
/// segments are those of the real page.
fn print_escalation(config: &Config, escalating: &Escalating, now: DateTime<Utc>) {
    let Some((route, policy)) = config
        .routes
        .iter()
        .find(|r| r.name == escalating.route)
        .and_then(|route| {
            let policy = config
                .escalation_policies
                .get(route.escalation.as_deref()?)?;
            Some((route, policy))
        })
    else {
        return;
    };
    let header = format!("route: {}  escalates by {}:", route.name, policy.name);
    if escalating.group.count(AlertStatus::Firing) == 0 {
        let told = if route.send_resolved {
            "everyone it paged gets the resolved SMS"
        } else {
            "nobody is told: the route does not send resolved alerts"
        };
        println!("{header} the alerts resolved: their incident ends, and {told}\n");
        return;
    }
    println!("{header} {}", policy.plan_at(&config.schedules, now));
    let placeholder = "X".repeat(code::LENGTH);
    println!(
        "step 1, as an incident opened now pages it ({placeholder} stands for each person's own code, as long):"
    );
    let trailer = Trailer {
        code: &placeholder,
        missed: None,
    };
    for person in page::people_of_step(config, policy, 0, now) {
        let key = ContentKey::for_event(&person, "render");
        if let Some(sms) = page::compose_page(
            config,
            route,
            &escalating.group,
            &person,
            &trailer,
            now,
            key,
        ) {
            print_sms(&sms);
        }
    }
}
