//! The on-call sections: `schedules`, `time_intervals`, and the check of the phone book's
//! `quiet_hours` against them. When someone is on call or in quiet hours is decided in `oncall`.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDateTime;
use serde::Deserialize;

use super::field::{name_is_valid, parse_duration, time_zone};
use super::problem::{Problem, problem};
use crate::oncall::quiet_hours::QuietHours;
use crate::oncall::timeinterval::{NamedIntervals, RawTimeInterval, TimeInterval};
use crate::oncall::{Override, Schedule};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    time_zone: Option<String>,
    #[serde(default)]
    rotation: RawRotation,
    #[serde(default)]
    overrides: Vec<RawOverride>,
    #[serde(default)]
    notify_shift_start: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRotation {
    #[serde(default)]
    members: Vec<String>,
    shift: Option<String>,
    start: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    who: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNamedInterval {
    #[serde(default)]
    name: String,
    #[serde(default)]
    time_intervals: Vec<RawTimeInterval>,
}

/// `2026-01-05T09:00` or with seconds: a local time, no zone, in the years 1970 to 9999.
fn local_time(text: &str) -> Result<NaiveDateTime, String> {
    let time = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            format!("invalid local time {text:?}; use e.g. \"2026-01-05T09:00\" (no zone: the schedule's time_zone applies)")
        })?;
    if !(1970..=9999).contains(&chrono::Datelike::year(&time)) {
        return Err(format!("{text:?} is not in the years 1970 to 9999"));
    }
    Ok(time)
}

pub(super) fn schedules(
    raw: BTreeMap<String, RawSchedule>,
    people: &HashSet<&str>,
    taken: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Schedule> {
    let mut out = BTreeMap::new();
    for (name, s) in raw {
        let at = format!("schedules.{name}");
        if !name_is_valid(&name, &at, problems) {
            continue;
        }
        if taken.contains(name.as_str()) {
            problem(
                problems,
                &at,
                "a recipient or group has the same name; recipients, groups and schedules share one namespace",
            );
        }
        let time_zone = time_zone(s.time_zone.as_deref(), &format!("{at}.time_zone"), problems);
        let rotation = s.rotation;
        if rotation.members.is_empty() {
            problem(
                problems,
                format!("{at}.rotation.members"),
                "an empty rotation: list who takes turns, from the phone book",
            );
        }
        for (i, member) in rotation.members.iter().enumerate() {
            if !people.contains(member.as_str()) {
                problem(
                    problems,
                    format!("{at}.rotation.members[{i}]"),
                    format!("unknown recipient {member:?}; members are names from recipients"),
                );
            }
        }
        let shift = match rotation.shift.as_deref().map(parse_duration) {
            None => {
                problem(
                    problems,
                    format!("{at}.rotation.shift"),
                    "missing: e.g. 1w, 1d, 12h",
                );
                None
            }
            Some(Err(e)) => {
                problem(problems, format!("{at}.rotation.shift"), e);
                None
            }
            Some(Ok(d)) if d < std::time::Duration::from_secs(3600) => {
                problem(
                    problems,
                    format!("{at}.rotation.shift"),
                    "must be at least 1h: nobody can be woken by a rotation that changes faster",
                );
                None
            }
            Some(Ok(d)) if d > crate::oncall::MAX_SHIFT => {
                problem(
                    problems,
                    format!("{at}.rotation.shift"),
                    "must be at most 52w",
                );
                None
            }
            Some(Ok(d)) => Some(d),
        };
        let start = match rotation.start.as_deref().map(local_time) {
            None => {
                problem(
                    problems,
                    format!("{at}.rotation.start"),
                    "missing: the first handoff, e.g. \"2026-01-05T09:00\"",
                );
                None
            }
            Some(Err(e)) => {
                problem(problems, format!("{at}.rotation.start"), e);
                None
            }
            Some(Ok(t)) => Some(t),
        };
        let mut overrides = Vec::new();
        for (i, o) in s.overrides.into_iter().enumerate() {
            let field = format!("{at}.overrides[{i}]");
            let from =
                local_time(&o.from).map_err(|e| problem(problems, format!("{field}.from"), e));
            let to = local_time(&o.to).map_err(|e| problem(problems, format!("{field}.to"), e));
            if !people.contains(o.who.as_str()) {
                problem(
                    problems,
                    format!("{field}.who"),
                    format!(
                        "unknown recipient {:?}; who is a name from recipients",
                        o.who
                    ),
                );
            }
            if let (Ok(from), Ok(to)) = (from, to) {
                if to <= from {
                    problem(problems, format!("{field}.to"), "must be after from");
                }
                overrides.push(Override {
                    from,
                    to,
                    who: o.who,
                });
            }
        }
        if let (Some(shift), Some(start)) = (shift, start) {
            out.insert(
                name.clone(),
                Schedule {
                    name,
                    time_zone,
                    members: rotation.members,
                    shift,
                    start,
                    overrides,
                    notify_shift_start: s.notify_shift_start,
                },
            );
        }
    }
    out
}

pub(super) fn time_intervals(
    raw: Vec<RawNamedInterval>,
    problems: &mut Vec<Problem>,
) -> NamedIntervals {
    let mut out = NamedIntervals::new();
    for (i, named) in raw.into_iter().enumerate() {
        let at = format!("time_intervals[{i}]");
        if named.name.is_empty() {
            problem(
                problems,
                format!("{at}.name"),
                "missing: every time interval needs a name",
            );
            continue;
        }
        if out.contains_key(&named.name) {
            problem(
                problems,
                format!("{at}.name"),
                format!("time interval {:?} is defined twice", named.name),
            );
            continue;
        }
        let mut intervals = Vec::new();
        for (j, raw) in named.time_intervals.iter().enumerate() {
            match TimeInterval::parse(raw) {
                Ok(interval) => intervals.push(interval),
                Err(errors) => {
                    for e in errors {
                        let field = format!("{at}.time_intervals[{j}].{}", e.field);
                        problem(problems, field, e.message);
                    }
                }
            }
        }
        out.insert(named.name, intervals);
    }
    out
}

/// Each person's quiet hours name time intervals that are defined.
pub(super) fn quiet_hours(
    quiet_hours: &QuietHours,
    intervals: &NamedIntervals,
    problems: &mut Vec<Problem>,
) {
    for (name, names) in quiet_hours {
        let field = format!("recipients.{name}.quiet_hours");
        known_intervals(names, &field, intervals, problems);
    }
}

/// Interval names listed under `field` must be defined in `time_intervals`.
pub(super) fn known_intervals(
    names: &[String],
    field: &str,
    intervals: &NamedIntervals,
    problems: &mut Vec<Problem>,
) {
    for (i, name) in names.iter().enumerate() {
        if !intervals.contains_key(name) {
            problem(
                problems,
                format!("{field}[{i}]"),
                format!("unknown time interval {name:?}; define it under time_intervals"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{ROUTE_TO_ALICE, load, problems};

    const BOOK: &str = "recipients: {alice: \"+4915228817386\", bob: {number: \"+4915254599371\", quiet_hours: [nights]}}\n\
        time_intervals: [{name: nights, time_intervals: [{times: [{start_time: '22:00', end_time: '24:00'}]}]}]\n";

    #[test]
    fn a_schedule_a_quiet_person_and_a_route_to_the_schedule() {
        let config = load(&format!(
            "{BOOK}schedules: {{primary: {{time_zone: Europe/Berlin, rotation: {{members: [alice, bob], shift: 1w, start: '2026-01-05T09:00'}}, overrides: [{{from: '2026-12-24T00:00', to: '2026-12-27T00:00', who: bob}}]}}}}\n\
             routes: [{{name: critical, to: [primary], ignore_quiet_hours: true}}]"
        ))
        .unwrap();
        let schedule = &config.schedules["primary"];
        assert_eq!(schedule.members, ["alice", "bob"]);
        assert_eq!(schedule.overrides.len(), 1);
        assert_eq!(config.routes[0].schedules, ["primary"]);
        assert_eq!(config.routes[0].may_page, ["alice", "bob"]);
        assert!(config.routes[0].ignore_quiet_hours);
        assert_eq!(config.quiet_hours["bob"], ["nights"]);
        assert_eq!(config.recipients["bob"].e164(), "+4915254599371");
    }

    #[test]
    fn each_mistake_in_a_schedule_names_its_field() {
        assert_eq!(
            problems(&format!(
                "{BOOK}{ROUTE_TO_ALICE}schedules: {{primary: {{rotation: {{members: [alice, mallory], shift: 30m, start: '2026-01-05 09:00'}}, overrides: [{{from: '2026-12-27T00:00', to: '2026-12-24T00:00', who: eve}}]}}}}"
            )),
            [
                "schedules.primary.rotation.members[1]: unknown recipient \"mallory\"; members are names from recipients",
                "schedules.primary.rotation.shift: must be at least 1h: nobody can be woken by a rotation that changes faster",
                "schedules.primary.rotation.start: invalid local time \"2026-01-05 09:00\"; use e.g. \"2026-01-05T09:00\" (no zone: the schedule's time_zone applies)",
                "schedules.primary.overrides[0].who: unknown recipient \"eve\"; who is a name from recipients",
                "schedules.primary.overrides[0].to: must be after from",
            ]
        );
        assert_eq!(
            problems(&format!(
                "{BOOK}{ROUTE_TO_ALICE}schedules: {{alice: {{rotation: {{members: [], shift: 1d, start: '2026-01-05T09:00'}}}}}}"
            )),
            [
                "schedules.alice: a recipient or group has the same name; recipients, groups and schedules share one namespace",
                "schedules.alice.rotation.members: an empty rotation: list who takes turns, from the phone book",
            ]
        );
    }

    #[test]
    fn an_unknown_time_zone_is_named_as_in_templates() {
        let expected = "unknown time zone \"Mars/Olympus\"; use an IANA name such as \"Europe/Berlin\" or \"UTC\"";
        assert_eq!(
            problems(&format!(
                "{BOOK}{ROUTE_TO_ALICE}schedules: {{primary: {{time_zone: Mars/Olympus, rotation: {{members: [alice], shift: 1d, start: '2026-01-05T09:00'}}}}}}"
            )),
            [format!("schedules.primary.time_zone: {expected}")]
        );
        assert_eq!(
            problems(&format!(
                "{BOOK}{ROUTE_TO_ALICE}templates: {{time_zone: Mars/Olympus}}"
            )),
            [format!("templates.time_zone: {expected}")]
        );
    }

    #[test]
    fn unknown_time_intervals_are_named_where_they_are_used() {
        assert_eq!(
            problems(
                "recipients: {alice: {number: \"+4915228817386\", quiet_hours: [weekends]}}\n\
                 routes: [{name: r, to: [alice], mute_time_intervals: [holidays]}]"
            ),
            [
                "recipients.alice.quiet_hours[0]: unknown time interval \"weekends\"; define it under time_intervals",
                "routes[0].mute_time_intervals[0]: unknown time interval \"holidays\"; define it under time_intervals",
            ]
        );
        assert_eq!(
            problems(&format!(
                "recipients: {{alice: \"+4915228817386\"}}\n{ROUTE_TO_ALICE}\
                 time_intervals: [{{name: x, time_intervals: [{{weekdays: ['friday:monday']}}]}}]"
            )),
            ["time_intervals[0].time_intervals[0].weekdays[0]: start day cannot be before end day"]
        );
    }
}
