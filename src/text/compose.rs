//! Turns routed deliveries into the SMS to send: the route's template rendered for the recipient and
//! fitted into the route's segment budget, whole alerts first. A page is never lost to a template
//! problem: a failing or empty user template falls back to the built-in one.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::model::alert::{Alert, AlertStatus, Notification};
use crate::model::content_key::ContentKey;
use crate::model::phone::PhoneNumber;
use crate::routing::Delivery;
use crate::text::sms::{self, Encoding, SmsSize};
use crate::text::template::{self, MessageData, Templates};

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
    /// Held back for the recipient's quiet hours: counted for their next SMS, not sent.
    pub quiet: bool,
}

/// The SMS of one routed delivery to `number`: the route's template rendered and fitted into its
/// segment budget.
pub fn compose(
    templates: &Templates,
    number: PhoneNumber,
    notification: &Notification,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
) -> Sms {
    let key = ContentKey::new(
        delivery.recipient,
        &notification.group_key,
        &delivery.alerts,
    );
    // Held back is not sent: the same alerts after the quiet hours are a new SMS.
    let key = if delivery.quiet { key.held_back() } else { key };
    compose_with_trailer(templates, number, notification, delivery, now, "", key)
}

/// An SMS whose last lines are `trailer` (an escalation's note and acknowledgement link): the
/// alerts are fitted into what the budget leaves beside it, and it is never cut. `key` says what
/// the SMS is about, for the ledger.
pub fn compose_with_trailer(
    templates: &Templates,
    number: PhoneNumber,
    notification: &Notification,
    delivery: &Delivery<'_>,
    now: DateTime<Utc>,
    trailer: &str,
    key: ContentKey,
) -> Sms {
    let route = delivery.route;
    let text = Composer {
        templates,
        notification,
        delivery,
        now,
        trailer,
    }
    .fitted_text();
    Sms {
        route: route.name.clone(),
        recipient: delivery.recipient.to_string(),
        number,
        size: sms::measure(&text),
        text,
        max_segments: route.max_segments,
        key,
        quiet: delivery.quiet,
    }
}

struct Composer<'a> {
    templates: &'a Templates,
    notification: &'a Notification,
    delivery: &'a Delivery<'a>,
    now: DateTime<Utc>,
    /// Lines that end the text whole; empty for most SMS.
    trailer: &'a str,
}

impl Composer<'_> {
    /// The most alerts that fit the route's budget, firing first, and `+N more` for the rest; when
    /// not even one alert fits, the first one shortened. Never empty.
    fn fitted_text(&self) -> String {
        let route = self.delivery.route;
        let budget = route.max_segments;
        let mut alerts = self.delivery.alerts.clone();
        alerts.sort_by_key(|a| a.status == AlertStatus::Resolved);
        let total = alerts.len();
        let mut data = MessageData::new(
            self.notification,
            &route.name,
            self.delivery.recipient,
            &alerts,
            self.now,
            self.templates.fields(&route.template),
        );
        // Alerts the sender (Alertmanager's max_alerts) or the input limits left out.
        let dropped = usize::try_from(self.notification.truncated_alerts).unwrap_or(usize::MAX);
        let fits = |text: &str| sms::measure(text).segments <= budget;
        let mut with_more = |shown: usize| {
            data.show(shown);
            let text = self.render(&data, &alerts[..shown]);
            let text = match more_marker(&text, (total - shown).saturating_add(dropped)) {
                Some(marker) => text + &marker,
                None => text,
            };
            self.encode(text + self.trailer)
        };
        let all = with_more(total);
        if fits(&all) || total == 0 {
            return all;
        }
        // Fewer alerts never make a longer text, so the largest count that fits can be bisected.
        let (mut low, mut high, mut best) = (1, total - 1, None);
        while low <= high {
            let shown = low + (high - low) / 2;
            let text = with_more(shown);
            if fits(&text) {
                best = Some(text);
                low = shown + 1;
            } else {
                high = shown - 1;
            }
        }
        if let Some(text) = best {
            return text;
        }
        data.show(1);
        let first = self.encode(self.render(&data, &alerts[..1]));
        let trailer = self.encode(self.trailer.to_string());
        let ellipsis = match sms::measure(&(first.clone() + &trailer)).encoding {
            Encoding::Gsm7 => "...",
            Encoding::Ucs2 => "…",
        };
        match more_marker(&first, (total - 1).saturating_add(dropped)) {
            Some(more) => {
                sms::shorten_with_marker(&first, budget, &format!("{ellipsis}{more}{trailer}"))
            }
            None if trailer.is_empty() => sms::truncate_to_segments(&first, budget, ellipsis),
            None => sms::shorten_with_marker(&first, budget, &format!("{ellipsis}{trailer}")),
        }
    }

    fn encode(&self, text: String) -> String {
        if self.delivery.route.gsm_only {
            sms::transliterate_to_gsm(&text).into_owned()
        } else {
            text
        }
    }

    /// The route's template, or the built-in one when it fails; `shown` names the alerts of the
    /// last resort text. Without control characters, before anything is measured, so that the
    /// budget counts what is sent and a text of control characters only counts as empty.
    fn render(&self, data: &MessageData, shown: &[&Alert]) -> String {
        let route = self.delivery.route;
        let templates = self.templates;
        let render = |name: &str| {
            templates
                .render(name, data)
                .map(sms::without_control_characters)
        };
        match render(&route.template) {
            Ok(text) if !text.trim().is_empty() => return trimmed(text),
            Ok(_) => tracing::error!(
                route = %route.name,
                template = %route.template,
                "template rendered empty text; using the built-in template instead"
            ),
            Err(e) => tracing::error!(
                route = %route.name,
                // The error may quote a label value.
                error = %crate::redact::phone_numbers(&e.to_string()),
                "template failed; using the built-in template instead"
            ),
        }
        match render(template::FALLBACK) {
            Ok(text) if !text.trim().is_empty() => trimmed(text),
            _ => sms::without_control_characters(last_resort(shown)),
        }
    }
}

/// The text without surrounding whitespace, copied only when there is some.
fn trimmed(text: String) -> String {
    if text.trim().len() == text.len() {
        text
    } else {
        text.trim().to_string()
    }
}

/// `+N more` on its own line after a multi-line text, after a space otherwise.
fn more_marker(text: &str, omitted: usize) -> Option<String> {
    (omitted > 0).then(|| {
        let separator = if text.contains('\n') { '\n' } else { ' ' };
        format!("{separator}+{omitted} more")
    })
}

/// Used only when even the built-in template fails: the status and the alert names.
fn last_resort(alerts: &[&Alert]) -> String {
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a.labels.get("alertname").map_or("alert", String::as_str))
        .collect();
    format!(
        "{}: {}",
        crate::text::plural::counted(alerts.len(), "alert", "alerts"),
        names.join(", ")
    )
}

/// `text` with `[N SMS held back]` in front, so that the recipient learns what the rate limit or
/// their quiet hours kept from them (a shorter form when the budget is tight); as it is when
/// nothing was held back. The one text the provider is given.
pub fn with_held_note(text: &str, held: u64, max_segments: usize) -> Cow<'_, str> {
    if held == 0 {
        return Cow::Borrowed(text);
    }
    let long = format!("[{held} SMS held back] {text}");
    if sms::measure(&long).segments <= max_segments {
        return Cow::Owned(long);
    }
    Cow::Owned(fit(&format!("[+{held} held] {text}"), max_segments))
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
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::model::alert::AlertStatus;
    use crate::routing;

    fn config(route_extra: &str) -> Config {
        let yaml = format!(
            "recipients: {{alice: \"+4915228817386\"}}\nroutes:\n  - name: r\n    to: [alice]\n{route_extra}"
        );
        Config::from_yaml(&yaml, Path::new("t.yml"), Path::new("."), &|_| None).unwrap()
    }

    fn alert(i: usize, status: AlertStatus, summary: &str) -> Alert {
        let (name, instance) = (format!("A{i}"), format!("host{i}"));
        Alert::new(status, &[("alertname", &name), ("instance", &instance)])
            .annotation("summary", summary)
            .starting("2026-11-25T09:05:00Z".parse().unwrap())
            .fingerprint(&format!("{i:016x}"))
    }

    fn compose_one(config: &Config, n: &Notification) -> Sms {
        let now = "2026-11-25T10:00:00Z".parse().unwrap();
        let rules = routing::At::new(
            &config.schedules,
            &config.time_intervals,
            &config.quiet_hours,
            now,
        );
        let routing = routing::route(n, &config.routes, &rules);
        let delivery = &routing.deliveries[0];
        let number = config.recipients[delivery.recipient].clone();
        compose(&config.templates, number, n, delivery, now)
    }

    /// Alert lines in a text rendered by the default template.
    fn shown_alerts(text: &str) -> usize {
        text.lines().filter(|l| l.starts_with('A')).count()
    }

    #[test]
    fn many_alerts_are_fitted_whole_with_the_count_of_the_rest() {
        for summary in ["disk almost full", "Platte fast voll, bitte prüfen 😱"] {
            for budget in [1, 3] {
                for total in [1, 5, 30, 200] {
                    let config = config(&format!("    max_segments: {budget}\n"));
                    let alerts = (0..total)
                        .map(|i| alert(i, AlertStatus::Firing, summary))
                        .collect();
                    let sms = compose_one(&config, &Notification::of(alerts));
                    let case = format!(
                        "{total} alerts, budget {budget}, {summary:?}:\n{}",
                        sms.text
                    );
                    assert!(sms.size.segments <= budget, "{case}");
                    assert!(!sms.text.is_empty());
                    if total == 1 {
                        assert!(!sms.text.contains("more"), "{case}");
                        continue;
                    }
                    let shown = shown_alerts(&sms.text);
                    assert!(shown >= 1, "{case}");
                    if shown < total {
                        let marker = format!("\n+{} more", total - shown);
                        assert!(sms.text.ends_with(&marker), "{case}");
                    }
                    assert!(sms.text.starts_with(&format!("FIRING {total}\n")), "{case}");
                }
            }
        }
    }

    #[test]
    fn fitting_keeps_as_many_alerts_as_the_budget_allows() {
        let config = config("    max_segments: 1\n");
        let alerts = (0..10)
            .map(|i| alert(i, AlertStatus::Firing, "x"))
            .collect();
        let sms = compose_one(&config, &Notification::of(alerts));
        assert_eq!(
            sms.text,
            "FIRING 10\n\
             A0 host0 since Nov 25 09:05 UTC: x\n\
             A1 host1 since Nov 25 09:05 UTC: x\n\
             A2 host2 since Nov 25 09:05 UTC: x\n\
             A3 host3 since Nov 25 09:05 UTC: x\n\
             +6 more"
        );
        assert_eq!(sms.size.segments, 1);
    }

    #[test]
    fn firing_alerts_come_before_resolved_ones() {
        let config = config("    max_segments: 1\n");
        let mut alerts: Vec<Alert> = (0..6)
            .map(|i| alert(i, AlertStatus::Resolved, "gone"))
            .collect();
        alerts.push(alert(9, AlertStatus::Firing, "burning"));
        let sms = compose_one(&config, &Notification::of(alerts));
        assert!(
            sms.text
                .starts_with("FIRING 1\nA9 host9 since Nov 25 09:05 UTC: burning\nRESOLVED 6\n"),
            "{}",
            sms.text
        );
    }

    #[test]
    fn one_alert_longer_than_the_budget_is_shortened_not_dropped() {
        let config = config("    max_segments: 1\n");
        let long = "word ".repeat(100);
        let sms = compose_one(
            &config,
            &Notification::of(vec![alert(1, AlertStatus::Firing, &long)]),
        );
        assert_eq!(sms.size.segments, 1);
        assert!(
            sms.text
                .starts_with("FIRING A1 host1 since Nov 25 09:05 UTC: word word")
        );
        assert!(sms.text.ends_with("word..."), "{}", sms.text);

        let alerts = vec![
            alert(1, AlertStatus::Firing, &long),
            alert(2, AlertStatus::Firing, &long),
        ];
        let sms = compose_one(&config, &Notification::of(alerts));
        assert_eq!(sms.size.segments, 1);
        assert!(sms.text.starts_with("FIRING 2\nA1 host1"), "{}", sms.text);
        assert!(sms.text.ends_with("word...\n+1 more"), "{}", sms.text);
    }

    #[test]
    fn gsm_only_keeps_typography_from_halving_the_capacity() {
        let summary = "“Disk” is full – check ‘/var’… Größe ok";
        let plain = compose_one(
            &config(""),
            &Notification::of(vec![alert(1, AlertStatus::Firing, summary)]),
        );
        assert_eq!(plain.size.encoding, Encoding::Ucs2);
        let gsm = compose_one(
            &config("    gsm_only: true\n"),
            &Notification::of(vec![alert(1, AlertStatus::Firing, summary)]),
        );
        assert_eq!(gsm.size.encoding, Encoding::Gsm7);
        assert!(
            gsm.text
                .ends_with(": \"Disk\" is full - check '/var'... Größe ok"),
            "{}",
            gsm.text
        );
    }

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
    fn the_held_back_note_is_put_in_front_and_kept_within_the_budget() {
        assert_eq!(with_held_note("FIRING DiskFull", 0, 1), "FIRING DiskFull");
        assert_eq!(
            with_held_note("FIRING DiskFull", 3, 1),
            "[3 SMS held back] FIRING DiskFull"
        );
        // 145 characters: the long note would make two segments, the short one fits in one.
        let text = "x".repeat(145);
        assert_eq!(with_held_note(&text, 12, 1), format!("[+12 held] {text}"));
        assert_eq!(
            with_held_note(&text, 12, 2),
            format!("[12 SMS held back] {text}")
        );
        // Not even the short one fits: the text is cut, never the note.
        let long = "word ".repeat(40);
        let noted = with_held_note(long.trim_end(), 7, 1);
        assert!(noted.starts_with("[+7 held] word word"), "{noted}");
        assert!(noted.ends_with("..."), "{noted}");
        assert_eq!(sms::measure(&noted).segments, 1);
        let scream = "😱".repeat(80);
        let emoji = with_held_note(&scream, 2, 1);
        assert!(emoji.starts_with("[+2 held] 😱"), "{emoji}");
        assert!(emoji.ends_with('…'), "{emoji}");
        assert_eq!(sms::measure(&emoji).segments, 1);
    }

    #[test]
    fn last_resort_names_the_alerts() {
        let a = alert(1, AlertStatus::Firing, "");
        assert_eq!(last_resort(&[&a]), "1 alert: A1");
        let b = alert(2, AlertStatus::Resolved, "");
        assert_eq!(last_resort(&[&a, &b]), "2 alerts: A1, A2");
    }
}
