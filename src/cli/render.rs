//! `render`: the SMS a webhook body would produce, printed instead of sent.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use super::{At, load_config};
use crate::ingest;
use crate::model::outcome::SuppressReason;
use crate::pipeline;
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
    let plan = pipeline::plan(&config, &notification, at.or_now());
    for sms in &plan.messages {
        println!(
            "route: {}  recipient: {}  encoding: {}  characters: {}  segments: {}",
            sms.route, sms.recipient, sms.size.encoding, sms.size.chars, sms.size.segments
        );
        if sms.quiet {
            println!("held back: the recipient's quiet hours; counted for their next SMS");
        }
        println!("{}\n", sms.text);
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
    if plan.messages.is_empty() && plan.held.is_empty() && plan.unrouted == 0 {
        println!("no SMS: the notification has no alerts");
    }
    Ok(())
}
