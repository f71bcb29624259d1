//! The SMS of an escalation step: whom a step reaches, and the route's text about the group's
//! firing alerts ending in a note who did not acknowledge and the acknowledgement link. One
//! place for both, so that what `render` shows is what the engine sends.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::model::alert::{Alert, AlertStatus, Notification};
use crate::model::content_key::ContentKey;
use crate::routing::policy::Policy;
use crate::routing::{Delivery, Route};
use crate::text::compose::{Sms, compose_with_trailer};

/// What ends a page besides the route's text.
pub struct Trailer<'a> {
    /// The code of the person's acknowledgement link.
    pub code: &'a str,
    /// From the second page of an incident on: who did not acknowledge.
    pub missed: Option<Missed>,
}

/// Who was paged before and has not acknowledged.
pub struct Missed {
    /// Names, in the order they were paged: `alice, bob`.
    pub people: String,
    pub since_first_page: Duration,
}

/// The people step `step` of `policy` pages at `at`, each once, those in the phone book.
pub fn people_of_step(
    config: &Config,
    policy: &Policy,
    step: usize,
    at: DateTime<Utc>,
) -> Vec<String> {
    let mut people: Vec<String> = Vec::new();
    for target in policy.steps.get(step).map_or(&[][..], |s| &s.to[..]) {
        for person in target.people_at(&config.schedules, at) {
            if config.recipients.contains_key(person) && !people.iter().any(|p| p == person) {
                people.push(person.to_string());
            }
        }
    }
    people
}

/// The page to `person` about `group`'s firing alerts on `route`, ending in `trailer`; `None`
/// when `person` has no number.
pub fn compose_page(
    config: &Config,
    route: &Route,
    group: &Notification,
    person: &str,
    trailer: &Trailer<'_>,
    now: DateTime<Utc>,
    key: ContentKey,
) -> Option<Sms> {
    let number = config.recipients.get(person)?.clone();
    let base = config.web.external_url.as_deref().unwrap_or_default();
    let firing: Vec<&Alert> = group
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .collect();
    let delivery = Delivery {
        route,
        recipient: person,
        alerts: firing,
        quiet: false,
    };
    Some(compose_with_trailer(
        &config.templates,
        number,
        group,
        &delivery,
        now,
        &trailer.text(base),
        key,
    ))
}

impl Trailer<'_> {
    /// `\nNot acknowledged by alice for 10m` from the second page on, and
    /// `\nAck: <external_url>/a/<code>`.
    fn text(&self, external_url: &str) -> String {
        let mut text = String::new();
        if let Some(missed) = &self.missed {
            text.push_str(&format!(
                "\nNot acknowledged by {} for {}",
                missed.people,
                crate::text::duration::short(missed.since_first_page)
            ));
        }
        text.push_str(&format!("\nAck: {external_url}/a/{}", self.code));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_names_who_missed_the_page_and_ends_in_the_link() {
        let first = Trailer {
            code: "c0de",
            missed: None,
        };
        assert_eq!(
            first.text("https://pager.example.com"),
            "\nAck: https://pager.example.com/a/c0de"
        );
        let later = Trailer {
            code: "c0de",
            missed: Some(Missed {
                people: "alice, bob".to_string(),
                since_first_page: Duration::from_secs(65 * 60 + 30),
            }),
        };
        assert_eq!(
            later.text("https://pager.example.com"),
            "\nNot acknowledged by alice, bob for 1h 5m\nAck: https://pager.example.com/a/c0de"
        );
    }
}
