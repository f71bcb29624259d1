//! Calendar feeds at their secret URLs (`/calendar/<token>.ics`): what an app that subscribes
//! gets, what a guesser gets, a token replaced while the service runs, and an independent
//! iCalendar parser that reads the feeds across a DST change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::*;

const PRIMARY_TOKEN: &str = "pR1m4ry-c4l3nd4r_t0k3n-0001";
const ALICE_TOKEN: &str = "4l1c3-c4l3nd4r_t0k3n-00000002";

/// A weekly rotation of alice and bob, Mondays 09:00 in Berlin from 5 January 2026, bob over
/// Christmas, and `calendars` under `web:`; the webhooks behind Basic auth.
fn calendar_config(api_url: &str, calendars: Value) -> TestConfig {
    let mut config = TestConfig::new(api_url).with_basic_auth();
    config.schedules.insert(
        "primary".into(),
        json!({
            "time_zone": "Europe/Berlin",
            "rotation": {"members": ["alice", "bob"], "shift": "1w", "start": "2026-01-05T09:00"},
            "overrides": [{"from": "2026-12-24T00:00", "to": "2026-12-27T00:00", "who": "bob"}],
        }),
    );
    config.route("critical").to = vec!["primary".into()];
    config.web = Some(json!({"calendars": calendars}));
    config
}

fn both_feeds() -> Value {
    json!([
        {"schedule": "primary", "token": PRIMARY_TOKEN},
        {"person": "alice", "token": ALICE_TOKEN},
    ])
}

/// The content lines of a feed, unfolded.
fn lines(feed: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in feed.split("\r\n").filter(|l| !l.is_empty()) {
        match (line.strip_prefix(' '), lines.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => lines.push(line.to_string()),
        }
    }
    lines
}

/// Each event of a feed as `DTSTART DTEND SUMMARY`.
fn plan(feed: &str) -> Vec<String> {
    let mut plan = Vec::new();
    let mut event = Vec::new();
    for line in lines(feed) {
        for field in ["DTSTART:", "DTEND:", "SUMMARY:"] {
            if let Some(value) = line.strip_prefix(field) {
                event.push(value.to_string());
            }
        }
        if line == "END:VEVENT" {
            plan.push(std::mem::take(&mut event).join(" "));
        }
    }
    plan
}

#[tokio::test]
async fn a_schedule_and_a_person_feed_are_served_at_their_secret_urls_without_server_auth() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&calendar_config(&fake.uri(), both_feeds()).yaml()).await;
    // Thursday 3 December 2026, 16:00 in Berlin: bob's week.
    app.clock.set(at("2026-12-03T15:00:00Z"));
    // The webhooks' credentials are asked for; the feeds' are their URLs.
    assert_eq!(app.get("/api/v1/oncall").await.0, 401);

    let response = app
        .http
        .get(format!("{}/calendar/{PRIMARY_TOKEN}.ics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    for (name, value) in [
        ("content-type", "text/calendar; charset=utf-8"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(headers[name], value, "{name}");
    }
    let feed = response.text().await.unwrap();
    assert!(
        feed.starts_with(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//alertmanager-sipgate//on-call calendar//EN\r\n\
             CALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\nX-WR-CALNAME:primary on call\r\n"
        ),
        "{feed}"
    );
    assert!(feed.ends_with("END:VEVENT\r\nEND:VCALENDAR\r\n"));
    let primary = plan(&feed);
    assert_eq!(
        primary[..5],
        [
            "20261130T080000Z 20261207T080000Z On call: bob",
            "20261207T080000Z 20261214T080000Z On call: alice",
            "20261214T080000Z 20261221T080000Z On call: bob",
            // The override: bob from Christmas Eve to the 27th.
            "20261221T080000Z 20261223T230000Z On call: alice",
            "20261223T230000Z 20261226T230000Z On call: bob",
        ]
    );
    // Every week up to the one that starts 26 weeks after now (Monday 31 May 2027).
    assert_eq!(
        primary.last().unwrap(),
        "20270531T070000Z 20270607T070000Z On call: bob"
    );
    assert!(lines(&feed).contains(&"DTSTAMP:20261203T150000Z".to_string()));
    assert!(!feed.contains(ALICE) && !feed.contains(BOB), "no numbers");

    let (status, alice) = app.get(&format!("/calendar/{ALICE_TOKEN}.ics")).await;
    assert_eq!(status, 200);
    assert!(lines(&alice).contains(&"X-WR-CALNAME:alice on call".to_string()));
    assert_eq!(
        plan(&alice)[..3],
        [
            "20261207T080000Z 20261214T080000Z On call: primary",
            "20261221T080000Z 20261223T230000Z On call: primary",
            "20261226T230000Z 20261228T080000Z On call: primary",
        ]
    );

    // HEAD: the headers without the feed.
    let head = app
        .http
        .head(format!("{}/calendar/{PRIMARY_TOKEN}.ics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-type"],
        "text/calendar; charset=utf-8"
    );
    assert_eq!(head.text().await.unwrap(), "");
    let post = app
        .http
        .post(format!("{}/calendar/{PRIMARY_TOKEN}.ics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn wrong_tokens_get_a_404_that_does_not_repeat_them_and_count_as_wrong_codes() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&calendar_config(&fake.uri(), both_feeds()).yaml()).await;
    let almost = format!("{}X", &PRIMARY_TOKEN[..PRIMARY_TOKEN.len() - 1]);
    for guess in [
        almost.as_str(),
        &PRIMARY_TOKEN[..24],
        &format!("{PRIMARY_TOKEN}0"),
        &"A".repeat(5000),
    ] {
        let response = app
            .http
            .get(format!("{}/calendar/{guess}.ics", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"status":"error","error":"not found"}"#
        );
    }
    // With the 4 above, 6 more wrong feeds or acknowledgement codes make 10 from this address.
    for i in 0..3 {
        assert_eq!(app.get(&format!("/a/{i:024}")).await.0, 404);
        assert_eq!(app.get(&format!("/calendar/{i:024}.ics")).await.0, 404);
    }
    let response = app
        .http
        .get(format!("{}/calendar/{almost}.ics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"status":"error","error":"too many unknown links from your address; try again in a minute"}"#
    );
    assert_eq!(app.get(&format!("/a/{:024}", 99)).await.0, 429);
    // The right token is always served: the app behind the same proxy keeps its calendar.
    assert_eq!(
        app.get(&format!("/calendar/{PRIMARY_TOKEN}.ics")).await.0,
        200
    );

    // The requests are counted by the route's pattern: no token in a label.
    let metrics = metrics(&app.url).await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"alertmanager_sipgate_requests_total{code="200",endpoint="/calendar/{token}.ics"}"#
        ),
        1,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"alertmanager_sipgate_requests_total{code="404",endpoint="/calendar/{token}.ics"}"#
        ),
        7
    );
    for token in [PRIMARY_TOKEN, &almost, ALICE_TOKEN] {
        assert!(!metrics.contains(token));
    }
}

/// A config in `dir` whose primary feed reads its token from `primary.token` there.
fn config_with_token_file(dir: &Path, api_url: &str, token: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("primary.token"), format!("{token}\n")).unwrap();
    let config = calendar_config(
        api_url,
        json!([{"schedule": "primary", "token_file": "primary.token"}]),
    );
    write_config(dir, &config.yaml())
}

#[tokio::test]
async fn a_replaced_token_file_takes_over_on_sighup_and_no_token_is_logged() {
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_token_file(dir.path(), &fake.uri(), PRIMARY_TOKEN);
    let mut service = Service::start_with(&config, &["--log.level=debug"], &[]).await;
    let feed = |token: &str| format!("/calendar/{token}.ics");
    assert_eq!(service.get(&feed(PRIMARY_TOKEN)).await.0, 200);

    // The token leaked: a new one in the file, and a reload.
    let replacement = "r3pl4c3d-c4l3nd4r_t0k3n-0003";
    std::fs::write(dir.path().join("primary.token"), replacement).unwrap();
    service.child.signal("HUP");
    eventually(
        Duration::from_secs(10),
        "the new token is served",
        || async { (service.get(&feed(replacement)).await.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(service.get(&feed(PRIMARY_TOKEN)).await.0, 404);

    // A token that cannot be used keeps the running one, and is not repeated either.
    std::fs::write(dir.path().join("primary.token"), "short").unwrap();
    service.child.signal("HUP");
    eventually(Duration::from_secs(10), "the reload fails", || async {
        service
            .log()
            .contains("web.calendars[0].token_file: must be at least 24 characters long")
            .then_some(())
    })
    .await;
    assert_eq!(service.get(&feed(replacement)).await.0, 200);

    let log = service.stop_and_read_log().await;
    for token in [PRIMARY_TOKEN, replacement, "short"] {
        assert!(!log.contains(token), "{token} in the log:\n{log}");
    }
}

#[test]
fn check_config_names_the_field_of_a_bad_token_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let short = "0123456789abcdef";
    let config = config_with_token_file(dir.path(), "http://127.0.0.1:9", short);
    let out = service_binary()
        .args([
            "check-config",
            &format!("--config.file={}", config.display()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web.calendars[0].token_file: must be at least 24 characters long"),
        "{stderr}"
    );
    assert!(!stderr.contains(short));

    std::fs::write(dir.path().join("primary.token"), PRIMARY_TOKEN).unwrap();
    let out = service_binary()
        .args([
            "check-config",
            &format!("--config.file={}", config.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(PRIMARY_TOKEN), "{all}");
}

/// One event as the independent parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
struct ParsedEvent {
    uid: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    summary: String,
}

/// `tests/calendar/parse_ics.py` on `feed`, run by the virtualenv's Python.
fn parse_with_icalendar(python: &Path, feed: &str) -> Vec<ParsedEvent> {
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/calendar/parse_ics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(feed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parse_ics.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Who `alertmanager-sipgate oncall --at` names as on call in `schedule` at `at`, asked once
/// per instant.
struct OnCallCli<'a> {
    config: &'a Path,
    asked: BTreeMap<DateTime<Utc>, String>,
}

impl OnCallCli<'_> {
    fn who(&mut self, schedule: &str, at: DateTime<Utc>) -> String {
        let config = self.config;
        let out = self.asked.entry(at).or_insert_with(|| {
            let out = service_binary()
                .args([
                    "oncall",
                    &format!("--config.file={}", config.display()),
                    &format!("--at={}", at.to_rfc3339()),
                    "--next=0",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        });
        let mut lines = out
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{schedule} (")));
        lines.next();
        let on_call = lines.next().unwrap_or_default();
        on_call
            .trim()
            .strip_prefix("on call:")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no one on call in {schedule} at {at}:\n{out}"))
            .to_string()
    }
}

/// The feeds of the DST test: daily handoffs at 02:30 in Berlin (a time the spring change skips
/// and the autumn change repeats), dave over the night of both changes, and a feed of the
/// schedule and of alice.
fn dst_config(api_url: &str) -> TestConfig {
    let mut config = TestConfig::new(api_url);
    config
        .recipients
        .insert("carol".into(), "+4915123456789".into());
    config
        .recipients
        .insert("dave".into(), "+4915198765432".into());
    config.schedules.insert(
        "daily".into(),
        json!({
            "time_zone": "Europe/Berlin",
            "rotation": {"members": ["alice", "bob", "carol"], "shift": "1d", "start": "2026-10-01T02:30"},
            "overrides": [
                {"from": "2026-10-25T01:00", "to": "2026-10-25T04:00", "who": "dave"},
                {"from": "2027-03-28T01:00", "to": "2027-03-28T04:00", "who": "dave"},
            ],
        }),
    );
    config.web = Some(json!({"calendars": [
        {"schedule": "daily", "token": PRIMARY_TOKEN},
        {"person": "alice", "token": ALICE_TOKEN},
    ]}));
    config
}

// Multi-threaded: the service and its connections keep running while the test waits for the
// parser and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 with venv: apt-get install python3-venv"]
async fn an_independent_icalendar_parser_reads_the_feeds_as_oncall_tells_the_shifts_across_dst() {
    let python = python_venv(&["icalendar==6.3.2"]);
    let fake = FakeSipgate::new().start().await;
    let config = dst_config(&fake.uri());
    let dir = tempfile::tempdir().unwrap();
    let config_file = write_config(dir.path(), &config.yaml());
    let mut cli = OnCallCli {
        config: &config_file,
        asked: BTreeMap::new(),
    };
    // 26 weeks do not always hold a DST change in Berlin (from the spring change in late March
    // the autumn one is 30 weeks away), so the service's clock is set: once before each change.
    for (now, change) in [
        ("2026-09-01T10:00:00Z", "2026-10-25T01:00:00Z"),
        ("2027-02-15T10:00:00Z", "2027-03-28T01:00:00Z"),
    ] {
        let (now, change) = (at(now), at(change));
        let app = TestApp::start(&config.yaml()).await;
        app.clock.set(now);
        let fetch = |token: &'static str| {
            let app = &app;
            async move {
                let (status, feed) = app.get(&format!("/calendar/{token}.ics")).await;
                assert_eq!(status, 200);
                feed
            }
        };
        let schedule_feed = parse_with_icalendar(&python, &fetch(PRIMARY_TOKEN).await);
        let person_feed = parse_with_icalendar(&python, &fetch(ALICE_TOKEN).await);

        // The shift under way from its real start, and every one starting within 26 weeks.
        assert!(schedule_feed.len() > 180, "{schedule_feed:?}");
        assert!(schedule_feed[0].start <= now && now < schedule_feed[0].end);
        let last = schedule_feed.last().unwrap();
        assert!(last.start < now + chrono::Duration::weeks(26));
        assert!(last.end >= now + chrono::Duration::weeks(26), "{last:?}");
        // alice's feed holds her shifts of the schedule's feed, and nothing else.
        let alices: Vec<(DateTime<Utc>, DateTime<Utc>)> = schedule_feed
            .iter()
            .filter(|e| e.summary == "On call: alice")
            .map(|e| (e.start, e.end))
            .collect();
        let hers: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            person_feed.iter().map(|e| (e.start, e.end)).collect();
        assert_eq!(hers, alices);

        for (events, person) in [(&schedule_feed, None), (&person_feed, Some("alice"))] {
            let what = format!("the feed of {} from {now}", person.unwrap_or("daily"));
            let uids: BTreeSet<&str> = events.iter().map(|e| e.uid.as_str()).collect();
            assert_eq!(uids.len(), events.len(), "{what}: UIDs are unique");
            for (i, event) in events.iter().enumerate() {
                let who = match person {
                    None => event.summary.strip_prefix("On call: ").unwrap(),
                    Some(person) => {
                        assert_eq!(event.summary, "On call: daily", "{what}");
                        person
                    }
                };
                let second = chrono::Duration::seconds(1);
                assert_eq!(cli.who("daily", event.start), who, "{what}: {event:?}");
                assert_eq!(
                    cli.who("daily", event.end - second),
                    who,
                    "{what}: {event:?}"
                );
                let adjacent = i > 0 && events[i - 1].end == event.start;
                assert!(
                    cli.who("daily", event.start - second) != who || adjacent,
                    "{what}: {event:?} began earlier"
                );
                // The last shift of the feed may go on: it ends where the next one begins.
                let next_adjacent = events.get(i + 1).is_some_and(|n| n.start == event.end);
                assert!(
                    cli.who("daily", event.end) != who || next_adjacent,
                    "{what}: {event:?} lasts longer"
                );
            }
        }
        // The DST change is inside the feed: dave's override over it, and the handoffs at
        // 02:30 Berlin time on both sides of it, an hour apart in UTC.
        let over_change: Vec<&ParsedEvent> = schedule_feed
            .iter()
            .filter(|e| e.start <= change && change < e.end)
            .collect();
        assert_eq!(over_change.len(), 1, "{over_change:?}");
        assert_eq!(over_change[0].summary, "On call: dave");
        let berlin = |t: DateTime<Utc>| t.with_timezone(&chrono_tz::Europe::Berlin);
        let local_starts: BTreeSet<String> = schedule_feed[1..]
            .iter()
            .map(|e| berlin(e.start).format("%H:%M").to_string())
            .collect();
        assert_eq!(
            local_starts,
            BTreeSet::from(["01:00".into(), "02:30".into(), "04:00".into()])
        );
        let utc_starts: BTreeSet<String> = schedule_feed[1..]
            .iter()
            .filter(|e| berlin(e.start).format("%H:%M").to_string() == "02:30")
            .map(|e| e.start.format("%H:%M").to_string())
            .collect();
        assert_eq!(utc_starts, BTreeSet::from(["00:30".into(), "01:30".into()]));

        // The same UIDs on the next fetch, an hour later, and from another replica.
        app.clock.set(now + chrono::Duration::hours(1));
        let again = parse_with_icalendar(&python, &fetch(PRIMARY_TOKEN).await);
        let other = TestApp::start(&config.yaml()).await;
        other.clock.set(now);
        let (_, replica) = other.get(&format!("/calendar/{PRIMARY_TOKEN}.ics")).await;
        let replica = parse_with_icalendar(&python, &replica);
        let uids = |events: &[ParsedEvent]| -> Vec<(String, DateTime<Utc>)> {
            events.iter().map(|e| (e.uid.clone(), e.start)).collect()
        };
        assert_eq!(uids(&again), uids(&schedule_feed));
        assert_eq!(uids(&replica), uids(&schedule_feed));
    }
}
