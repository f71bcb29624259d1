//! Alertmanager's time intervals, with its YAML and its semantics: `times` with an inclusive start
//! and an exclusive end (`24:00` allowed), `weekdays`, `days_of_month` (negative days count from
//! the month's end), `months`, `years` and a `location`. A field left out matches every time; an
//! interval matches when all of its fields do; a named interval when any of its intervals does.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// One interval as written in the config, before it is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeInterval {
    pub times: Option<Vec<RawTimeRange>>,
    pub weekdays: Option<Vec<String>>,
    pub days_of_month: Option<Vec<String>>,
    pub months: Option<Vec<String>>,
    pub years: Option<Vec<String>>,
    pub location: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeRange {
    #[serde(default)]
    pub start_time: String,
    #[serde(default)]
    pub end_time: String,
}

/// Inclusive ranges; `None` means the field was left out and matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeInterval {
    /// Minutes of the day: start inclusive, end exclusive.
    times: Option<Vec<(u32, u32)>>,
    /// 0 = Sunday.
    weekdays: Option<Vec<(u32, u32)>>,
    days_of_month: Option<Vec<(i32, i32)>>,
    months: Option<Vec<(i64, i64)>>,
    years: Option<Vec<(i64, i64)>>,
    location: Option<Tz>,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// `a` or `a:b`, lower-cased, each side read by `member`.
fn range<T: Copy>(
    text: &str,
    member: impl Fn(&str) -> Result<T, String>,
) -> Result<(T, T), String> {
    let text = text.to_lowercase();
    match text.split_once(':') {
        Some((begin, end)) => {
            if end.contains(':') {
                return Err(format!("couldn't parse range {text}, invalid format"));
            }
            Ok((member(begin)?, member(end)?))
        }
        None => {
            let value = member(&text)?;
            Ok((value, value))
        }
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("strconv.Atoi: parsing {text:?}: invalid syntax"))
}

fn weekday(text: &str) -> Result<u32, String> {
    WEEKDAYS
        .iter()
        .position(|d| *d == text)
        .map(|i| i as u32)
        .ok_or_else(|| format!("{text} is not a valid weekday"))
}

fn month(text: &str) -> Result<i64, String> {
    match MONTHS.iter().position(|m| *m == text) {
        Some(i) => Ok(i as i64 + 1),
        None => text
            .parse()
            .map_err(|_| format!("{text} is not a valid month")),
    }
}

/// A month's name, or nothing for a number that is none (as Alertmanager prints it).
fn month_name(month: i64) -> &'static str {
    usize::try_from(month.saturating_sub(1))
        .ok()
        .and_then(|i| MONTHS.get(i))
        .copied()
        .unwrap_or("")
}

/// `HH:MM` from 00:00 to 23:59, or 24:00; minutes of the day.
fn clock_time(text: &str) -> Result<u32, String> {
    let invalid = || format!("couldn't parse timestamp {text}, invalid format");
    if text == "24:00" {
        return Ok(24 * 60);
    }
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(invalid());
    }
    let (hours, minutes): (u32, u32) = (number(hours)?, number(minutes)?);
    if hours > 23 || minutes > 59 {
        return Err(invalid());
    }
    Ok(hours * 60 + minutes)
}

/// A value of an interval that Alertmanager refuses: where it is in the interval
/// (`times[1].end_time`, `weekdays[2]`, `location`) and Alertmanager's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct IntervalError {
    pub field: String,
    pub message: String,
}

/// The problems of one interval, each pushed with its place.
struct Problems(Vec<IntervalError>);

impl Problems {
    fn push(&mut self, field: String, message: String) {
        self.0.push(IntervalError { field, message });
    }

    /// Each entry of the list `field` read by `parse`; the list when every entry reads.
    fn each<T>(
        &mut self,
        field: &str,
        values: &Option<Vec<String>>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let values = values.as_ref()?;
        let mut parsed = Vec::with_capacity(values.len());
        for (i, value) in values.iter().enumerate() {
            match parse(value) {
                Ok(v) => parsed.push(v),
                Err(message) => self.push(format!("{field}[{i}]"), message),
            }
        }
        Some(parsed)
    }
}

/// `times[i]`: minutes of the day, start inclusive, end exclusive.
fn time_range(i: usize, range: &RawTimeRange, problems: &mut Problems) -> Option<(u32, u32)> {
    let at = format!("times[{i}]");
    let missing = match (range.start_time.is_empty(), range.end_time.is_empty()) {
        (true, true) => Some(at.clone()),
        (true, false) => Some(format!("{at}.start_time")),
        (false, true) => Some(format!("{at}.end_time")),
        (false, false) => None,
    };
    if let Some(field) = missing {
        problems.push(
            field,
            "both start and end times must be provided".to_string(),
        );
        return None;
    }
    let (start, end) = (clock_time(&range.start_time), clock_time(&range.end_time));
    if let Err(e) = &start {
        problems.push(format!("{at}.start_time"), e.clone());
    }
    if let Err(e) = &end {
        problems.push(format!("{at}.end_time"), e.clone());
    }
    let (start, end) = (start.ok()?, end.ok()?);
    if start >= end {
        problems.push(
            at,
            "start time cannot be equal or greater than end time".to_string(),
        );
        return None;
    }
    Some((start, end))
}

impl TimeInterval {
    /// Checks an interval as Alertmanager does, with its error messages; every value it
    /// refuses is named, not only the first.
    pub fn parse(raw: &RawTimeInterval) -> Result<TimeInterval, Vec<IntervalError>> {
        let mut problems = Problems(Vec::new());
        let times = raw.times.as_ref().map(|times| {
            times
                .iter()
                .enumerate()
                .filter_map(|(i, range)| time_range(i, range, &mut problems))
                .collect()
        });
        let weekdays = problems.each("weekdays", &raw.weekdays, |text| {
            let (begin, end) = range(text, weekday)?;
            if begin > end {
                return Err("start day cannot be before end day".to_string());
            }
            Ok((begin, end))
        });
        let days_of_month = problems.each("days_of_month", &raw.days_of_month, |text| {
            let (begin, end) = range(text, number::<i32>)?;
            for day in [begin, end] {
                if day == 0 || !(-31..=31).contains(&day) {
                    return Err(format!(
                        "{day} is not a valid day of the month: out of range"
                    ));
                }
            }
            if begin < 0 && end > 0 {
                return Err("end day must be negative if start day is negative".to_string());
            }
            // Negative days are compared as in the shortest month.
            let as_in_february = |day: i32| if day < 0 { 28 + day } else { day };
            if as_in_february(begin) > as_in_february(end) {
                return Err(format!("end day {end} is always before start day {begin}"));
            }
            Ok((begin, end))
        });
        let months = problems.each("months", &raw.months, |text| {
            let (begin, end) = range(text, month)?;
            if begin > end {
                return Err(format!(
                    "end month {} is before start month {}",
                    month_name(end),
                    month_name(begin)
                ));
            }
            Ok((begin, end))
        });
        let years = problems.each("years", &raw.years, |text| {
            let (begin, end) = range(text, number::<i64>)?;
            if begin > end {
                return Err(format!("end year {end} is before start year {begin}"));
            }
            Ok((begin, end))
        });
        let location = raw.location.as_deref().and_then(|name| match name {
            // Go reads "" as UTC; "Local" is the host's zone, which a config shared by
            // replicas must not depend on.
            "" => Some(Tz::UTC),
            "Local" => {
                problems.push(
                    "location".to_string(),
                    "location Local is the host's time zone; name it, e.g. Europe/Berlin"
                        .to_string(),
                );
                None
            }
            _ => name
                .parse::<Tz>()
                .map_err(|_| {
                    problems.push("location".to_string(), format!("unknown time zone {name}"))
                })
                .ok(),
        });
        if !problems.0.is_empty() {
            return Err(problems.0);
        }
        Ok(TimeInterval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location,
        })
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.location.unwrap_or(Tz::UTC));
        let minute = local.hour() * 60 + local.minute();
        let any = |ranges: &Option<Vec<(i64, i64)>>, value: i64| {
            ranges
                .as_ref()
                .is_none_or(|r| r.iter().any(|(b, e)| *b <= value && value <= *e))
        };
        let in_times = self.times.as_ref().is_none_or(|t| {
            t.iter()
                .any(|(start, end)| *start <= minute && minute < *end)
        });
        let in_days = self.days_of_month.as_ref().is_none_or(|ranges| {
            let days = days_in_month(local.year(), local.month()) as i32;
            let day = local.day() as i32;
            ranges.iter().any(|(begin, end)| {
                let from_end = |d: i32| if d < 0 { days + d + 1 } else { d };
                let (begin, end) = (from_end(*begin), from_end(*end));
                // A range that starts after this month's last day is not in this month.
                begin <= days && day >= begin && day <= end
            })
        });
        let weekday = local.weekday().num_days_from_sunday();
        let in_weekdays = self
            .weekdays
            .as_ref()
            .is_none_or(|r| r.iter().any(|(b, e)| *b <= weekday && weekday <= *e));
        in_times
            && in_days
            && any(&self.months, i64::from(local.month()))
            && in_weekdays
            && any(&self.years, i64::from(local.year()))
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |last| last.day())
}

/// The config's `time_intervals`: each name with its intervals.
pub type NamedIntervals = BTreeMap<String, Vec<TimeInterval>>;

/// Whether one of the intervals named `names` contains `at`: a named set of intervals is active
/// when any of its intervals is. A name that is not defined contains nothing.
pub fn any_named_contains(intervals: &NamedIntervals, names: &[String], at: DateTime<Utc>) -> bool {
    names
        .iter()
        .filter_map(|name| intervals.get(name))
        .flatten()
        .any(|interval| interval.contains(at))
}

#[cfg(test)]
mod tests {
    //! The cases of Alertmanager's own tests of its parser and matcher (timeinterval_test.go),
    //! in this module's terms.
    use super::*;

    /// Go's RFC 822 with numeric zone: "02 Jan 06 15:04 -0700".
    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_str(text, "%d %b %y %H:%M %z")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .with_timezone(&Utc)
    }

    /// The intervals of `yaml`, or every problem of the first that has any, as `field: message`
    /// joined by `; `.
    fn parse_yaml(yaml: &str) -> Result<Vec<TimeInterval>, String> {
        let raw: Vec<RawTimeInterval> = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
        raw.iter()
            .map(|r| {
                TimeInterval::parse(r).map_err(|errors| {
                    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    errors.join("; ")
                })
            })
            .collect()
    }

    fn interval(yaml: &str) -> TimeInterval {
        let mut all = parse_yaml(yaml).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    fn check(interval: &TimeInterval, inside: &[&str], outside: &[&str]) {
        for t in inside {
            assert!(interval.contains(at(t)), "{interval:?} must contain {t}");
        }
        for t in outside {
            assert!(
                !interval.contains(at(t)),
                "{interval:?} must not contain {t}"
            );
        }
    }

    #[test]
    fn an_empty_interval_contains_every_time() {
        check(
            &interval("- {}"),
            &[
                "02 Jan 06 15:04 +0000",
                "03 Jan 07 10:04 +0000",
                "04 Jan 06 09:04 +0000",
            ],
            &[],
        );
    }

    #[test]
    fn business_hours_monday_to_friday() {
        let i = interval(
            "- weekdays: ['monday:friday']\n  times: [{start_time: '09:00', end_time: '17:00'}]",
        );
        assert_eq!(i.times, Some(vec![(540, 1020)]));
        assert_eq!(i.weekdays, Some(vec![(1, 5)]));
        check(
            &i,
            &[
                "04 May 20 15:04 +0000",
                "05 May 20 10:04 +0000",
                "09 Jun 20 09:04 +0000",
                "08 Jul 20 09:00 +0000",
                "08 Jul 20 16:59 +0000",
                "01 Apr 21 13:00 +0000",
            ],
            &[
                "03 May 20 15:04 +0000",
                "04 May 20 08:59 +0000",
                "05 May 20 05:00 +0000",
                "08 Jul 20 05:00 +0000",
                "08 Jul 20 08:59 +0000",
                "08 Jul 20 17:00 +0000",
            ],
        );
    }

    #[test]
    fn easter_2020() {
        check(
            &interval("- {days_of_month: ['4:6'], months: ['4'], years: ['2020']}"),
            &[
                "04 Apr 20 15:04 +0000",
                "05 Apr 20 00:00 +0000",
                "06 Apr 20 23:05 +0000",
            ],
            &[
                "03 May 18 15:04 +0000",
                "03 Apr 20 23:59 +0000",
                "04 Jun 20 23:59 +0000",
                "06 Apr 19 23:59 +0000",
                "07 Apr 20 00:00 +0000",
            ],
        );
    }

    #[test]
    fn negative_days_count_from_the_end_of_each_month() {
        check(
            &interval("- {days_of_month: ['-3:-1']}"),
            &[
                "31 Jan 20 15:04 +0000",
                "30 Jan 20 15:04 +0000",
                "29 Jan 20 15:04 +0000",
                "30 Jun 20 00:00 +0000",
                "29 Feb 20 23:05 +0000",
            ],
            &[
                "03 May 18 15:04 +0000",
                "27 Jan 20 15:04 +0000",
                "03 Apr 20 23:59 +0000",
                "04 Jun 20 23:59 +0000",
                "06 Apr 19 23:59 +0000",
                "07 Apr 20 00:00 +0000",
                "01 Mar 20 00:00 +0000",
            ],
        );
    }

    #[test]
    fn days_out_of_the_month_are_clamped_to_it() {
        // Alertmanager's parser refuses -31:31 (a negative start needs a negative end); its
        // matcher still clamps such a range to the month, so this case builds it directly.
        check(
            &TimeInterval {
                months: Some(vec![(6, 6)]),
                days_of_month: Some(vec![(-31, 31)]),
                ..TimeInterval::default()
            },
            &["30 Jun 20 00:00 +0000", "01 Jun 20 00:00 +0000"],
            &["31 May 20 00:00 +0000", "01 Jul 20 00:00 +0000"],
        );
    }

    #[test]
    fn a_location_moves_the_interval_into_its_time_zone() {
        let sydney = "  location: Australia/Sydney";
        check(
            &interval(&format!(
                "- weekdays: ['monday:friday']\n  times: [{{start_time: '09:00', end_time: '17:00'}}]\n{sydney}"
            )),
            &["06 Apr 21 13:00 +1000"],
            &["06 Apr 21 13:00 +0000"],
        );
        // During daylight saving time there.
        check(
            &interval(&format!(
                "- weekdays: ['monday:friday']\n  times: [{{start_time: '09:00', end_time: '17:00'}}]\n  months: [november]\n{sydney}"
            )),
            &["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"],
            &["31 Oct 21 21:00 +0000"],
        );
        // The last day of the month stays the last in a month with a DST change.
        check(
            &interval("- {days_of_month: ['-1'], location: America/New_York}"),
            &["31 Mar 21 12:00 -0400"],
            &["30 Mar 21 12:00 -0400"],
        );
    }

    #[test]
    fn ranges_of_every_kind_together() {
        // The last week of the first quarter, Saturdays excepted, in business hours, 2020-2025
        // and 2030-2035.
        let i = interval(
            "- weekdays: ['monday:friday', 'sunday']\n  months: ['january:march']\n  days_of_month: ['-7:-1']\n  years: ['2020:2025', '2030:2035']\n  times: [{start_time: '09:00', end_time: '17:00'}]",
        );
        assert_eq!(i.weekdays, Some(vec![(1, 5), (0, 0)]));
        assert_eq!(i.years, Some(vec![(2020, 2025), (2030, 2035)]));
        check(
            &i,
            &[
                "27 Jan 21 09:00 +0000",
                "28 Jan 21 16:59 +0000",
                "29 Jan 21 13:00 +0000",
                "31 Mar 25 13:00 +0000",
                "31 Jan 35 13:00 +0000",
            ],
            &[
                "30 Jan 21 13:00 +0000",
                "01 Apr 21 13:00 +0000",
                "30 Jan 26 13:00 +0000",
                "31 Jan 35 17:01 +0000",
            ],
        );
    }

    #[test]
    fn times_are_parsed_as_alertmanager_does() {
        let times = |start: &str, end: &str| {
            parse_yaml(&format!(
                "- times: [{{start_time: '{start}', end_time: '{end}'}}]"
            ))
            .map(|i| i[0].times.clone().unwrap()[0])
        };
        assert_eq!(times("00:00", "24:00"), Ok((0, 1440)));
        assert_eq!(times("01:35", "17:39"), Ok((95, 1059)));
        assert_eq!(times("09:35", "09:39"), Ok((575, 579)));
        for (start, end) in [("17:31", "17:31"), ("09:30", "07:41"), ("24:00", "17:41")] {
            assert_eq!(
                times(start, end),
                Err("times[0]: start time cannot be equal or greater than end time".to_string())
            );
        }
        assert_eq!(
            times("12:30", "24:01"),
            Err("times[0].end_time: couldn't parse timestamp 24:01, invalid format".to_string())
        );
        assert_eq!(
            times("01:99", "23:59"),
            Err("times[0].start_time: couldn't parse timestamp 01:99, invalid format".to_string())
        );
        assert_eq!(
            times("00:00", "99:99"),
            Err("times[0].end_time: couldn't parse timestamp 99:99, invalid format".to_string())
        );
        assert_eq!(
            times("1:00", "99:99"),
            Err(
                "times[0].start_time: couldn't parse timestamp 1:00, invalid format; \
                 times[0].end_time: couldn't parse timestamp 99:99, invalid format"
                    .to_string()
            )
        );
        assert_eq!(
            parse_yaml("- times: [{start_time: '14:03'}]"),
            Err("times[0].end_time: both start and end times must be provided".to_string())
        );
        assert_eq!(
            parse_yaml("- times: [{start_time: '14:03', end_time: '15:00'}, {end_time: '14:03'}]"),
            Err("times[1].start_time: both start and end times must be provided".to_string())
        );
        assert_eq!(
            parse_yaml("- times: [{}]"),
            Err("times[0]: both start and end times must be provided".to_string())
        );
    }

    #[test]
    fn mistakes_get_alertmanagers_messages() {
        for (yaml, error) in [
            (
                "- weekdays: ['friday:monday']",
                "weekdays[0]: start day cannot be before end day",
            ),
            (
                "- weekdays: ['blurgsday:flurgsday']",
                "weekdays[0]: blurgsday is not a valid weekday",
            ),
            (
                "- weekdays: ['1:3']",
                "weekdays[0]: 1 is not a valid weekday",
            ),
            (
                "- weekdays: [monday, '-2:-1']",
                "weekdays[1]: -2 is not a valid weekday",
            ),
            (
                "- days_of_month: ['0']",
                "days_of_month[0]: 0 is not a valid day of the month: out of range",
            ),
            (
                "- days_of_month: ['-50:-20']",
                "days_of_month[0]: -50 is not a valid day of the month: out of range",
            ),
            (
                "- days_of_month: ['1:50']",
                "days_of_month[0]: 50 is not a valid day of the month: out of range",
            ),
            (
                "- days_of_month: ['-15:5']",
                "days_of_month[0]: end day must be negative if start day is negative",
            ),
            (
                "- days_of_month: ['10:-25']",
                "days_of_month[0]: end day -25 is always before start day 10",
            ),
            (
                "- months: ['martius:june']",
                "months[0]: martius is not a valid month",
            ),
            (
                "- months: ['march:junius']",
                "months[0]: junius is not a valid month",
            ),
            (
                "- months: ['december:january']",
                "months[0]: end month january is before start month december",
            ),
            // A number is taken as Alertmanager takes it, also one far out of range.
            (
                "- months: ['5:-9223372036854775808']",
                "months[0]: end month  is before start month may",
            ),
            (
                "- years: ['2019', '2022:2020']",
                "years[1]: end year 2020 is before start year 2022",
            ),
            (
                "- location: Mars/Olympus",
                "location: unknown time zone Mars/Olympus",
            ),
            (
                "- location: Local",
                "location: location Local is the host's time zone; name it, e.g. Europe/Berlin",
            ),
            (
                "- {weekdays: [someday], months: [13:1], location: Nowhere}",
                "weekdays[0]: someday is not a valid weekday; \
                 months[0]: end month january is before start month ; \
                 location: unknown time zone Nowhere",
            ),
        ] {
            assert_eq!(parse_yaml(yaml), Err(error.to_string()), "{yaml}");
        }
    }

    #[test]
    fn what_alertmanager_accepts_is_accepted() {
        assert_eq!(
            interval("- days_of_month: ['1:-1']").days_of_month,
            Some(vec![(1, -1)])
        );
        assert_eq!(
            interval("- months: ['January:december']").months,
            Some(vec![(1, 12)])
        );
        let sydney = interval("- {years: ['2020:2022'], location: 'Australia/Sydney'}");
        assert_eq!(sydney.years, Some(vec![(2020, 2022)]));
        assert_eq!(sydney.location, Some(chrono_tz::Australia::Sydney));
        // An empty list matches nothing, as in Alertmanager; a missing one everything.
        assert!(!interval("- times: []").contains(at("08 Jul 20 09:00 +0000")));
    }
}
