//! The `watchdog:` section: which alerts are heartbeats, how long a silence may last, and whom
//! it pages.

use std::time::Duration;

use serde::Deserialize;

use super::{Problem, Route, Targets, parse_duration, problem, route_recipients};
use crate::routing::matcher::{Matcher, parse_matchers};
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
    let mut matchers = Vec::new();
    for (i, entry) in raw.matchers.iter().enumerate() {
        match parse_matchers(entry) {
            Ok(ms) => matchers.extend(ms),
            Err(e) => problem(problems, format!("watchdog.matchers[{i}]"), e.to_string()),
        }
    }
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
    let (recipients, schedules) = route_recipients("watchdog", &raw.to, targets, problems);
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
    let may_page = recipients.clone();
    Watchdog {
        matchers,
        timeout,
        route: Route {
            name: "watchdog".to_string(),
            matchers: Vec::new(),
            recipients,
            template: WATCHDOG_SILENT.to_string(),
            send_resolved: true,
            max_segments: 1,
            gsm_only: false,
            continue_matching: false,
            schedules,
            may_page,
            active_time_intervals: Vec::new(),
            mute_time_intervals: Vec::new(),
            ignore_quiet_hours: true,
        },
    }
}
