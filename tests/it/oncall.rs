//! On call: schedules decide who gets the page, time intervals mute routes, quiet hours hold a
//! person's SMS back. The service's calendar time is the test's `ManualClock`: nothing waits.

use serde_json::json;

use alertmanager_sipgate::jobs::shift_notices;

use crate::harness::*;

/// A weekly rotation of alice and bob, handing over on Mondays at 09:00 in Berlin from
/// Monday 5 January 2026; `nights` (22:00 to 07:00) and `business-hours` in Berlin.
fn on_call_config(api_url: &str) -> TestConfig {
    let mut config = TestConfig::new(api_url);
    config.schedules.insert(
        "primary".into(),
        json!({
            "time_zone": "Europe/Berlin",
            "rotation": {"members": ["alice", "bob"], "shift": "1w", "start": "2026-01-05T09:00"},
        }),
    );
    config.time_intervals = vec![
        json!({"name": "nights", "time_intervals": [{
            "times": [{"start_time": "22:00", "end_time": "24:00"}, {"start_time": "00:00", "end_time": "07:00"}],
            "location": "Europe/Berlin"}]}),
        json!({"name": "business-hours", "time_intervals": [{
            "weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "17:00"}],
            "location": "Europe/Berlin"}]}),
    ];
    config.route("critical").to = vec!["primary".into()];
    config
}

#[tokio::test]
async fn a_schedule_pages_whoever_is_on_call_when_the_sms_is_planned() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&on_call_config(&fake.uri()).yaml()).await;
    // Monday 12 January 2026, 08:59:59 Berlin time: alice's first week ends a second later.
    app.clock.set(at("2026-01-12T07:59:59Z"));
    let (status, answer) = app.post_alerts(diskfull(1)).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["alice sent".to_string()])
    );
    app.clock.set(at("2026-01-12T08:00:00Z"));
    let (status, answer) = app.post_alerts(diskfull(2)).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["bob sent".to_string()])
    );
    let recipients: Vec<String> = sent_sms(&fake)
        .await
        .into_iter()
        .map(|(to, _)| to)
        .collect();
    assert_eq!(recipients, [ALICE, BOB]);
}

#[tokio::test]
async fn a_route_holds_its_sms_back_outside_its_active_and_inside_its_mute_intervals() {
    let fake = FakeSipgate::new().start().await;
    let mut config = on_call_config(&fake.uri());
    config.route("warnings").active_time_intervals = vec!["business-hours".into()];
    config.route("critical").mute_time_intervals = vec!["nights".into()];
    let app = TestApp::start(&config.yaml()).await;

    // Saturday 10:00 in Berlin: no business hours.
    app.clock.set(at("2026-01-10T09:00:00Z"));
    let (status, answer) = app.post_alerts(fixture("firing-highlatency.json")).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["alice suppressed muted".to_string()])
    );
    // Monday 09:00 in Berlin: business hours start, inclusive.
    app.clock.set(at("2026-01-12T08:00:00Z"));
    let (status, answer) = app.post_alerts(fixture("firing-highlatency.json")).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["alice sent".to_string()])
    );
    // 22:00 in Berlin: the critical route is muted at night.
    app.clock.set(at("2026-01-12T21:00:00Z"));
    let (status, answer) = app.post_alerts(diskfull(1)).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["bob suppressed muted".to_string()])
    );
    assert_eq!(sent_sms(&fake).await.len(), 1);
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(
            "alertmanager_sipgate_sms_suppressed_total{reason=\"muted\",route=\"warnings\"} 1\n"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn quiet_hours_hold_a_persons_sms_back_until_their_next_one_says_so() {
    let fake = FakeSipgate::new().start().await;
    let mut config = on_call_config(&fake.uri());
    config.recipients.insert(
        "bob".into(),
        json!({"number": BOB, "quiet_hours": ["nights"]}),
    );
    config.route("warnings").to = vec!["bob".into()];
    let app = TestApp::start(&config.yaml()).await;

    // 23:30 in Berlin, Tuesday: bob's night.
    app.clock.set(at("2026-01-13T22:30:00Z"));
    for _ in 0..2 {
        // Alertmanager's retry of the same notification is not counted twice.
        let (status, answer) = app.post_alerts(fixture("firing-highlatency.json")).await;
        assert_eq!(
            (status, outcomes(&answer)),
            (200, vec!["bob suppressed quiet_hours".to_string()])
        );
    }
    // The critical route here does not ignore quiet hours either.
    let (_, answer) = app.post_alerts(diskfull(1)).await;
    assert_eq!(outcomes(&answer), ["bob suppressed quiet_hours"]);
    assert!(sent_sms(&fake).await.is_empty());

    // 07:00: the night is over; bob's next SMS says what he missed.
    app.clock.set(at("2026-01-14T06:00:00Z"));
    let (status, answer) = app.post_alerts(diskfull(2)).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["bob sent".to_string()])
    );
    let sms = sent_sms(&fake).await;
    assert_eq!(sms.len(), 1);
    assert!(
        sms[0]
            .1
            .starts_with("[2 SMS held back] FIRING DiskFull db2:9100"),
        "{}",
        sms[0].1
    );
}

#[tokio::test]
async fn a_route_that_ignores_quiet_hours_pages_through_them() {
    let fake = FakeSipgate::new().start().await;
    let mut config = on_call_config(&fake.uri());
    config.recipients.insert(
        "bob".into(),
        json!({"number": BOB, "quiet_hours": ["nights"]}),
    );
    config.route("critical").ignore_quiet_hours = true;
    let app = TestApp::start(&config.yaml()).await;
    // 03:00 in Berlin, in bob's week.
    app.clock.set(at("2026-01-14T02:00:00Z"));
    let (status, answer) = app.post_alerts(diskfull(1)).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["bob sent".to_string()])
    );
    let sms = sent_sms(&fake).await;
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].0, BOB);
}

#[tokio::test]
async fn the_oncall_endpoint_names_who_and_until_when_behind_the_same_credentials() {
    let fake = FakeSipgate::new().start().await;
    let config = on_call_config(&fake.uri()).server(json!({
        "auth": {"bearer": {"token": "oncall-test-token"}}
    }));
    let app = TestApp::start(&config.yaml()).await;
    let url = format!("{}/api/v1/oncall?at=2026-03-30T06:59:59Z&next=2", app.url);
    let refused = app.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let answer = app
        .http
        .get(&url)
        .bearer_auth("oncall-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body = answer.text().await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Monday 30 March 2026, the day after the clocks went forward: 09:00 CEST is 07:00 UTC.
    assert_eq!(
        json,
        json!({
            "at": "2026-03-30T06:59:59Z",
            "schedules": [{
                "schedule": "primary",
                "time_zone": "Europe/Berlin",
                "on_call": "bob",
                "since": "2026-03-23T08:00:00Z",
                "until": "2026-03-30T07:00:00Z",
                "next": [
                    {"at": "2026-03-30T07:00:00Z", "who": "alice", "until": "2026-04-06T07:00:00Z"},
                    {"at": "2026-04-06T07:00:00Z", "who": "bob", "until": "2026-04-13T07:00:00Z"},
                ],
            }],
        })
    );
    assert!(!body.contains("4915228817386") && !body.contains("4915254599371"));

    let bad = app
        .http
        .get(format!("{}/api/v1/oncall?at=tomorrow", app.url))
        .bearer_auth("oncall-test-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let error: serde_json::Value = bad.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid query: at: "),
        "{error}"
    );
}

#[tokio::test]
async fn the_gauge_follows_a_handoff() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&on_call_config(&fake.uri()).yaml()).await;
    let next = app
        .tick(shift_notices::JOB, at("2026-01-12T07:59:59Z"))
        .await;
    assert_eq!(
        next,
        at("2026-01-12T08:00:00Z"),
        "the next look is the handoff"
    );
    let metrics = app.metrics.render();
    assert!(
        metrics
            .contains("alertmanager_sipgate_oncall{recipient=\"alice\",schedule=\"primary\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("alertmanager_sipgate_oncall{recipient=\"bob\",schedule=\"primary\"} 0\n"),
        "{metrics}"
    );
    app.tick(shift_notices::JOB, at("2026-01-12T08:00:00Z"))
        .await;
    let metrics = app.metrics.render();
    assert!(
        metrics
            .contains("alertmanager_sipgate_oncall{recipient=\"alice\",schedule=\"primary\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("alertmanager_sipgate_oncall{recipient=\"bob\",schedule=\"primary\"} 1\n"),
        "{metrics}"
    );
    assert!(
        sent_sms(&fake).await.is_empty(),
        "no notices unless asked for"
    );
}

/// A shift notice names the end of the shift without its year while that is within a year:
/// sent on 28 December, "until Mon 04 Jan" can only mean the coming January.
#[tokio::test]
async fn a_shift_notice_across_the_new_year_does_not_grow_by_the_year() {
    let fake = FakeSipgate::new().start().await;
    let mut config = on_call_config(&fake.uri());
    config.schedules.get_mut("primary").unwrap()["notify_shift_start"] = true.into();
    let app = TestApp::start(&config.yaml()).await;
    app.tick(shift_notices::JOB, at("2026-12-28T08:00:00Z"))
        .await;
    assert_eq!(
        sent_sms(&fake).await,
        [(
            BOB.to_string(),
            "You are on call for primary until Mon 04 Jan 09:00".to_string()
        )]
    );
}

/// The service's own background jobs look at a reloaded schedule at once, not at their next
/// minute: the gauge names the new person within the few seconds `metrics_with` waits.
#[tokio::test]
async fn the_service_follows_a_reloaded_schedule_at_once() {
    let fake = FakeSipgate::new().start().await;
    let mut config = on_call_config(&fake.uri());
    let alone = |who: &str| {
        json!({"time_zone": "Europe/Berlin",
               "rotation": {"members": [who], "shift": "1w", "start": "2026-01-05T09:00"}})
    };
    config.schedules.insert("primary".into(), alone("alice"));
    let service = Service::start(&config.yaml()).await;
    let on_call = |who: &str| {
        format!("alertmanager_sipgate_oncall{{recipient=\"{who}\",schedule=\"primary\"}} 1\n")
    };
    metrics_with(&service.url, &on_call("alice")).await;

    config.schedules.insert("primary".into(), alone("bob"));
    std::fs::write(&service.config, config.yaml()).unwrap();
    assert_eq!(service.reload().await.0, 200);
    metrics_with(&service.url, &on_call("bob")).await;
}

/// Two replicas on one Redis both see the handoff; one notice goes out.
#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn a_shift_notice_goes_out_once_from_two_replicas() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let mut config = on_call_config(&fake.uri()).on_redis(&redis);
    config.schedules.get_mut("primary").unwrap()["notify_shift_start"] = true.into();
    let yaml = config.yaml();
    let replicas = [TestApp::start(&yaml).await, TestApp::start(&yaml).await];

    let handoff = at("2026-01-12T08:00:00Z");
    let before = handoff - chrono::Duration::seconds(1);
    for replica in &replicas {
        replica.tick(shift_notices::JOB, before).await;
    }
    assert!(
        sent_sms(&fake).await.is_empty(),
        "the notice of alice's shift is long past"
    );
    // Both look at once, one of them a little late.
    tokio::join!(
        replicas[0].tick(shift_notices::JOB, handoff),
        replicas[1].tick(shift_notices::JOB, handoff + chrono::Duration::seconds(2)),
    );
    for replica in &replicas {
        replica
            .tick(shift_notices::JOB, handoff + chrono::Duration::minutes(1))
            .await;
    }
    assert_eq!(
        sent_sms(&fake).await,
        [(
            BOB.to_string(),
            "You are on call for primary until Mon 19 Jan 09:00".to_string()
        )]
    );
}
