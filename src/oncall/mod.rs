//! Who is on call: a rotation of people with a shift length and a first handoff in the
//! schedule's time zone, and overrides on top (the later entry wins). Handoffs stay at the same
//! local time across DST changes: a weekly shift that starts Monday 09:00 in Europe/Berlin starts
//! Monday 09:00 there in summer and in winter. Pure functions of an explicit time.

pub mod calendar;
pub mod quiet_hours;
pub mod timeinterval;

use std::time::Duration;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, Months, NaiveDateTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    pub time_zone: Tz,
    /// Phone-book names, in order; never empty.
    pub members: Vec<String>,
    /// At least an hour.
    pub shift: Duration,
    /// The first handoff, in local time: `members[0]` from then.
    pub start: NaiveDateTime,
    pub overrides: Vec<Override>,
    /// SMS the incoming person at each handoff.
    pub notify_shift_start: bool,
}

/// Someone else on call from `from` until `to` (local times, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
    pub who: String,
}

/// One stretch of time with the same person on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift<'a> {
    pub who: &'a str,
    pub from: DateTime<Utc>,
    /// `None`: until further notice.
    pub until: Option<DateTime<Utc>>,
}

/// An instant as `--at` takes it: RFC 3339, years 1970 to 9999, in the offset it was written
/// with (for showing it; decisions take it as UTC).
pub fn parse_at(text: &str) -> Result<DateTime<FixedOffset>, String> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{e}; use RFC 3339, e.g. 2026-12-06T03:00:00+01:00"))?;
    if !(1970..=9999).contains(&at.with_timezone(&Utc).year()) {
        return Err("must be in the years 1970 to 9999".to_string());
    }
    Ok(at)
}

/// A schedule at an instant, for `alertmanager-sipgate oncall` and `GET /api/v1/oncall`: names
/// and times, never numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleView {
    pub schedule: String,
    pub time_zone: String,
    pub on_call: String,
    pub since: DateTime<Utc>,
    /// `null`: until further notice.
    pub until: Option<DateTime<Utc>>,
    /// The handoffs after `until`'s: who takes over when, and until when.
    pub next: Vec<HandoffView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandoffView {
    pub at: DateTime<Utc>,
    pub who: String,
    pub until: Option<DateTime<Utc>>,
}

/// When a local time shown to people names its year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowYear {
    /// When it is not the year of this instant, the one looked at: a list of handoffs seen from
    /// December shows those in January with their year.
    OutsideYearOf(DateTime<Utc>),
    /// Only when it is not within the year after this instant: an SMS sent on 28 December that
    /// says "until Mon 04 Jan 09:00" can only mean the coming January, and stays five
    /// characters shorter.
    FromAYearAfter(DateTime<Utc>),
}

/// How far the search for the next change of person looks, in boundaries; beyond it a shift
/// has no end ("until further notice"), as for a rotation of one.
const HORIZON: usize = 1_000;

/// The longest shift the config takes.
pub const MAX_SHIFT: Duration = Duration::from_secs(52 * 7 * 86_400);

impl Schedule {
    /// A local time as an instant: the earlier one when the clock is set back and the time
    /// happens twice; when the clock is set forward and it does not happen at all, the instant
    /// it would have had with the offset before the change (02:30 in a skipped hour is 03:30).
    pub fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.time_zone.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
            LocalResult::None => {
                let before = local - chrono::Duration::hours(6);
                let offset = self
                    .time_zone
                    .from_local_datetime(&before)
                    .earliest()
                    .map_or(0, |t| t.offset().fix().local_minus_utc());
                Utc.from_utc_datetime(&(local - chrono::Duration::seconds(offset.into())))
            }
        }
    }

    fn shift_length(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.shift.min(MAX_SHIFT)).unwrap_or(chrono::Duration::weeks(1))
    }

    /// The `k`th handoff of the rotation (negative: before the start), in local time; the
    /// config's bounds on shifts and dates keep it far from chrono's range, and past it the
    /// calendar's end stands in.
    fn handoff(&self, k: i64) -> NaiveDateTime {
        i32::try_from(k)
            .ok()
            .and_then(|k| self.shift_length().checked_mul(k))
            .and_then(|offset| self.start.checked_add_signed(offset))
            .unwrap_or(if k < 0 {
                NaiveDateTime::MIN
            } else {
                NaiveDateTime::MAX
            })
    }

    /// The number of the rotation's shift that contains `at`.
    fn rotation_shift(&self, at: DateTime<Utc>) -> i64 {
        let local = at.with_timezone(&self.time_zone).naive_local();
        let length = self.shift_length().num_seconds().max(1);
        let mut k = (local - self.start).num_seconds().div_euclid(length);
        // Local time runs unevenly around DST changes: settle on the shift by instants.
        while self.instant(self.handoff(k)) > at {
            k -= 1;
        }
        while self.instant(self.handoff(k + 1)) <= at {
            k += 1;
        }
        k
    }

    fn member(&self, k: i64) -> &str {
        let n = self.members.len().max(1) as i64;
        self.members
            .get(k.rem_euclid(n) as usize)
            .map_or("", String::as_str)
    }

    /// Who is on call at `at`.
    pub fn who(&self, at: DateTime<Utc>) -> &str {
        self.overrides
            .iter()
            .rev()
            .find(|o| self.instant(o.from) <= at && at < self.instant(o.to))
            .map_or_else(|| self.member(self.rotation_shift(at)), |o| o.who.as_str())
    }

    /// The instants after `at` (or, with `backwards`, at or before it, latest first) where the
    /// person may change: the rotation's handoffs and the overrides' edges.
    fn boundaries(
        &self,
        at: DateTime<Utc>,
        backwards: bool,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut edges: Vec<DateTime<Utc>> = self
            .overrides
            .iter()
            .flat_map(|o| [self.instant(o.from), self.instant(o.to)])
            .filter(|t| if backwards { *t <= at } else { *t > at })
            .collect();
        edges.sort_unstable();
        edges.dedup();
        if backwards {
            edges.reverse();
        }
        let current = self.rotation_shift(at);
        let step: i64 = if backwards { -1 } else { 1 };
        let first = if backwards { current } else { current + 1 };
        let mut handoffs = (0..)
            .map(move |i: i64| self.instant(self.handoff(first + step * i)))
            .peekable();
        let mut edges = edges.into_iter().peekable();
        let earlier_first = move |a: &DateTime<Utc>, b: &DateTime<Utc>| {
            if backwards { a > b } else { a < b }
        };
        std::iter::from_fn(move || match (handoffs.peek(), edges.peek()) {
            (Some(h), Some(e)) if earlier_first(e, h) => edges.next(),
            (Some(h), Some(e)) if e == h => {
                edges.next();
                handoffs.next()
            }
            _ => handoffs.next(),
        })
        .take(HORIZON)
    }

    /// The instant before which `who(at)` stays on call; `None` when no change comes within
    /// the horizon.
    fn until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let who = self.who(at);
        self.boundaries(at, false).find(|b| self.who(*b) != who)
    }

    /// When the person on call at `at` took over. When no handover comes within `HORIZON`
    /// boundaries back (a rotation of one, who never hands over), the rotation's start, if it
    /// has begun: not a date a thousand shifts before it.
    fn since(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let who = self.who(at);
        let mut last = at;
        for boundary in self.boundaries(at, true) {
            last = boundary;
            if self.who(boundary - chrono::Duration::seconds(1)) != who {
                return boundary;
            }
        }
        // The walk saw no handover back to `last`. If it reached the start, or only rotation
        // handoffs (which never change a rotation of one) lie between the start and `at`, the
        // person has been on call since the start.
        let began = self.instant(self.start);
        let overridden_since = self.overrides.iter().any(|o| {
            [o.from, o.to]
                .iter()
                .any(|edge| (began..=at).contains(&self.instant(*edge)))
        });
        if began <= at && (last <= began || !overridden_since) {
            began
        } else {
            last
        }
    }

    /// The person on call at `at`, since when and until when.
    pub fn on_call(&self, at: DateTime<Utc>) -> Shift<'_> {
        Shift {
            who: self.who(at),
            from: self.since(at),
            until: self.until(at),
        }
    }

    /// The shift at `at` and the `next` after it (fewer when a shift has no end).
    pub fn shifts(&self, at: DateTime<Utc>, next: usize) -> Vec<Shift<'_>> {
        self.shifts_from(at).take(next + 1).collect()
    }

    /// The shift at `at` and every one after it, in order; the last is one without end.
    pub fn shifts_from(&self, at: DateTime<Utc>) -> impl Iterator<Item = Shift<'_>> + '_ {
        let mut next = Some(self.on_call(at));
        std::iter::from_fn(move || {
            let shift = next.take()?;
            next = shift.until.map(|start| Shift {
                who: self.who(start),
                from: start,
                until: self.until(start),
            });
            Some(shift)
        })
    }

    /// Who is on call at `at` and the `next` handoffs.
    pub fn view(&self, at: DateTime<Utc>, next: usize) -> ScheduleView {
        let shifts = self.shifts(at, next);
        let now = &shifts[0];
        ScheduleView {
            schedule: self.name.clone(),
            time_zone: self.time_zone.name().to_string(),
            on_call: now.who.to_string(),
            since: now.from,
            until: now.until,
            next: shifts[1..]
                .iter()
                .map(|s| HandoffView {
                    at: s.from,
                    who: s.who.to_string(),
                    until: s.until,
                })
                .collect(),
        }
    }

    /// `instant` in the schedule's time zone, as people read it: `Mon 12 Jan 09:00`, with the
    /// year where `year` asks for it (`Mon 04 Jan 2027 09:00`), or `further notice` for a shift
    /// without end.
    pub fn local(&self, instant: Option<DateTime<Utc>>, year: ShowYear) -> String {
        let Some(instant) = instant else {
            return "further notice".to_string();
        };
        let local = instant.with_timezone(&self.time_zone);
        let with_year = match year {
            ShowYear::OutsideYearOf(reference) => {
                local.year() != reference.with_timezone(&self.time_zone).year()
            }
            ShowYear::FromAYearAfter(reference) => {
                let a_year_later = reference
                    .with_timezone(&self.time_zone)
                    .naive_local()
                    .checked_add_months(Months::new(12));
                instant < reference
                    || a_year_later.is_some_and(|later| local.naive_local() >= later)
            }
        };
        let format = if with_year {
            "%a %d %b %Y %H:%M"
        } else {
            "%a %d %b %H:%M"
        };
        local.format(format).to_string()
    }

    /// Everyone this schedule can page.
    pub fn people(&self) -> Vec<&str> {
        let mut people: Vec<&str> = self.members.iter().map(String::as_str).collect();
        for o in &self.overrides {
            if !people.contains(&o.who.as_str()) {
                people.push(&o.who);
            }
        }
        people
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate};

    pub(crate) fn local(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").unwrap()
    }

    pub(crate) fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Weekly, Mondays 09:00 in Berlin, from Monday 5 January 2026: alice, bob, carol.
    fn weekly() -> Schedule {
        Schedule {
            name: "primary".into(),
            time_zone: chrono_tz::Europe::Berlin,
            members: vec!["alice".into(), "bob".into(), "carol".into()],
            shift: Duration::from_secs(7 * 86_400),
            start: local("2026-01-05T09:00"),
            overrides: Vec::new(),
            notify_shift_start: false,
        }
    }

    #[test]
    fn the_rotation_hands_over_at_the_start_and_every_shift() {
        let s = weekly();
        assert_eq!(
            s.who(utc("2026-01-05T08:00:00Z")),
            "alice",
            "09:00 CET is 08:00 UTC"
        );
        assert_eq!(
            s.who(utc("2026-01-05T07:59:59Z")),
            "carol",
            "before the start it runs backwards"
        );
        assert_eq!(s.who(utc("2026-01-12T07:59:59Z")), "alice");
        assert_eq!(s.who(utc("2026-01-12T08:00:00Z")), "bob");
        assert_eq!(s.who(utc("2026-01-19T08:00:00Z")), "carol");
        assert_eq!(s.who(utc("2026-01-26T08:00:00Z")), "alice");
    }

    #[test]
    fn handoffs_keep_their_local_time_across_both_dst_changes_for_years() {
        let s = weekly();
        let berlin = chrono_tz::Europe::Berlin;
        // Every Monday 09:00 Berlin time from 2026 to 2030 is a handoff, in summer (07:00 UTC)
        // and in winter (08:00 UTC), and the rotation never skips or repeats anyone.
        let mut day = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        let mut expected = 0usize;
        while day.year() <= 2030 {
            let handoff = berlin
                .from_local_datetime(&day.and_hms_opt(9, 0, 0).unwrap())
                .unwrap()
                .with_timezone(&Utc);
            let name = ["alice", "bob", "carol"][expected % 3];
            assert_eq!(s.who(handoff), name, "{handoff}");
            let before = handoff - chrono::Duration::seconds(1);
            assert_eq!(
                s.who(before),
                ["alice", "bob", "carol"][(expected + 2) % 3],
                "{before}"
            );
            assert_eq!(s.on_call(handoff).from, handoff);
            day += chrono::Duration::weeks(1);
            expected += 1;
        }
        // The Monday after the spring change (29 March 2026): 09:00 CEST = 07:00 UTC.
        assert_eq!(
            s.on_call(utc("2026-03-30T07:00:00Z")).from,
            utc("2026-03-30T07:00:00Z")
        );
        // The Monday after the autumn change (25 October 2026): 09:00 CET = 08:00 UTC.
        assert_eq!(
            s.on_call(utc("2026-10-26T08:00:00Z")).from,
            utc("2026-10-26T08:00:00Z")
        );
    }

    #[test]
    fn a_shift_through_a_dst_change_is_an_hour_shorter_or_longer() {
        let mut s = weekly();
        s.shift = Duration::from_secs(86_400);
        s.start = local("2026-03-27T02:30");
        // 29 March 2026, 02:30 does not exist in Berlin: that handoff is at 03:30 CEST, the
        // instant 02:30 CET would have been.
        assert_eq!(
            s.instant(local("2026-03-29T02:30")),
            utc("2026-03-29T01:30:00Z")
        );
        let shift = s.on_call(utc("2026-03-28T12:00:00Z"));
        assert_eq!(shift.from, utc("2026-03-28T01:30:00Z"));
        assert_eq!(shift.until, Some(utc("2026-03-29T01:30:00Z")));
        let next = s.on_call(utc("2026-03-29T12:00:00Z"));
        assert_eq!(
            next.until,
            Some(utc("2026-03-30T00:30:00Z")),
            "23 hours: 02:30 CEST"
        );
        // 25 October 2026, 02:30 happens twice: the handoff is the first of them (CEST).
        assert_eq!(
            s.instant(local("2026-10-25T02:30")),
            utc("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn twelve_hour_shifts_stay_at_nine_and_twenty_one() {
        let mut s = weekly();
        s.shift = Duration::from_secs(12 * 3600);
        s.members = vec!["day".into(), "night".into()];
        s.start = local("2026-03-28T09:00");
        let shifts = s.shifts(utc("2026-03-28T10:00:00Z"), 3);
        let froms: Vec<_> = shifts.iter().map(|sh| (sh.who, sh.from)).collect();
        assert_eq!(
            froms,
            [
                ("day", utc("2026-03-28T08:00:00Z")),
                ("night", utc("2026-03-28T20:00:00Z")),
                ("day", utc("2026-03-29T07:00:00Z")),
                ("night", utc("2026-03-29T19:00:00Z")),
            ]
        );
    }

    #[test]
    fn overrides_replace_at_their_edges_and_the_later_one_wins() {
        let mut s = weekly();
        s.overrides = vec![
            Override {
                from: local("2026-12-24T00:00"),
                to: local("2026-12-27T00:00"),
                who: "bob".into(),
            },
            Override {
                from: local("2026-12-25T00:00"),
                to: local("2026-12-26T00:00"),
                who: "dave".into(),
            },
        ];
        // The week of 21 December 2026 is the rotation's 51st shift (50 % 3 = 2): carol.
        assert_eq!(s.who(utc("2026-12-23T22:59:59Z")), "carol");
        assert_eq!(
            s.who(utc("2026-12-23T23:00:00Z")),
            "bob",
            "from is inclusive"
        );
        assert_eq!(
            s.who(utc("2026-12-24T23:00:00Z")),
            "dave",
            "the later entry wins"
        );
        assert_eq!(s.who(utc("2026-12-25T23:00:00Z")), "bob");
        assert_eq!(
            s.who(utc("2026-12-26T23:00:00Z")),
            "carol",
            "to is exclusive"
        );
        let shifts = s.shifts(utc("2026-12-23T12:00:00Z"), 5);
        let plan: Vec<_> = shifts
            .iter()
            .map(|sh| (sh.who, sh.from, sh.until))
            .collect();
        assert_eq!(
            plan,
            [
                (
                    "carol",
                    utc("2026-12-21T08:00:00Z"),
                    Some(utc("2026-12-23T23:00:00Z"))
                ),
                (
                    "bob",
                    utc("2026-12-23T23:00:00Z"),
                    Some(utc("2026-12-24T23:00:00Z"))
                ),
                (
                    "dave",
                    utc("2026-12-24T23:00:00Z"),
                    Some(utc("2026-12-25T23:00:00Z"))
                ),
                (
                    "bob",
                    utc("2026-12-25T23:00:00Z"),
                    Some(utc("2026-12-26T23:00:00Z"))
                ),
                (
                    "carol",
                    utc("2026-12-26T23:00:00Z"),
                    Some(utc("2026-12-28T08:00:00Z"))
                ),
                (
                    "alice",
                    utc("2026-12-28T08:00:00Z"),
                    Some(utc("2027-01-04T08:00:00Z"))
                ),
            ]
        );
        assert_eq!(s.people(), ["alice", "bob", "carol", "dave"]);
    }

    #[test]
    fn a_rotation_of_one_is_on_call_until_further_notice() {
        let mut s = weekly();
        s.members = vec!["alice".into()];
        let shifts = s.shifts(utc("2026-06-01T12:00:00Z"), 5);
        assert_eq!(shifts.len(), 1);
        assert_eq!((shifts[0].who, shifts[0].until), ("alice", None));
        // On call since the rotation began (Monday 5 January 2026, 09:00 in Berlin).
        assert_eq!(shifts[0].from, utc("2026-01-05T08:00:00Z"));
        // Hourly shifts that began more than the walk's thousand handoffs ago: still the start.
        let mut hourly = s.clone();
        hourly.shift = Duration::from_secs(3600);
        assert_eq!(
            hourly.on_call(utc("2026-06-01T12:00:00Z")).from,
            utc("2026-01-05T08:00:00Z")
        );
        // An override that spans the rotation's start: carol since her override began.
        s.overrides = vec![Override {
            from: local("2026-01-05T08:00"),
            to: local("2026-01-05T12:00"),
            who: "carol".into(),
        }];
        let during = s.on_call(utc("2026-01-05T09:00:00Z"));
        assert_eq!(
            (during.who, during.from),
            ("carol", utc("2026-01-05T07:00:00Z"))
        );
        let after = s.on_call(utc("2026-06-01T12:00:00Z"));
        assert_eq!(
            (after.who, after.from),
            ("alice", utc("2026-01-05T11:00:00Z"))
        );
        let now = utc("2026-06-01T12:00:00Z");
        for year in [ShowYear::OutsideYearOf(now), ShowYear::FromAYearAfter(now)] {
            assert_eq!(s.local(None, year), "further notice");
        }
        // The longest shift the config takes, far into the future: no overflow.
        s.members = vec!["alice".into(), "bob".into()];
        s.shift = MAX_SHIFT;
        let far = s.shifts(utc("9999-12-01T00:00:00Z"), 100);
        assert!(!far.is_empty());
    }

    #[test]
    fn a_list_names_the_year_of_dates_outside_the_year_looked_at() {
        let s = weekly();
        // Sunday 20 December 2026, 12:00 in Berlin.
        let year = ShowYear::OutsideYearOf(utc("2026-12-20T11:00:00Z"));
        let show = |t: &str| s.local(Some(utc(t)), year);
        assert_eq!(show("2026-12-28T08:00:00Z"), "Mon 28 Dec 09:00");
        assert_eq!(show("2027-01-04T08:00:00Z"), "Mon 04 Jan 2027 09:00");
        assert_eq!(show("2025-12-29T08:00:00Z"), "Mon 29 Dec 2025 09:00");
        // The year in Berlin decides: 23:30 UTC on New Year's Eve is already next year there.
        assert_eq!(show("2026-12-31T23:30:00Z"), "Fri 01 Jan 2027 00:30");
        let new_year = ShowYear::OutsideYearOf(utc("2026-12-31T23:30:00Z"));
        assert_eq!(
            s.local(Some(utc("2027-01-04T08:00:00Z")), new_year),
            "Mon 04 Jan 09:00"
        );
    }

    #[test]
    fn an_sms_names_the_year_only_of_dates_a_year_or_more_ahead() {
        let s = weekly();
        // A shift notice sent on Monday 28 December 2026, 09:00 in Berlin.
        let year = ShowYear::FromAYearAfter(utc("2026-12-28T08:00:00Z"));
        let show = |t: &str| s.local(Some(utc(t)), year);
        assert_eq!(show("2027-01-04T08:00:00Z"), "Mon 04 Jan 09:00");
        assert_eq!(show("2027-12-27T08:00:00Z"), "Mon 27 Dec 09:00");
        assert_eq!(show("2027-12-28T08:00:00Z"), "Tue 28 Dec 2027 09:00");
        // Never the case for a shift's end, but not misread as next year if it were.
        assert_eq!(show("2026-12-21T08:00:00Z"), "Mon 21 Dec 2026 09:00");
        // Near the end of the calendar nothing overflows.
        let last = ShowYear::FromAYearAfter(utc("9999-06-01T00:00:00Z"));
        assert_eq!(
            s.local(Some(utc("9999-12-01T00:00:00Z")), last),
            "Wed 01 Dec 01:00"
        );
    }

    #[test]
    fn an_override_for_whoever_is_on_call_anyway_is_no_handoff() {
        let mut s = weekly();
        s.overrides = vec![Override {
            from: local("2026-01-06T00:00"),
            to: local("2026-01-07T00:00"),
            who: "alice".into(),
        }];
        let shift = s.on_call(utc("2026-01-06T12:00:00Z"));
        assert_eq!(shift.from, utc("2026-01-05T08:00:00Z"));
        assert_eq!(shift.until, Some(utc("2026-01-12T08:00:00Z")));
    }
}
