//! Turns routed deliveries into the SMS to send: the route's template rendered for the recipient,
//! then fitted into the route's segment budget. A page is never lost to a template problem: a
//! failing or empty user template falls back to the built-in one.

use chrono::{DateTime, Utc};

use crate::config::{Config, PhoneNumber};
use crate::ledger::ContentKey;
use crate::payload::{Alert, Notification};
use crate::routing::{self, Delivery};
use crate::sms::{self, Encoding, SmsSize};
use crate::template::MessageData;

const FALLBACK_TEMPLATE: &str = "default";

#[derive(Debug, Clone)]
pub struct Sms {
    pub route: String,
    pub recipient: String,
    pub number: PhoneNumber,
    pub text: String,
    pub size: SmsSize,
    pub max_segments: usize,
    /// What the SMS is about, for the ledger that keeps it from being sent twice.
    pub key: ContentKey,
}

/// Everything one notification leads to, before anything is sent.
#[derive(Debug)]
pub struct Plan {
    pub messages: Vec<Sms>,
    /// (route, recipient) pairs held back because the route does not send resolved alerts.
    pub held_resolved: Vec<(String, String)>,
    /// Alerts that matched no route.
    pub unrouted: usize,
}

pub fn plan(config: &Config, notification: &Notification, now: DateTime<Utc>) -> Plan {
    let routing = routing::route(notification, &config.routes);
    Plan {
        messages: routing
            .deliveries
            .iter()
            .filter_map(|d| compose(config, notification, d, now))
            .collect(),
        held_resolved: routing
            .held_resolved
            .iter()
            .map(|h| (h.route.name.clone(), h.recipient.to_string()))
            .collect(),
        unrouted: routing.unrouted.len(),
    }
}

pub fn compose(
    config: &Config,
    notification: &Notification,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
) -> Option<Sms> {
    let route = delivery.route;
    let number = config.recipients.get(delivery.recipient)?.clone();
    let text = render(config, notification, delivery, now);
    let text = fit(&text, route.max_segments);
    Some(Sms {
        route: route.name.clone(),
        recipient: delivery.recipient.to_string(),
        number,
        size: sms::measure(&text),
        text,
        max_segments: route.max_segments,
        key: ContentKey::new(
            delivery.recipient,
            &notification.group_key,
            &delivery.alerts,
        ),
    })
}

fn render(
    config: &Config,
    notification: &Notification,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
) -> String {
    let route = delivery.route;
    let data = MessageData::new(
        notification,
        &route.name,
        delivery.recipient,
        &delivery.alerts,
        now,
    );
    let rendered = config.templates.render(&route.template, &data);
    match rendered {
        Ok(text) if !text.trim().is_empty() => return text.trim().to_string(),
        Ok(_) => tracing::error!(
            route = %route.name,
            template = %route.template,
            "template rendered empty text; using the built-in template instead"
        ),
        Err(e) => tracing::error!(
            route = %route.name,
            error = %e,
            "template failed; using the built-in template instead"
        ),
    }
    match config.templates.render(FALLBACK_TEMPLATE, &data) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => last_resort(&delivery.alerts),
    }
}

/// Used only when even the built-in template fails: the status and the alert names.
fn last_resort(alerts: &[&Alert]) -> String {
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a.labels.get("alertname").map_or("alert", String::as_str))
        .collect();
    format!("{} alert(s): {}", alerts.len(), names.join(", "))
}

/// Cuts the text to the budget, ending with a marker that keeps the text's own encoding.
pub fn fit(text: &str, max_segments: usize) -> String {
    let size = sms::measure(text);
    if size.segments <= max_segments {
        return text.to_string();
    }
    let marker = match size.encoding {
        Encoding::Gsm7 => "...",
        Encoding::Ucs2 => "…",
    };
    sms::truncate_to_segments(text, max_segments, marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_within_budget_with_a_gsm_marker() {
        let text = "word ".repeat(100);
        let fitted = fit(&text, 1);
        assert!(fitted.ends_with("..."), "{fitted}");
        let size = sms::measure(&fitted);
        assert_eq!(size.segments, 1);
        assert_eq!(size.encoding, Encoding::Gsm7);
    }

    #[test]
    fn short_text_is_unchanged() {
        assert_eq!(fit("FIRING DiskFull", 1), "FIRING DiskFull");
    }

    #[test]
    fn last_resort_names_the_alerts() {
        let a = Alert {
            status: crate::payload::AlertStatus::Firing,
            labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
            annotations: Default::default(),
            starts_at: None,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: String::new(),
        };
        assert_eq!(last_resort(&[&a]), "1 alert(s): DiskFull");
    }
}
