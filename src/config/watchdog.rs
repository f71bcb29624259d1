//! The `watchdog:` section: which alerts are heartbeats, how long a silence may last, and whom
//! it pages.

use std::time::Duration;

use serde::Deserialize;

use super::field::parse_duration;
use super::problem::{Problem, problem};
use super::routes::{Targets, matchers, reach};
use crate::routing::Route;
use crate::routing::matcher::Matcher;
use crate::text::template::{Templates, WATCHDOG_BACK, WATCHDOG_SILENT, WatchdogData};

/// The shortest silence that may page: heartbeats come every few seconds at best.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Watchdog {
    /// Alerts that match all of them are heartbeats.
    pub matchers: Vec<Matcher>,
    pub timeout: Duration,
    /// Whom the silence pages, as a route: recipients, groups and schedules.
    pub route: Route,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatchdog {
    #[serde(default)]
    matchers: Vec<String>,
    timeout: Option<String>,
    #[serde(default)]
    to: Vec<String>,
}

pub(super) fn watchdog(
    raw: RawWatchdog,
    targets: &Targets<'_>,
    templates: Option<&Templates>,
    problems: &mut Vec<Problem>,
) -> Watchdog {
    let matchers = matchers(&raw.matchers, "watchdog", problems);
    if raw.matchers.is_empty() {
        problem(
            problems,
            "watchdog.matchers",
            "missing: the heartbeat alert, e.g. ['alertname=\"Watchdog\"']",
        );
    }
    let timeout = match raw.timeout.as_deref().map(parse_duration) {
        None => Duration::from_secs(600),
        Some(Ok(t)) if t < MIN_TIMEOUT => {
            problem(problems, "watchdog.timeout", "must be at least 10s");
            MIN_TIMEOUT
        }
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            problem(problems, "watchdog.timeout", e);
            MIN_TIMEOUT
        }
    };
    if raw.to.is_empty() {
        problem(
            problems,
            "watchdog.to",
            "the watchdog needs at least one recipient, group or schedule",
        );
    }
    let reach = reach("watchdog", &raw.to, targets, problems);
    if let Some(templates) = templates {
        let sample = WatchdogData {
            silent_for: "1h 5m".to_string(),
            last_heartbeat: "Nov 25 14:03 CET".to_string(),
            heartbeat_seen: true,
        };
        let never_seen = WatchdogData {
            heartbeat_seen: false,
            ..sample.clone()
        };
        for name in [WATCHDOG_SILENT, WATCHDOG_BACK] {
            // Both cases of the text, each problem once.
            let trouble = [&sample, &never_seen].into_iter().find_map(|data| {
                match templates.render_watchdog(name, data) {
                    Ok(text) if text.trim().is_empty() => {
                        Some("renders to empty text; an SMS must say something".to_string())
                    }
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                }
            });
            if let Some(message) = trouble {
                problem(problems, format!("templates ({name})"), message);
            }
        }
    }
    Watchdog {
        matchers,
        timeout,
        route: Route {
            name: "watchdog".to_string(),
            matchers: Vec::new(),
            recipients: reach.recipients,
            template: WATCHDOG_SILENT.to_string(),
            send_resolved: true,
            max_segments: 1,
            gsm_only: false,
            continue_matching: false,
            schedules: reach.schedules,
            may_page: reach.may_page,
            active_time_intervals: Vec::new(),
            mute_time_intervals: Vec::new(),
            ignore_quiet_hours: true,
            escalation: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    #[test]
    fn the_watchdog_may_page_everyone_of_its_schedules() {
        let config = load(
            "recipients: {alice: \"+4915228817386\", bob: \"+4915254599371\", carol: \"+4915254599372\"}\n\
             schedules: {primary: {rotation: {members: [bob, carol], shift: 1w, start: '2026-01-05T09:00'}}}\n\
             watchdog: {matchers: ['alertname=\"Watchdog\"'], to: [alice, primary]}\n",
        )
        .unwrap();
        let route = config.watchdog.unwrap().route;
        assert_eq!(route.recipients, ["alice"]);
        assert_eq!(route.schedules, ["primary"]);
        assert_eq!(route.may_page, ["alice", "bob", "carol"]);
    }
}
