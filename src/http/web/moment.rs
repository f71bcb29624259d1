//! Instants as the pages show them: the date and time people read (in UTC, or in a schedule's
//! time zone as its SMS say it), the exact instant for the `<time>` element, and how long ago or
//! ahead that is by the server's clock. No script in the browser computes anything.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};

use crate::clock::Millis;
use crate::oncall::{Schedule, ShowYear};

/// Less than this from now is "just now".
const JUST_NOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
    /// `Wed 25 Nov 10:00 UTC`.
    pub shown: String,
    /// `just now`, `12m ago`, `in 1h 5m`.
    pub relative: String,
}

impl Moment {
    /// `at` in UTC, with the year when it is not `now`'s.
    pub fn utc(at: DateTime<Utc>, now: DateTime<Utc>) -> Moment {
        let format = if at.year() == now.year() {
            "%a %d %b %H:%M UTC"
        } else {
            "%a %d %b %Y %H:%M UTC"
        };
        Moment::shown_as(at, now, at.format(format).to_string())
    }

    /// `at` (Unix ms) in UTC.
    pub fn utc_millis(at: Millis, now: DateTime<Utc>) -> Moment {
        Moment::utc(crate::clock::datetime(at), now)
    }

    /// `at` in `schedule`'s time zone, as its shift SMS say it (`Mon 30 Nov 09:00`).
    pub fn local(schedule: &Schedule, at: DateTime<Utc>, now: DateTime<Utc>) -> Moment {
        let shown = schedule.local(Some(at), ShowYear::OutsideYearOf(now));
        Moment::shown_as(at, now, shown)
    }

    fn shown_as(at: DateTime<Utc>, now: DateTime<Utc>, shown: String) -> Moment {
        Moment {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            shown,
            relative: relative(at, now),
        }
    }
}

/// How far `at` is from `now`, in the words of the SMS (`text::duration`).
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let (ahead, gap) = match (at - now).to_std() {
        Ok(gap) => (true, gap),
        Err(_) => (false, (now - at).to_std().unwrap_or_default()),
    };
    if gap < JUST_NOW {
        return "just now".to_string();
    }
    let gap = crate::text::duration::short(gap);
    if ahead {
        format!("in {gap}")
    } else {
        format!("{gap} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn an_instant_reads_in_utc_with_how_far_it_is_from_now() {
        let now = at("2026-11-25T10:00:00Z");
        let shown = |t: &str| {
            let m = Moment::utc(at(t), now);
            format!("{} ({})", m.shown, m.relative)
        };
        assert_eq!(
            shown("2026-11-25T10:00:00Z"),
            "Wed 25 Nov 10:00 UTC (just now)"
        );
        assert_eq!(
            shown("2026-11-25T09:59:01Z"),
            "Wed 25 Nov 09:59 UTC (just now)"
        );
        assert_eq!(
            shown("2026-11-25T09:48:00Z"),
            "Wed 25 Nov 09:48 UTC (12m ago)"
        );
        assert_eq!(
            shown("2026-11-25T11:05:00Z"),
            "Wed 25 Nov 11:05 UTC (in 1h 5m)"
        );
        assert_eq!(
            shown("2027-01-04T08:00:00Z"),
            "Mon 04 Jan 2027 08:00 UTC (in 39d 22h)"
        );
        assert_eq!(
            Moment::utc(at("2026-11-25T09:48:00Z"), now).iso,
            "2026-11-25T09:48:00Z"
        );
    }

    #[test]
    fn an_instant_past_what_a_date_holds_is_shown_all_the_same() {
        let now = at("2026-11-25T10:00:00Z");
        let far = Moment::utc_millis(u64::MAX, now);
        assert_eq!(far.shown, "Thu 01 Jan 1970 00:00 UTC");
        assert_eq!(far.relative, "20782d 10h ago");
    }
}
