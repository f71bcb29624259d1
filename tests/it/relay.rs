//! The whole relay over real HTTP: Alertmanager's captured bodies in, SMS out at a fake Sipgate.

use crate::harness::*;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DISK_FULL: &str = "FIRING DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full";

async fn fake_sipgate(status: u16) -> MockServer {
    FakeSipgate::new()
        .answering(ResponseTemplate::new(status))
        .start()
        .await
}

#[tokio::test]
async fn critical_alert_goes_to_the_oncall_group() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;

    let (status, body) = app.post_alerts(fixture("firing-diskfull.json")).await;

    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "unrouted_alerts": 0, "sms": [
            {"route": "critical", "recipient": "alice", "outcome": "sent", "segments": 1},
            {"route": "critical", "recipient": "bob", "outcome": "sent", "segments": 1},
        ]})
    );
    assert_eq!(
        sent_sms(&fake).await,
        vec![
            (ALICE.to_string(), DISK_FULL.to_string()),
            (BOB.to_string(), DISK_FULL.to_string())
        ]
    );
}

#[tokio::test]
async fn the_exact_request_reaches_sipgate() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/sessions/sms"))
        .and(header("authorization", AUTHORIZATION))
        .and(header("content-type", "application/json"))
        .and(header("accept", "application/json"))
        .and(body_json(
            json!({"smsId": "s0", "recipient": ALICE, "message": DISK_FULL}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(body_json(
            json!({"smsId": "s0", "recipient": BOB, "message": DISK_FULL}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&fake)
        .await;
    let app = TestApp::with_fake(&fake).await;
    let (status, _) = app.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(status, 200);
    fake.verify().await;
}

#[tokio::test]
async fn warning_goes_to_one_person_with_the_routes_template() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;

    let (status, body) = app.post_alerts(fixture("firing-highlatency.json")).await;

    assert_eq!(status, 200);
    assert_eq!(
        body["sms"],
        json!([{"route": "warnings", "recipient": "alice", "outcome": "sent", "segments": 1}])
    );
    assert_eq!(
        sent_sms(&fake).await,
        vec![(
            ALICE.to_string(),
            "FIRING HighLatency@web1:8080".to_string()
        )]
    );
}

#[tokio::test]
async fn resolved_alert_is_sent_where_the_route_sends_resolved() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;

    let (status, _) = app.post_alerts(fixture("resolved-diskfull.json")).await;

    assert_eq!(status, 200);
    let text = "RESOLVED DiskFull db1:9100 at Nov 25 09:06 UTC: Disk on db1 is 95% full";
    assert_eq!(
        sent_sms(&fake).await,
        vec![
            (ALICE.to_string(), text.to_string()),
            (BOB.to_string(), text.to_string())
        ]
    );
}

#[tokio::test]
async fn resolved_alert_is_held_back_where_send_resolved_is_off() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;

    let (status, body) = app.post_alerts(fixture("resolved-highlatency.json")).await;

    assert_eq!(status, 200, "held back on purpose is not a failure");
    assert_eq!(
        body["sms"],
        json!([{"route": "warnings", "recipient": "alice", "outcome": "suppressed", "reason": "send_resolved", "segments": 0}])
    );
    assert!(sent_sms(&fake).await.is_empty());
    assert!(app.metrics.render().contains(
        "alertmanager_sipgate_sms_suppressed_total{reason=\"send_resolved\",route=\"warnings\"} 1"
    ));
}

#[tokio::test]
async fn sipgate_rejecting_the_token_answers_502() {
    let fake = fake_sipgate(401).await;
    let app = TestApp::with_fake(&fake).await;

    let (status, body) = app.post_alerts(fixture("firing-diskfull.json")).await;

    assert_eq!(
        status, 502,
        "Alertmanager must keep the notification and retry"
    );
    assert_eq!(
        body,
        json!({"status": "failed", "unrouted_alerts": 0, "sms": [
            {"route": "critical", "recipient": "alice", "outcome": "failed", "reason": "auth", "segments": 1},
            {"route": "critical", "recipient": "bob", "outcome": "failed", "reason": "auth", "segments": 1},
        ]})
    );
    // Both may reach Sipgate, or the second may already meet the hold-off the first one started.
    let tried = sent_sms(&fake).await.len();
    assert!((1..=2).contains(&tried), "{tried} requests");
}

#[tokio::test]
async fn sipgate_server_error_answers_502() {
    let fake = fake_sipgate(500).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let (status, body) = app.post_alerts(fixture("firing-highlatency.json")).await;

    assert_eq!(status, 502);
    assert_eq!(body["sms"][0]["reason"], "server_error");
    assert!(app.metrics.render().contains(
        "alertmanager_sipgate_sms_failed_total{reason=\"server_error\",route=\"warnings\"} 1"
    ));
}

#[tokio::test]
async fn one_failure_among_successes_still_answers_502() {
    let fake = MockServer::start().await;
    Mock::given(body_json(
        json!({"smsId": "s0", "recipient": BOB, "message": DISK_FULL}),
    ))
    .respond_with(ResponseTemplate::new(503))
    .mount(&fake)
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fake)
        .await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let (status, body) = app.post_alerts(fixture("firing-diskfull.json")).await;

    assert_eq!(status, 502);
    assert_eq!(body["sms"][0]["outcome"], "sent");
    assert_eq!(body["sms"][1]["outcome"], "failed");
}

#[tokio::test]
async fn alerts_without_a_route_are_counted_not_sent() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;
    let body = br#"{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Info","severity":"info"}}]}"#;

    let (status, answer) = app.post_alerts(body.to_vec()).await;

    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"status": "success", "unrouted_alerts": 1, "sms": []})
    );
    assert!(sent_sms(&fake).await.is_empty());
    assert!(
        app.metrics.render().contains(
            "alertmanager_sipgate_sms_suppressed_total{reason=\"no_route\",route=\"\"} 1"
        )
    );
}

#[tokio::test]
async fn several_alerts_make_one_sms_per_recipient() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;
    let body = json!({
        "receiver": "sms", "status": "firing", "groupKey": "{}:{}", "version": "4",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db1", "severity": "critical"},
             "annotations": {"summary": "db1 95%"}, "startsAt": "2026-11-25T09:05:00Z", "endsAt": "0001-01-01T00:00:00Z"},
            {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db2", "severity": "critical"},
             "annotations": {"summary": "db2 97% & rising"}, "startsAt": "2026-11-25T09:07:00.5Z", "endsAt": "0001-01-01T00:00:00Z"},
            {"status": "resolved", "labels": {"alertname": "Load", "instance": "db3", "severity": "critical"},
             "startsAt": "2026-11-25T08:00:00Z", "endsAt": "2026-11-25T09:00:00Z"}
        ]
    });

    let (status, answer) = app.post_alerts(body.to_string()).await;

    assert_eq!(status, 200);
    assert_eq!(answer["sms"].as_array().unwrap().len(), 2);
    let text = "FIRING 2\n\
                DiskFull db1 since Nov 25 09:05 UTC: db1 95%\n\
                DiskFull db2 since Nov 25 09:07 UTC: db2 97% & rising\n\
                RESOLVED 1\n\
                Load db3";
    assert_eq!(
        sent_sms(&fake).await,
        vec![
            (ALICE.to_string(), text.to_string()),
            (BOB.to_string(), text.to_string())
        ]
    );
}

#[tokio::test]
async fn dry_run_sends_nothing_and_answers_200() {
    let fake = fake_sipgate(204).await;
    let mut config = TestConfig::new(&fake.uri());
    config.sipgate.token = None;
    config.sipgate.token_id = None;
    let yaml = config.yaml();
    let app = TestApp::start(&yaml).await;

    let (status, body) = app.post_alerts(fixture("firing-diskfull.json")).await;

    assert_eq!(status, 200);
    assert_eq!(body["sms"][0]["outcome"], "dry_run");
    assert!(fake.received_requests().await.unwrap().is_empty());
    let metrics = app.metrics.render();
    for (line, what) in [
        (
            "alertmanager_sipgate_sms_dry_run_total{route=\"critical\"} 2\n",
            "both SMS counted as dry-run",
        ),
        (
            "alertmanager_sipgate_sms_dry_run_total{route=\"warnings\"} 0\n",
            "other routes at zero",
        ),
        (
            "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"critical\"} 0\n",
            "and not as sent",
        ),
    ] {
        assert!(
            metrics.contains(line),
            "{what}: {line} missing in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn content_type_is_not_required() {
    let fake = fake_sipgate(204).await;
    let app = TestApp::with_fake(&fake).await;
    let response = app
        .http
        .post(format!("{}/alerts", app.url))
        .body(fixture("firing-diskfull.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
