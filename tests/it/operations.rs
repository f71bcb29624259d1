//! Operating the service: config reload (endpoint and SIGHUP) and inbound authentication.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn metric(app: &TestApp, name: &str) -> f64 {
    app.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn a_good_reload_changes_routing_for_the_next_notification() {
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let before = metric(
        &app,
        "alertmanager_sipgate_config_last_reload_success_timestamp_seconds",
    );

    let mut changed = TestConfig::faults(&fake.uri());
    changed.route("warnings").to = vec!["bob".to_string()];
    let changed = changed.yaml();
    std::fs::write(&app.config_path, changed).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(app.reload().await, (200, "config reloaded\n".to_string()));

    let (code, body) = app.post_alerts(fixture("firing-highlatency.json")).await;
    assert_eq!(code, 200);
    assert_eq!(body["sms"][0]["recipient"], "bob");
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(BOB.to_string(), 1)].into()
    );
    assert_eq!(
        metric(&app, "alertmanager_sipgate_config_last_reload_successful"),
        1.0
    );
    assert!(
        metric(
            &app,
            "alertmanager_sipgate_config_last_reload_success_timestamp_seconds"
        ) > before
    );
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_config_and_says_so() {
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let before = metric(
        &app,
        "alertmanager_sipgate_config_last_reload_success_timestamp_seconds",
    );

    let mut broken = TestConfig::faults(&fake.uri());
    broken.route("warnings").to = vec!["mallory".to_string()];
    let broken = broken.yaml();
    std::fs::write(&app.config_path, broken).unwrap();
    let (code, text) = app.reload().await;

    assert_eq!(code, 500);
    assert!(
        text.starts_with("config reload failed, keeping the running config: invalid config file"),
        "{text}"
    );
    assert!(
        text.contains("routes[1].to[0]: unknown recipient, group or schedule \"mallory\""),
        "{text}"
    );
    assert_eq!(
        metric(&app, "alertmanager_sipgate_config_last_reload_successful"),
        0.0
    );
    assert_eq!(
        metric(
            &app,
            "alertmanager_sipgate_config_last_reload_success_timestamp_seconds"
        ),
        before
    );
    let (code, body) = app.post_alerts(fixture("firing-highlatency.json")).await;
    assert_eq!(code, 200);
    assert_eq!(
        body["sms"][0]["recipient"], "alice",
        "old routing still in force"
    );
}

#[tokio::test]
async fn a_reload_during_a_slow_send_does_not_disturb_it() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(800)))
        .mount(&fake)
        .await;
    let app = Arc::new(TestApp::start(&fault_config(&fake.uri())).await);

    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { app.post_alerts(fixture("firing-highlatency.json")).await }
    });
    // The reload comes while the SMS is on the wire.
    requests_received(&fake, 1).await;
    let mut changed = TestConfig::faults(&fake.uri());
    changed.route("warnings").name = "renamed".to_string();
    let changed = changed.yaml();
    std::fs::write(&app.config_path, changed).unwrap();
    assert_eq!(app.reload().await.0, 200);

    let (code, body) = in_flight.await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        body["sms"][0]["route"], "warnings",
        "finished on the config it started with"
    );
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(ALICE.to_string(), 1)].into()
    );
    let (_, body) = app.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(body["sms"][0]["route"], "critical");
    let (_, body) = app.post_alerts(fixture("firing-highlatency.json")).await;
    assert_eq!(
        body["sms"][0]["reason"], "duplicate",
        "the ledger outlives the reload"
    );
}

fn auth_config(api_url: &str, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("am-password"), "s3cret\n").unwrap();
    TestConfig::faults(api_url)
        .server(serde_json::json!({"auth": {
            "basic": {"username": "alertmanager", "password_file": dir.join("am-password")},
            "bearer": {"token": "t0ken"}
        }}))
        .yaml()
}

#[tokio::test]
async fn inbound_auth_refuses_missing_and_wrong_credentials() {
    let fake = failing_then_ok(204, 0, None).await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(&auth_config(&fake.uri(), dir.path())).await;

    for header in [
        None,
        Some("Basic YWxlcnRtYW5hZ2VyOndyb25n"),
        Some("Bearer wrong"),
        Some("Bearer"),
    ] {
        let mut request = app
            .http
            .post(format!("{}/alerts", app.url))
            .body(fixture("firing-diskfull.json"));
        if let Some(h) = header {
            request = request.header("Authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            challenges,
            vec![
                r#"Basic realm="alertmanager-sipgate", charset="UTF-8""#,
                r#"Bearer realm="alertmanager-sipgate""#
            ]
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "error", "error": "missing or wrong credentials"})
        );
    }
    let reload = app
        .http
        .post(format!("{}/-/reload", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 401, "reload is protected too");
    assert!(
        fake.received_requests().await.unwrap().is_empty(),
        "nothing was sent"
    );
    for open in ["/metrics", "/-/healthy", "/-/ready"] {
        assert_eq!(app.get(open).await.0, 200, "{open} needs no credentials");
    }
}

#[tokio::test]
async fn inbound_auth_accepts_the_right_basic_and_bearer_credentials() {
    let fake = failing_then_ok(204, 0, None).await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(&auth_config(&fake.uri(), dir.path())).await;

    // The header Alertmanager 0.25 sent for basic_auth alertmanager / s3cret.
    let basic = app
        .http
        .post(format!("{}/alerts", app.url))
        .header("Authorization", "Basic YWxlcnRtYW5hZ2VyOnMzY3JldA==")
        .body(fixture("firing-diskfull.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let bearer = app
        .http
        .post(format!("{}/alerts", app.url))
        .header("Authorization", "Bearer t0ken")
        .body(fixture("firing-highlatency.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let reload = app
        .http
        .post(format!("{}/-/reload", app.url))
        .header("Authorization", "Bearer t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    assert_eq!(fake.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn protected_metrics_need_the_same_credentials_and_the_health_endpoints_stay_open() {
    let fake = failing_then_ok(204, 0, None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        yaml_serde::from_str(&auth_config(&fake.uri(), dir.path())).unwrap();
    config["server"]["auth"]["protect_metrics"] = true.into();
    let app = TestApp::start(&yaml_serde::to_string(&config).unwrap()).await;

    let get = |path: &str, authorization: Option<&str>| {
        let mut request = app.http.get(format!("{}{path}", app.url));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenges = response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .count();
            (status, challenges, response.text().await.unwrap())
        }
    };
    for authorization in [None, Some("Bearer wrong")] {
        let (status, challenges, body) = get("/metrics", authorization).await;
        assert_eq!((status, challenges), (401, 2), "{authorization:?}");
        assert_eq!(
            body,
            r#"{"status":"error","error":"missing or wrong credentials"}"#
        );
        assert_eq!(
            get("/api/v1/oncall", authorization).await.0,
            401,
            "names of who is on call"
        );
    }
    for authorization in ["Basic YWxlcnRtYW5hZ2VyOnMzY3JldA==", "Bearer t0ken"] {
        let (status, _, body) = get("/metrics", Some(authorization)).await;
        assert_eq!(status, 200);
        assert!(
            body.contains(
                "alertmanager_sipgate_requests_total{code=\"401\",endpoint=\"/metrics\"} 2\n"
            ),
            "{body}"
        );
    }
    for open in ["/-/healthy", "/-/ready"] {
        assert_eq!(get(open, None).await.0, 200, "{open} stays open for probes");
    }
}

#[tokio::test]
async fn a_flood_of_refused_requests_is_counted_in_full_but_logged_in_a_few_lines() {
    let fake = FakeSipgate::new().start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &auth_config(&fake.uri(), dir.path()));
    let service = Service::start_with(&config, &[], &[]).await;
    let http = reqwest::Client::new();
    for n in 0..500 {
        let mut request = http
            .post(format!("{}/alerts", service.url))
            .body(fixture("firing-diskfull.json"));
        if n % 2 == 0 {
            request = request.header("Authorization", "Bearer wrong");
        }
        assert_eq!(request.send().await.unwrap().status(), 401);
    }

    metrics_with(
        &service.url,
        r#"alertmanager_sipgate_requests_total{code="401",endpoint="/alerts"} 500"#,
    )
    .await;
    let log = service.log();
    let refused = lines_with(&log, "request refused");
    assert!(
        (1..=2).contains(&refused.len()),
        "{} lines:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(
        refused[0].contains(" scheme=bearer refused_since_last_line=1 schemes_tried=bearer "),
        "{}",
        refused[0]
    );
    assert!(
        !log.contains("t0ken") && !log.contains("s3cret"),
        "no credentials in the log"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_reload_that_changes_the_state_store_is_refused() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&TestConfig::new(&fake.uri()).yaml()).await;
    let changed = TestConfig::new(&fake.uri()).state(serde_json::json!({"file": "state.redb"}));
    std::fs::write(&app.config_path, changed.yaml()).unwrap();
    assert_eq!(
        app.reload().await,
        (
            500,
            "config reload failed, keeping the running config: state: the state store changed \
             (memory before, file now); it is opened once, at start: restart to apply it\n"
                .to_string()
        )
    );
    assert_eq!(
        metric(&app, "alertmanager_sipgate_config_last_reload_successful"),
        0.0
    );
    let (_, ready) = app.get("/-/ready").await;
    assert_eq!(ready, "OK (sipgate, state: memory)\n");
}
