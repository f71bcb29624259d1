//! The CPU work of one calendar feed (`GET /calendar/<token>.ics`): 26 weeks of a schedule's
//! shifts with its overrides, as a calendar app fetches it every hour; and a person's feed,
//! which looks at every schedule.
//! `cargo bench --bench calendar`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use alertmanager_sipgate::oncall::calendar::{Feed, render};
use alertmanager_sipgate::oncall::{Override, Schedule};
use chrono::{DateTime, NaiveDateTime, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn local(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M").expect("a local time")
}

/// Three people in Berlin handing over every `shift_hours` from 5 January 2026, with an
/// override of a day every week of 2026 (50, as a schedule collects them in a year).
fn schedule(name: &str, shift_hours: u64) -> Schedule {
    let overrides = (0..50)
        .map(|week| {
            let from = local("2026-01-07T09:00") + chrono::Duration::weeks(week);
            Override {
                from,
                to: from + chrono::Duration::days(1),
                who: "dave".to_string(),
            }
        })
        .collect();
    Schedule {
        name: name.to_string(),
        time_zone: chrono_tz::Europe::Berlin,
        members: vec!["alice".into(), "bob".into(), "carol".into()],
        shift: Duration::from_secs(shift_hours * 3600),
        start: local("2026-01-05T09:00"),
        overrides,
        notify_shift_start: false,
    }
}

fn feeds(c: &mut Criterion) {
    let now: DateTime<Utc> = "2026-12-03T15:00:00Z".parse().expect("an instant");
    let mut group = c.benchmark_group("calendar feed");
    for (shift, hours) in [("weekly", 168), ("daily", 24), ("hourly", 1)] {
        let schedules = BTreeMap::from([("primary".to_string(), schedule("primary", hours))]);
        let feed = Feed::Schedule("primary".into());
        group.bench_with_input(
            BenchmarkId::new("schedule", shift),
            &schedules,
            |b, schedules| b.iter(|| render(black_box(&feed), schedules, now)),
        );
    }
    // alice in three daily schedules.
    let schedules: BTreeMap<String, Schedule> = ["primary", "secondary", "database"]
        .into_iter()
        .map(|name| (name.to_string(), schedule(name, 24)))
        .collect();
    let feed = Feed::Person("alice".into());
    group.bench_function("person in 3 daily schedules", |b| {
        b.iter(|| render(black_box(&feed), &schedules, now))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = feeds
}
criterion_main!(benches);
