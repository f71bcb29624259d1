//! On-call shifts as an iCalendar feed (RFC 5545) that calendar apps subscribe to: a schedule's
//! shifts, or one person's shifts in every schedule, from the shift under way to 26 weeks ahead.
//! Who is on call when comes from `Schedule::shifts_from`, the function paging uses, so that the
//! calendar shows what paging does, overrides and DST changes included.
//!
//! Times are written in UTC (`DTSTART:20270328T013000Z`) rather than local times with a
//! VTIMEZONE: a VTIMEZONE would restate the zone's rules, and an app that reads them differently
//! from the tz database the service pages by would show a handoff at another instant. UTC
//! instants are correct by construction, also for handoffs at a local time that a DST change
//! skips or repeats; every app shows them in its viewer's own zone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Schedule, Shift};

/// Whose shifts a feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// Everyone's shifts in this schedule.
    Schedule(String),
    /// This person's shifts in every schedule.
    Person(String),
}

/// How far ahead a feed lists shifts.
const WEEKS_AHEAD: i64 = 26;

/// The longest line RFC 5545 allows, in octets without the CRLF; longer ones are folded.
const LINE_OCTETS: usize = 75;

/// One shift in a feed: `end` is the end of the feed for a shift without end.
struct Event<'a> {
    schedule: &'a Schedule,
    shift: Shift<'a>,
    end: DateTime<Utc>,
}

/// The feed for `feed` at `now`: the shift under way (from its real start) and every shift
/// starting within 26 weeks, each until its real end.
pub fn render(feed: &Feed, schedules: &BTreeMap<String, Schedule>, now: DateTime<Utc>) -> String {
    let horizon = now
        .checked_add_signed(chrono::Duration::weeks(WEEKS_AHEAD))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let (name, mut events) = match feed {
        Feed::Schedule(name) => (
            name,
            schedules
                .get(name)
                .map(|s| shifts(s, now, horizon))
                .unwrap_or_default(),
        ),
        Feed::Person(name) => (
            name,
            schedules
                .values()
                .filter(|s| s.people().contains(&name.as_str()))
                .flat_map(|s| shifts(s, now, horizon))
                .filter(|e| e.shift.who == name)
                .collect(),
        ),
    };
    events.sort_by(|a, b| (a.shift.from, &a.schedule.name).cmp(&(b.shift.from, &b.schedule.name)));
    let mut out = String::new();
    for line in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//alertmanager-sipgate//on-call calendar//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        &format!("X-WR-CALNAME:{}", text(&format!("{name} on call"))),
        // How often to fetch it again, for apps that take the hint.
        "REFRESH-INTERVAL;VALUE=DURATION:PT1H",
        "X-PUBLISHED-TTL:PT1H",
    ] {
        fold(line, &mut out);
    }
    for event in &events {
        write_event(feed, event, now, &mut out);
    }
    fold("END:VCALENDAR", &mut out);
    out
}

/// The shifts of `schedule` under way at `now` or starting before `horizon`.
fn shifts<'a>(
    schedule: &'a Schedule,
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
) -> Vec<Event<'a>> {
    schedule
        .shifts_from(now)
        .take_while(|shift| shift.from < horizon)
        .map(|shift| Event {
            schedule,
            end: shift.until.unwrap_or(horizon),
            shift,
        })
        .collect()
}

fn write_event(feed: &Feed, event: &Event<'_>, now: DateTime<Utc>, out: &mut String) {
    let (schedule, who) = (&event.schedule.name, event.shift.who);
    let summary = match feed {
        Feed::Schedule(_) => who,
        Feed::Person(_) => schedule,
    };
    let zone = event.schedule.time_zone;
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&zone)
            .format("%a %d %b %Y %H:%M %Z")
            .to_string()
    };
    let until = event
        .shift
        .until
        .map_or_else(|| "further notice".to_string(), local);
    let description = format!(
        "{who} on call in {schedule} from {} until {until} ({})",
        local(event.shift.from),
        zone.name()
    );
    for line in [
        "BEGIN:VEVENT",
        &format!("UID:{}", uid(feed, schedule, who, event.shift.from)),
        &format!("DTSTAMP:{}", instant(now)),
        &format!("DTSTART:{}", instant(event.shift.from)),
        &format!("DTEND:{}", instant(event.end)),
        &format!("SUMMARY:{}", text(&format!("On call: {summary}"))),
        &format!("DESCRIPTION:{}", text(&description)),
        // On call is not busy: the shift must not block the person's free/busy time.
        "TRANSP:TRANSPARENT",
        "END:VEVENT",
    ] {
        fold(line, out);
    }
}

/// The same on every fetch and every replica, so that apps update a shift instead of adding it
/// again: a hash of the kind of feed, the schedule, the person and the start. Another person or
/// start is another event; a new end (an override cuts a shift short) updates it. The kind
/// keeps the event of a schedule's feed apart from the same shift in the person's own feed.
fn uid(feed: &Feed, schedule: &str, who: &str, start: DateTime<Utc>) -> String {
    let kind = match feed {
        Feed::Schedule(_) => "schedule",
        Feed::Person(_) => "person",
    };
    let mut hash = Sha256::new();
    for part in [kind, schedule, who, &instant(start)] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let hex: String = hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{hex}@alertmanager-sipgate")
}

/// A DATE-TIME in UTC: `20270328T013000Z`.
fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Appends `line` with CRLF, folded into lines of at most 75 octets (RFC 5545 3.1): each
/// continuation starts with a space, and no character is split between two lines.
fn fold(line: &str, out: &mut String) {
    let mut octets = 0;
    for c in line.chars() {
        if octets + c.len_utf8() > LINE_OCTETS {
            out.push_str("\r\n ");
            octets = 1;
        }
        out.push(c);
        octets += c.len_utf8();
    }
    out.push_str("\r\n");
}

/// A TEXT value (RFC 5545 3.3.11): backslash, semicolon and comma escaped, a line break as
/// `\n`, other control characters (which TEXT cannot hold) left out.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | ';' | ',' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::oncall::Override;
    use crate::oncall::tests::{local, utc};

    fn schedule(name: &str, members: &[&str], shift_hours: u64, start: &str) -> Schedule {
        Schedule {
            name: name.into(),
            time_zone: chrono_tz::Europe::Berlin,
            members: members.iter().map(ToString::to_string).collect(),
            shift: Duration::from_secs(shift_hours * 3600),
            start: local(start),
            overrides: Vec::new(),
            notify_shift_start: false,
        }
    }

    fn by_name(schedules: Vec<Schedule>) -> BTreeMap<String, Schedule> {
        schedules.into_iter().map(|s| (s.name.clone(), s)).collect()
    }

    fn over(from: &str, to: &str, who: &str) -> Override {
        Override {
            from: local(from),
            to: local(to),
            who: who.into(),
        }
    }

    /// The content lines of a feed, unfolded.
    fn unfolded(feed: &str) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for line in feed.split("\r\n").filter(|l| !l.is_empty()) {
            match (line.strip_prefix(' '), lines.last_mut()) {
                (Some(rest), Some(last)) => last.push_str(rest),
                _ => lines.push(line.to_string()),
            }
        }
        lines
    }

    /// Each event as its `DTSTART`, `DTEND`, `SUMMARY` and `UID`.
    fn events(feed: &str) -> Vec<[String; 4]> {
        let mut events = Vec::new();
        let mut event: [String; 4] = Default::default();
        for line in unfolded(feed) {
            let (name, value) = line.split_once(':').unwrap();
            match name {
                "DTSTART" => event[0] = value.to_string(),
                "DTEND" => event[1] = value.to_string(),
                "SUMMARY" => event[2] = value.to_string(),
                "UID" => event[3] = value.to_string(),
                "END" if value == "VEVENT" => events.push(std::mem::take(&mut event)),
                _ => {}
            }
        }
        events
    }

    /// Each event as `start end summary`.
    fn plan(feed: &str) -> Vec<String> {
        events(feed)
            .into_iter()
            .map(|[start, end, summary, _]| format!("{start} {end} {summary}"))
            .collect()
    }

    #[test]
    fn a_small_schedule_feed_is_exactly_this_text() {
        // Quarterly shifts, Mondays 09:00 in Berlin, and carol over the spring DST change.
        let mut primary = schedule(
            "primary",
            &["alice", "bob"],
            13 * 7 * 24,
            "2026-01-05T09:00",
        );
        primary.overrides = vec![over("2027-03-27T22:00", "2027-03-28T12:00", "carol")];
        let feed = render(
            &Feed::Schedule("primary".into()),
            &by_name(vec![primary]),
            utc("2026-12-01T12:00:00Z"),
        );
        // Written with Python's zoneinfo and hashlib, not with this code.
        assert_eq!(
            feed,
            "BEGIN:VCALENDAR\r\n\
             VERSION:2.0\r\n\
             PRODID:-//alertmanager-sipgate//on-call calendar//EN\r\n\
             CALSCALE:GREGORIAN\r\n\
             METHOD:PUBLISH\r\n\
             X-WR-CALNAME:primary on call\r\n\
             REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n\
             X-PUBLISHED-TTL:PT1H\r\n\
             BEGIN:VEVENT\r\n\
             UID:2a090a5f788f24b79fb21f689eac9d4c@alertmanager-sipgate\r\n\
             DTSTAMP:20261201T120000Z\r\n\
             DTSTART:20261005T070000Z\r\n\
             DTEND:20270104T080000Z\r\n\
             SUMMARY:On call: bob\r\n\
             DESCRIPTION:bob on call in primary from Mon 05 Oct 2026 09:00 CEST until Mo\r\n \
             n 04 Jan 2027 09:00 CET (Europe/Berlin)\r\n\
             TRANSP:TRANSPARENT\r\n\
             END:VEVENT\r\n\
             BEGIN:VEVENT\r\n\
             UID:3dc188aed8904e63f6c2d415937692c7@alertmanager-sipgate\r\n\
             DTSTAMP:20261201T120000Z\r\n\
             DTSTART:20270104T080000Z\r\n\
             DTEND:20270327T210000Z\r\n\
             SUMMARY:On call: alice\r\n\
             DESCRIPTION:alice on call in primary from Mon 04 Jan 2027 09:00 CET until S\r\n \
             at 27 Mar 2027 22:00 CET (Europe/Berlin)\r\n\
             TRANSP:TRANSPARENT\r\n\
             END:VEVENT\r\n\
             BEGIN:VEVENT\r\n\
             UID:b4ce80e47c12d8a428615874cf5d1c27@alertmanager-sipgate\r\n\
             DTSTAMP:20261201T120000Z\r\n\
             DTSTART:20270327T210000Z\r\n\
             DTEND:20270328T100000Z\r\n\
             SUMMARY:On call: carol\r\n\
             DESCRIPTION:carol on call in primary from Sat 27 Mar 2027 22:00 CET until S\r\n \
             un 28 Mar 2027 12:00 CEST (Europe/Berlin)\r\n\
             TRANSP:TRANSPARENT\r\n\
             END:VEVENT\r\n\
             BEGIN:VEVENT\r\n\
             UID:e8ce5f692aeeaab4a5d4a105b0a214da@alertmanager-sipgate\r\n\
             DTSTAMP:20261201T120000Z\r\n\
             DTSTART:20270328T100000Z\r\n\
             DTEND:20270405T070000Z\r\n\
             SUMMARY:On call: alice\r\n\
             DESCRIPTION:alice on call in primary from Sun 28 Mar 2027 12:00 CEST until \r\n \
             Mon 05 Apr 2027 09:00 CEST (Europe/Berlin)\r\n\
             TRANSP:TRANSPARENT\r\n\
             END:VEVENT\r\n\
             BEGIN:VEVENT\r\n\
             UID:0a549138243609acc737ab7ad4eb50a4@alertmanager-sipgate\r\n\
             DTSTAMP:20261201T120000Z\r\n\
             DTSTART:20270405T070000Z\r\n\
             DTEND:20270705T070000Z\r\n\
             SUMMARY:On call: bob\r\n\
             DESCRIPTION:bob on call in primary from Mon 05 Apr 2027 09:00 CEST until Mo\r\n \
             n 05 Jul 2027 09:00 CEST (Europe/Berlin)\r\n\
             TRANSP:TRANSPARENT\r\n\
             END:VEVENT\r\n\
             END:VCALENDAR\r\n"
        );
    }

    #[test]
    fn daily_handoffs_at_0230_across_both_berlin_dst_changes_with_an_override() {
        // 02:30 is skipped on 28 March 2027 and happens twice on 25 October 2026; dave takes
        // 01:00 to 04:00 local time of both nights.
        let mut daily = schedule("daily", &["alice", "bob", "carol"], 24, "2026-10-01T02:30");
        daily.overrides = vec![
            over("2026-10-25T01:00", "2026-10-25T04:00", "dave"),
            over("2027-03-28T01:00", "2027-03-28T04:00", "dave"),
        ];
        let schedules = by_name(vec![daily]);
        let feed = Feed::Schedule("daily".into());
        let autumn = plan(&render(&feed, &schedules, utc("2026-10-20T12:00:00Z")));
        let at = autumn
            .iter()
            .position(|e| e.starts_with("20261024T003000Z"))
            .unwrap();
        assert_eq!(
            autumn[at..at + 4],
            [
                // 02:30 CEST to 01:00 CEST.
                "20261024T003000Z 20261024T230000Z On call: carol",
                // 01:00 CEST to 04:00 CET: four hours.
                "20261024T230000Z 20261025T030000Z On call: dave",
                // 04:00 CET to 02:30 CET; the 02:30 of the day is the first one, in CEST.
                "20261025T030000Z 20261026T013000Z On call: alice",
                "20261026T013000Z 20261027T013000Z On call: bob",
            ]
        );
        let spring = plan(&render(&feed, &schedules, utc("2027-03-01T12:00:00Z")));
        let at = spring
            .iter()
            .position(|e| e.starts_with("20270327T013000Z"))
            .unwrap();
        assert_eq!(
            spring[at..at + 4],
            [
                "20270327T013000Z 20270328T000000Z On call: alice",
                // 01:00 CET to 04:00 CEST: two hours.
                "20270328T000000Z 20270328T020000Z On call: dave",
                // The skipped 02:30 would have been 01:30 UTC, which dave covers; bob from
                // 04:00 CEST to 02:30 CEST.
                "20270328T020000Z 20270329T003000Z On call: bob",
                "20270329T003000Z 20270330T003000Z On call: carol",
            ]
        );
    }

    #[test]
    fn the_shift_under_way_is_listed_from_its_start_and_shifts_starting_within_26_weeks() {
        let weekly = schedule("weekly", &["alice", "bob"], 7 * 24, "2026-01-05T09:00");
        // Thursday 3 December 2026: bob's week began on Monday.
        let now = utc("2026-12-03T15:00:00Z");
        let plan = plan(&render(
            &Feed::Schedule("weekly".into()),
            &by_name(vec![weekly]),
            now,
        ));
        assert_eq!(plan[0], "20261130T080000Z 20261207T080000Z On call: bob");
        // 26 weeks later is Thursday 3 June 2027: the week from Monday 31 May is the last.
        assert_eq!(
            plan.last().unwrap(),
            "20270531T070000Z 20270607T070000Z On call: bob"
        );
        assert_eq!(plan.len(), 27);
    }

    #[test]
    fn a_shift_without_end_lasts_until_the_end_of_the_feed_and_says_so() {
        let mut alone = schedule("alone", &["alice"], 7 * 24, "2026-01-05T09:00");
        alone.overrides = vec![over("2026-12-24T00:00", "2026-12-27T00:00", "bob")];
        let feed = render(
            &Feed::Schedule("alone".into()),
            &by_name(vec![alone]),
            utc("2026-12-03T15:00:00Z"),
        );
        let plan = plan(&feed);
        // A rotation of one never hands over: alice is on call since the rotation began.
        assert_eq!(
            plan,
            [
                "20260105T080000Z 20261223T230000Z On call: alice",
                "20261223T230000Z 20261226T230000Z On call: bob",
                // 3 June 2027, 15:00 UTC: 26 weeks after now.
                "20261226T230000Z 20270603T150000Z On call: alice",
            ]
        );
        assert!(unfolded(&feed).contains(
            &"DESCRIPTION:alice on call in alone from Sun 27 Dec 2026 00:00 CET until further notice (Europe/Berlin)"
                .to_string()
        ));
    }

    #[test]
    fn a_person_feed_lists_that_person_s_shifts_in_every_schedule() {
        let primary = schedule("primary", &["alice", "bob"], 7 * 24, "2026-01-05T09:00");
        let mut secondary = schedule("secondary", &["bob", "alice"], 7 * 24, "2026-01-05T09:00");
        secondary.overrides = vec![over("2026-12-16T00:00", "2026-12-17T00:00", "carol")];
        let schedules = by_name(vec![primary, secondary]);
        let now = utc("2026-12-03T15:00:00Z");
        let alice = plan(&render(&Feed::Person("alice".into()), &schedules, now));
        assert_eq!(
            alice[..4],
            [
                "20261130T080000Z 20261207T080000Z On call: secondary",
                "20261207T080000Z 20261214T080000Z On call: primary",
                "20261214T080000Z 20261215T230000Z On call: secondary",
                "20261216T230000Z 20261221T080000Z On call: secondary",
            ]
        );
        assert_eq!(alice.len(), 28);
        let carol = render(&Feed::Person("carol".into()), &schedules, now);
        assert_eq!(
            plan(&carol),
            ["20261215T230000Z 20261216T230000Z On call: secondary"]
        );
        assert!(unfolded(&carol).contains(&"X-WR-CALNAME:carol on call".to_string()));
        // Nobody's: a calendar without events.
        assert_eq!(
            plan(&render(&Feed::Person("dave".into()), &schedules, now)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_shift_keeps_its_uid_at_every_now_and_uids_differ_between_shifts_and_feeds() {
        let mut primary = schedule("primary", &["alice", "bob"], 7 * 24, "2026-01-05T09:00");
        primary.overrides = vec![over("2026-12-24T00:00", "2026-12-27T00:00", "bob")];
        let schedules = by_name(vec![primary]);
        let uids = |feed: &Feed, now: &str| -> BTreeMap<String, String> {
            events(&render(feed, &schedules, utc(now)))
                .into_iter()
                .map(|[start, _, summary, uid]| (format!("{start} {summary}"), uid))
                .collect()
        };
        let schedule = Feed::Schedule("primary".into());
        let before = uids(&schedule, "2026-12-03T15:00:00Z");
        let after = uids(&schedule, "2026-12-19T03:00:00Z");
        let common: Vec<&String> = before.keys().filter(|k| after.contains_key(*k)).collect();
        assert!(common.len() > 20, "{common:?}");
        for key in common {
            assert_eq!(before[key], after[key], "{key}");
        }
        let distinct: std::collections::BTreeSet<&String> = before.values().collect();
        assert_eq!(distinct.len(), before.len());
        for uid in before.values() {
            assert!(uid.ends_with("@alertmanager-sipgate"), "{uid}");
        }
        // alice's shifts in her own feed are events of their own.
        let alice = uids(&Feed::Person("alice".into()), "2026-12-03T15:00:00Z");
        assert!(alice.values().all(|uid| !distinct.contains(uid)));
    }

    #[test]
    fn lines_are_folded_at_75_octets_and_never_inside_a_character() {
        let name = "Jürgen-Øystein-Ærøskøbing-Đorđević-Łukasz-Ζωή-Татьяна-李小龍-😀".repeat(2);
        let mut out = String::new();
        fold(&format!("SUMMARY:On call: {name}"), &mut out);
        let physical: Vec<&str> = out.strip_suffix("\r\n").unwrap().split("\r\n").collect();
        assert!(physical.len() > 2, "{out}");
        for (i, line) in physical.iter().enumerate() {
            assert!(line.len() <= 75, "{} octets: {line}", line.len());
            assert_eq!(i > 0, line.starts_with(' '), "{line}");
        }
        let rejoined: String = physical
            .iter()
            .enumerate()
            .map(|(i, l)| if i == 0 { *l } else { &l[1..] })
            .collect();
        assert_eq!(rejoined, format!("SUMMARY:On call: {name}"));
        // A line of exactly 75 octets stays one line.
        let mut exact = String::new();
        fold(&"x".repeat(75), &mut exact);
        assert_eq!(exact, format!("{}\r\n", "x".repeat(75)));
        // A whole feed with such a name: every line within 75 octets.
        let feed = render(
            &Feed::Person(name.clone()),
            &by_name(vec![schedule(
                "primary",
                &[&name, "bob"],
                24,
                "2026-01-05T09:00",
            )]),
            utc("2026-12-03T15:00:00Z"),
        );
        assert!(feed.split("\r\n").all(|l| l.len() <= 75));
        assert!(unfolded(&feed).contains(&format!("X-WR-CALNAME:{name} on call")));
    }

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(
            text("back\\slash; semi, comma\nnew line\r\n\u{7}bell\ttab"),
            "back\\\\slash\\; semi\\, comma\\nnew line\\nbell\ttab"
        );
    }
}
