//! The watchdog: heartbeat alerts keep it quiet; a silence longer than its timeout pages once, and
//! its end once more. Time is the service's `ManualClock` and explicit ticks, except in the end-to-
//! end test with real Prometheus and Alertmanager.

use std::time::Duration;

use serde_json::json;

use alertmanager_sipgate::watchdog;

use crate::harness::*;

fn watchdog_config(api_url: &str, timeout: &str) -> TestConfig {
    let mut config = TestConfig::faults(api_url);
    config.watchdog = Some(json!({
        "matchers": ["alertname=\"Watchdog\""],
        "timeout": timeout,
        "to": ["alice"],
    }));
    config
}

/// A firing Watchdog alert as Alertmanager posts it.
fn heartbeat() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "4", "status": "firing", "receiver": "sms", "groupKey": "{}:{alertname=\"Watchdog\"}",
        "alerts": [{"status": "firing", "labels": {"alertname": "Watchdog", "severity": "none"},
                    "annotations": {}, "startsAt": "2026-01-12T07:00:00Z", "fingerprint": "0123456789abcdef"}],
    }))
    .unwrap()
}

#[tokio::test]
async fn heartbeats_are_neither_routed_nor_texted() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&watchdog_config(&fake.uri(), "10m").yaml()).await;
    app.clock.set(at("2026-01-12T08:00:00Z"));
    let (status, answer) = app.post_alerts(heartbeat()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["sms"], json!([]));
    assert_eq!(answer["unrouted_alerts"], 0);
    let metrics = app.metrics.render();
    assert!(
        metrics.contains("alertmanager_sipgate_watchdog_last_seen_timestamp_seconds 1768204800\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "alertmanager_sipgate_sms_suppressed_total{reason=\"no_route\",route=\"\"} 0\n"
        )
    );
    app.tick(watchdog::JOB, at("2026-01-12T08:09:59Z")).await;
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_watchdog_silent 0\n")
    );
    assert!(sent_sms(&fake).await.is_empty());
}

/// Alertmanager sends the heartbeat every minute or so: it is one debug line that says what it
/// is, not a notification of no alerts. Beside other alerts, the notification's line counts those.
#[tokio::test]
async fn a_heartbeat_is_logged_as_a_heartbeat_and_not_as_a_notification_without_alerts() {
    let fake = FakeSipgate::new().start().await;
    let yaml = watchdog_config(&fake.uri(), "10m").yaml();
    let mut service = Service::start_with_flags(&yaml, &["--log.level=debug"]).await;
    let (status, _) = service.post_alerts(heartbeat()).await;
    assert_eq!(status, 200);
    let mut mixed: serde_json::Value =
        serde_json::from_slice(&fixture("firing-diskfull.json")).unwrap();
    let beat: serde_json::Value = serde_json::from_slice(&heartbeat()).unwrap();
    mixed["alerts"]
        .as_array_mut()
        .unwrap()
        .push(beat["alerts"][0].clone());
    let (status, _) = service.post_alerts(mixed.to_string()).await;
    assert_eq!(status, 200);
    let log = service.stop_and_read_log().await;

    let about_notifications: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("message=\"heartbeat received\"") || l.contains("notification handled")
        })
        .collect();
    assert_eq!(about_notifications.len(), 2, "{log}");
    assert!(
        about_notifications[0].contains(" level=debug ")
            && about_notifications[0].contains(" heartbeats=1 "),
        "{log}"
    );
    assert!(
        about_notifications[1].contains("message=\"notification handled\"")
            && about_notifications[1].contains(" alerts=1 heartbeats=1 sms=2 "),
        "{log}"
    );
    assert!(!log.contains("alerts=0"), "{log}");
}

#[tokio::test]
async fn a_silence_pages_once_and_its_end_once_more() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&watchdog_config(&fake.uri(), "10m").yaml()).await;
    app.clock.set(at("2026-01-12T08:00:00Z"));
    app.post_alerts(heartbeat()).await;
    let log = CapturedLog::start();

    app.tick(watchdog::JOB, at("2026-01-12T08:10:00Z")).await;
    assert!(
        sent_sms(&fake).await.is_empty(),
        "exactly the timeout is not yet silence"
    );
    for minute in ["08:10:01", "08:11:00", "08:20:00"] {
        app.tick(watchdog::JOB, at(&format!("2026-01-12T{minute}Z")))
            .await;
    }
    let silent = "ALERTING PIPELINE SILENT for 10m: no Watchdog heartbeat since Jan 12 08:00 UTC. \
                  Prometheus, Alertmanager or the way to them may be down.";
    assert_eq!(
        sent_sms(&fake).await,
        [(ALICE.to_string(), silent.to_string())]
    );
    assert!(silent.len() <= 160, "one GSM-7 segment");
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_watchdog_silent 1\n")
    );
    assert_eq!(
        log.text().matches("level=error").count(),
        1,
        "one alarm, logged once:\n{}",
        log.text()
    );
    assert!(
        log.text().contains(
            "level=error target=alertmanager_sipgate::watchdog message=\"the \
             alerting pipeline is silent: no Watchdog heartbeat for longer than watchdog.timeout; \
             Prometheus, Alertmanager or the network between them may be down, so other alerts \
             may not reach anyone either; paging watchdog.to\" silent_for=10m"
        ),
        "{}",
        log.text()
    );

    // Alertmanager is back at 08:25.
    app.clock.set(at("2026-01-12T08:25:00Z"));
    app.post_alerts(heartbeat()).await;
    app.tick(watchdog::JOB, at("2026-01-12T08:25:01Z")).await;
    app.tick(watchdog::JOB, at("2026-01-12T08:26:00Z")).await;
    let back = "ALERTING PIPELINE BACK: Watchdog heartbeats again after 25m of silence \
                (since Jan 12 08:00 UTC).";
    let sms = sent_sms(&fake).await;
    assert_eq!(sms.len(), 2, "{sms:?}");
    assert!(
        sms.contains(&(ALICE.to_string(), back.to_string())),
        "{sms:?}"
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_watchdog_silent 0\n")
    );
}

#[tokio::test]
async fn without_any_heartbeat_the_silence_counts_from_the_start_and_says_so() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&watchdog_config(&fake.uri(), "30s").yaml()).await;
    let log = CapturedLog::start();
    // The watch starts at the first tick.
    app.tick(watchdog::JOB, at("2026-01-12T08:00:00Z")).await;
    app.tick(watchdog::JOB, at("2026-01-12T08:00:30Z")).await;
    assert!(sent_sms(&fake).await.is_empty());
    assert!(!log.text().contains("level=error"), "{}", log.text());
    app.tick(watchdog::JOB, at("2026-01-12T08:00:31Z")).await;
    let silent = "ALERTING PIPELINE SILENT for 31s: no Watchdog heartbeat ever came (watching since \
                  Jan 12 08:00 UTC). Check that Alertmanager routes it here.";
    assert_eq!(
        sent_sms(&fake).await,
        [(ALICE.to_string(), silent.to_string())]
    );
    assert!(silent.len() <= 160, "one GSM-7 segment");
    assert!(
        log.text().contains(
            "level=error target=alertmanager_sipgate::watchdog message=\"no \
             Watchdog heartbeat has come since the service started: check that Prometheus fires \
             the always-firing Watchdog alert and that Alertmanager routes it to this service \
             (watchdog.matchers); paging watchdog.to\" silent_for=31s"
        ),
        "{}",
        log.text()
    );

    // The first heartbeat ever ends it.
    app.clock.set(at("2026-01-12T08:05:00Z"));
    app.post_alerts(heartbeat()).await;
    app.tick(watchdog::JOB, at("2026-01-12T08:05:01Z")).await;
    let back = "ALERTING PIPELINE BACK: the first Watchdog heartbeat came after 5m without any \
                (since Jan 12 08:00 UTC).";
    assert_eq!(
        sent_sms(&fake).await,
        [
            (ALICE.to_string(), back.to_string()),
            (ALICE.to_string(), silent.to_string())
        ]
    );
    assert!(
        log.text().contains(
            "level=info target=alertmanager_sipgate::watchdog message=\"the \
             alerting pipeline is back: the first Watchdog heartbeat since the start arrived\" \
             silent_for=5m"
        ),
        "{}",
        log.text()
    );
}

#[tokio::test]
async fn a_failed_alarm_is_sent_again_until_sipgate_takes_it() {
    // Sipgate refuses the first request (not retried within the request); the next is taken.
    let fake = failing_then_ok(400, 1, None).await;
    let app = TestApp::start(&watchdog_config(&fake.uri(), "10m").yaml()).await;
    app.clock.set(at("2026-01-12T08:00:00Z"));
    app.post_alerts(heartbeat()).await;
    let requests = || async { fake.received_requests().await.unwrap().len() };
    app.tick(watchdog::JOB, at("2026-01-12T08:10:01Z")).await;
    assert_eq!(requests().await, 1);
    app.tick(watchdog::JOB, at("2026-01-12T08:10:30Z")).await;
    assert_eq!(requests().await, 1, "one try a minute");
    app.tick(watchdog::JOB, at("2026-01-12T08:11:00Z")).await;
    assert_eq!(requests().await, 2, "tried again, and taken");
    app.tick(watchdog::JOB, at("2026-01-12T08:12:00Z")).await;
    assert_eq!(requests().await, 2, "then left alone");
    let sms = sent_sms(&fake).await;
    assert!(
        sms.iter()
            .all(|(to, text)| to == ALICE && text.starts_with("ALERTING PIPELINE SILENT"))
    );
}

#[tokio::test]
async fn the_watchdog_section_is_checked() {
    let fake = FakeSipgate::new().start().await;
    let mut config = watchdog_config(&fake.uri(), "5s");
    config.watchdog =
        Some(json!({"matchers": ["not a matcher"], "timeout": "5s", "to": ["mallory"]}));
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config.yaml());
    let problems = alertmanager_sipgate::config::Config::load_with_env(&path, &|_| None)
        .unwrap_err()
        .to_string();
    for expected in [
        "watchdog.matchers[0]: ",
        "watchdog.timeout: must be at least 10s",
        "watchdog.to[0]: unknown recipient, group or schedule \"mallory\"",
    ] {
        assert!(
            problems.contains(expected),
            "{expected} missing in {problems}"
        );
    }
}

/// Two replicas on one Redis: a heartbeat at A keeps B quiet, and one of them sends the alarm.
#[tokio::test]
#[ignore = "needs redis-server (apt-get install redis-server); run with: cargo test -- --include-ignored"]
async fn two_replicas_share_the_heartbeat_and_send_one_alarm() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let yaml = watchdog_config(&fake.uri(), "10m").on_redis(&redis).yaml();
    let (a, b) = (TestApp::start(&yaml).await, TestApp::start(&yaml).await);
    // Both start watching at 07:00.
    for replica in [&a, &b] {
        replica
            .tick(watchdog::JOB, at("2026-01-12T07:00:00Z"))
            .await;
    }
    a.clock.set(at("2026-01-12T08:00:00Z"));
    a.post_alerts(heartbeat()).await;
    // B has heard nothing itself since it started an hour ago, but A has.
    b.tick(watchdog::JOB, at("2026-01-12T08:05:00Z")).await;
    assert!(sent_sms(&fake).await.is_empty());
    tokio::join!(
        a.tick(watchdog::JOB, at("2026-01-12T08:11:00Z")),
        b.tick(watchdog::JOB, at("2026-01-12T08:11:00Z")),
    );
    let sms = sent_sms(&fake).await;
    assert_eq!(sms.len(), 1, "one alarm for both: {sms:?}");
    assert!(
        sms[0].1.starts_with("ALERTING PIPELINE SILENT for 11m"),
        "{}",
        sms[0].1
    );
}

/// Prometheus fires `Watchdog` (`vector(1)`), Alertmanager repeats it every few seconds to the
/// service (the real binary, 10 s timeout). No SMS while it flows; Alertmanager killed -> one
/// "silent" SMS; Alertmanager back -> one "back" SMS.
#[tokio::test]
#[ignore = "needs prometheus and prometheus-alertmanager (apt-get install prometheus prometheus-alertmanager); run with: cargo test -- --include-ignored"]
async fn a_dead_alertmanager_pages_once_and_its_return_once_more() {
    let fake = FakeSipgate::new().start().await;
    // The service starts last, when Alertmanager and Prometheus run: its silence counts from then.
    let service_port = free_port();
    let service_url = format!("http://127.0.0.1:{service_port}");

    let dir = tempfile::tempdir().unwrap();
    let am_config = quick_alertmanager_config(dir.path(), &service_url, "1s", "2s");
    let mut am = Alertmanager::start(&am_config, &dir.path().join("data")).await;
    let am_target = am.url.trim_start_matches("http://").to_string();
    let _prometheus = Prometheus::start(
        &format!(
            "global: {{evaluation_interval: 1s}}\n\
             rule_files: [watchdog.yml]\n\
             alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{am_target}']}}]}}]}}\n"
        ),
        &[(
            "watchdog.yml",
            "groups:\n  - name: meta\n    rules:\n      - alert: Watchdog\n        expr: vector(1)\n",
        )],
    )
    .await;
    let config = write_config(dir.path(), &watchdog_config(&fake.uri(), "10s").yaml());
    let service = Service::start_at("127.0.0.1", service_port, &config, &[], &[]).await;

    // Heartbeats flow for longer than the timeout, and nobody is texted.
    let last_seen = || async {
        let text = metrics(&service.url).await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix("alertmanager_sipgate_watchdog_last_seen_timestamp_seconds ")
            })
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
    };
    let first = eventually(Duration::from_secs(60), "a first heartbeat", last_seen).await;
    eventually(Duration::from_secs(60), "heartbeats for 12 s", || async {
        let latest = last_seen().await?;
        (latest - first >= 12.0).then_some(())
    })
    .await;
    assert!(
        sent_sms(&fake).await.is_empty(),
        "no SMS while heartbeats come"
    );

    am.kill();
    let sms = eventually(Duration::from_secs(60), "the silent SMS", || async {
        let sms = sent_sms(&fake).await;
        (!sms.is_empty()).then_some(sms)
    })
    .await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0].0, ALICE);
    assert!(
        sms[0].1.starts_with("ALERTING PIPELINE SILENT for "),
        "{}",
        sms[0].1
    );
    metrics_with(&service.url, "alertmanager_sipgate_watchdog_silent 1\n").await;

    am.start_again().await;
    let sms = eventually(Duration::from_secs(60), "the back SMS", || async {
        let sms = sent_sms(&fake).await;
        (sms.len() >= 2).then_some(sms)
    })
    .await;
    assert_eq!(sms.len(), 2, "{sms:?}");
    assert!(
        sms.iter().any(|(_, text)| text
            .starts_with("ALERTING PIPELINE BACK: Watchdog heartbeats again after ")),
        "{sms:?}"
    );
    metrics_with(&service.url, "alertmanager_sipgate_watchdog_silent 0\n").await;
}

/// The quick start runs the example config with no Prometheus or Alertmanager in front: nothing in
/// it may page by itself there, or a new user's first SMS is a false alarm.
#[test]
fn the_example_config_pages_nobody_on_its_own() {
    let dir = example_service_dir(None);
    let config = alertmanager_sipgate::config::Config::load_with_env(
        &dir.path().join("config.yml"),
        &|_| None,
    )
    .unwrap();
    assert!(
        config.watchdog.is_none(),
        "the example's watchdog would page 10 minutes after the quick start"
    );
    assert!(
        config.schedules.values().all(|s| !s.notify_shift_start),
        "the example would text at the next handoff"
    );
}
