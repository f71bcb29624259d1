//! Quiet hours: the time intervals in which a person is not texted (their SMS are held back and
//! counted) unless a route pages through them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::oncall::timeinterval::{NamedIntervals, any_named_contains};

/// Each person's quiet hours, by phone-book name: names of time intervals.
pub type QuietHours = BTreeMap<String, Vec<String>>;

/// Whether `recipient` is in their quiet hours at `at`.
pub fn in_quiet_hours(
    quiet_hours: &QuietHours,
    intervals: &NamedIntervals,
    recipient: &str,
    at: DateTime<Utc>,
) -> bool {
    quiet_hours
        .get(recipient)
        .is_some_and(|names| any_named_contains(intervals, names, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::timeinterval::{RawTimeInterval, RawTimeRange, TimeInterval};

    /// `nights` from 22:00 to 07:00 in Berlin.
    fn nights() -> NamedIntervals {
        let range = |start: &str, end: &str| RawTimeRange {
            start_time: start.to_string(),
            end_time: end.to_string(),
        };
        let raw = RawTimeInterval {
            times: Some(vec![range("22:00", "24:00"), range("00:00", "07:00")]),
            location: Some("Europe/Berlin".to_string()),
            ..RawTimeInterval::default()
        };
        NamedIntervals::from([(
            "nights".to_string(),
            vec![TimeInterval::parse(&raw).unwrap()],
        )])
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_person_is_in_quiet_hours_inside_one_of_their_intervals() {
        let quiet_hours = QuietHours::from([
            ("bob".to_string(), vec!["nights".to_string()]),
            ("carol".to_string(), vec!["undefined".to_string()]),
        ]);
        let quiet = |who: &str, when: &str| in_quiet_hours(&quiet_hours, &nights(), who, at(when));
        // 03:00 and 23:30 in Berlin (UTC+1 in winter, +2 in summer); 07:00 is the end, exclusive.
        assert!(quiet("bob", "2026-11-25T02:00:00Z"));
        assert!(quiet("bob", "2026-07-01T21:30:00Z"));
        assert!(!quiet("bob", "2026-11-25T06:00:00Z"));
        assert!(!quiet("bob", "2026-11-25T11:00:00Z"));
        assert!(!quiet("alice", "2026-11-25T02:00:00Z"), "no quiet hours");
        assert!(
            !quiet("carol", "2026-11-25T02:00:00Z"),
            "an interval that is not defined contains nothing"
        );
    }
}
