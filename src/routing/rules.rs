//! What a route means at an instant: who it reaches (its schedules resolved to whoever is on
//! call) and what it holds back (muted by its time intervals, or a recipient's quiet hours).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Route;
use crate::oncall::Schedule;
use crate::oncall::quiet_hours::{QuietHours, in_quiet_hours};
use crate::oncall::timeinterval::{NamedIntervals, any_named_contains};

/// What decides, at the instant an SMS is planned, who a route texts and what it holds back.
pub trait Rules<'a> {
    /// The route's recipients, its schedules resolved.
    fn recipients(&self, route: &'a Route) -> Vec<&'a str>;
    /// The route is outside its active or inside a mute time interval.
    fn muted(&self, route: &Route) -> bool;
    /// `recipient` is in quiet hours and `route` does not page through them.
    fn quiet(&self, route: &Route, recipient: &str) -> bool;
}

/// A config's rules at an instant: who is on call, what is muted, who is in quiet hours.
pub struct At<'a> {
    schedules: &'a BTreeMap<String, Schedule>,
    time_intervals: &'a NamedIntervals,
    quiet_hours: &'a QuietHours,
    at: DateTime<Utc>,
}

impl<'a> At<'a> {
    pub fn new(
        schedules: &'a BTreeMap<String, Schedule>,
        time_intervals: &'a NamedIntervals,
        quiet_hours: &'a QuietHours,
        at: DateTime<Utc>,
    ) -> Self {
        At {
            schedules,
            time_intervals,
            quiet_hours,
            at,
        }
    }
}

impl<'a> Rules<'a> for At<'a> {
    fn recipients(&self, route: &'a Route) -> Vec<&'a str> {
        recipients_at(route, self.schedules, self.at)
    }

    fn muted(&self, route: &Route) -> bool {
        muted_at(route, self.time_intervals, self.at)
    }

    fn quiet(&self, route: &Route, recipient: &str) -> bool {
        !route.ignore_quiet_hours
            && in_quiet_hours(self.quiet_hours, self.time_intervals, recipient, self.at)
    }
}

/// Who `route` texts at `at`: its recipients and whoever is on call in its schedules, each
/// once.
pub fn recipients_at<'a>(
    route: &'a Route,
    schedules: &'a BTreeMap<String, Schedule>,
    at: DateTime<Utc>,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = route.recipients.iter().map(String::as_str).collect();
    for schedule in route.schedules.iter().filter_map(|s| schedules.get(s)) {
        let who = schedule.who(at);
        if !out.contains(&who) {
            out.push(who);
        }
    }
    out
}

/// Whether `route` holds its SMS back at `at`: outside all of its active intervals (when it has
/// any), or inside one of its mute intervals, as in Alertmanager.
pub fn muted_at(route: &Route, time_intervals: &NamedIntervals, at: DateTime<Utc>) -> bool {
    let inside = |names: &[String]| any_named_contains(time_intervals, names, at);
    (!route.active_time_intervals.is_empty() && !inside(&route.active_time_intervals))
        || inside(&route.mute_time_intervals)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// bob is on call from Monday 2026-11-23 09:00 in Berlin, carol a week later.
    const CONFIG: &str = "
recipients:
  alice: \"+4915228817386\"
  bob: {number: \"+4915254599371\", quiet_hours: [nights]}
  carol: \"+4915254599372\"
schedules:
  primary: {time_zone: Europe/Berlin, rotation: {members: [bob, carol], shift: 1w, start: '2026-11-23T09:00'}}
time_intervals:
  - name: nights
    time_intervals: [{times: [{start_time: '22:00', end_time: '24:00'}, {start_time: '00:00', end_time: '07:00'}], location: Europe/Berlin}]
  - name: business-hours
    time_intervals: [{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '17:00'}], location: Europe/Berlin}]
  - name: christmas
    time_intervals: [{months: [december], days_of_month: ['24:26'], location: Europe/Berlin}]
routes:
  - {name: critical, to: [alice, primary, bob], ignore_quiet_hours: true}
  - {name: office, to: [bob], active_time_intervals: [business-hours], mute_time_intervals: [christmas]}
  - {name: always, to: [bob, alice]}
";

    fn config() -> Config {
        Config::from_yaml(CONFIG, Path::new("test.yml"), Path::new("."), &|_| None).unwrap()
    }

    fn at<'a>(config: &'a Config, when: &str) -> At<'a> {
        At::new(
            &config.schedules,
            &config.time_intervals,
            &config.quiet_hours,
            when.parse().unwrap(),
        )
    }

    #[test]
    fn a_route_reaches_its_recipients_and_who_is_on_call_each_once() {
        let config = config();
        let critical = &config.routes[0];
        assert_eq!(
            at(&config, "2026-11-25T12:00:00Z").recipients(critical),
            ["alice", "bob"]
        );
        assert_eq!(
            at(&config, "2026-12-01T12:00:00Z").recipients(critical),
            ["alice", "bob", "carol"]
        );
        // The handoff is at 09:00 in Berlin: 08:00 UTC in winter.
        assert_eq!(
            recipients_at(
                critical,
                &config.schedules,
                "2026-11-30T07:59:00Z".parse().unwrap()
            ),
            ["alice", "bob"]
        );
        assert_eq!(
            recipients_at(
                critical,
                &config.schedules,
                "2026-11-30T08:00:00Z".parse().unwrap()
            ),
            ["alice", "bob", "carol"]
        );
    }

    #[test]
    fn a_route_is_muted_outside_its_active_and_inside_its_mute_intervals() {
        let config = config();
        let (office, always) = (&config.routes[1], &config.routes[2]);
        let muted = |when: &str| at(&config, when).muted(office);
        assert!(!muted("2026-11-25T12:00:00Z"), "Wednesday 13:00 in Berlin");
        assert!(muted("2026-11-25T16:00:00Z"), "17:00 in Berlin is the end");
        assert!(muted("2026-11-28T12:00:00Z"), "a Saturday");
        assert!(muted("2026-12-24T12:00:00Z"), "a Thursday, but Christmas");
        assert!(!muted("2026-12-23T12:00:00Z"));
        for when in ["2026-11-28T12:00:00Z", "2026-12-24T12:00:00Z"] {
            assert!(!at(&config, when).muted(always), "{when}");
        }
    }

    #[test]
    fn quiet_hours_hold_back_unless_the_route_pages_through_them() {
        let config = config();
        let (critical, always) = (&config.routes[0], &config.routes[2]);
        let night = at(&config, "2026-11-25T02:00:00Z");
        assert!(night.quiet(always, "bob"));
        assert!(!night.quiet(critical, "bob"), "ignore_quiet_hours");
        assert!(!night.quiet(always, "alice"), "no quiet hours");
        assert!(!at(&config, "2026-11-25T12:00:00Z").quiet(always, "bob"));
    }
}
