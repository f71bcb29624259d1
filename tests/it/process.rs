//! The binary as operators run it: graceful shutdown with SMS in flight, and what its logs show.

use std::time::Duration;

use crate::harness::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn slow_sipgate(delay: Duration) -> MockServer {
    FakeSipgate::new()
        .answering(ResponseTemplate::new(204).set_delay(delay))
        .start()
        .await
}

async fn post(url: &str) -> reqwest::Result<u16> {
    let response = reqwest::Client::new()
        .post(format!("{url}/alerts"))
        .body(fixture("firing-highlatency.json"))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn sigterm_waits_for_the_request_and_its_sms() {
    let fake = slow_sipgate(Duration::from_millis(1500)).await;
    let mut service = Service::start(
        &TestConfig::new(&fake.uri())
            .delivery("response_deadline", "4s")
            .yaml(),
    )
    .await;

    let url = service.url.clone();
    let caller = tokio::spawn(async move { post(&url).await });
    // The SMS is on the wire before the signal comes.
    requests_received(&fake, 1).await;
    service.child.terminate();
    eventually(
        Duration::from_secs(5),
        "no new requests after SIGTERM",
        || async { post(&service.url).await.is_err().then_some(()) },
    )
    .await;

    assert_eq!(
        caller.await.unwrap().unwrap(),
        200,
        "the request in flight got its answer"
    );
    let status = service.child.wait_for_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}\n{}", service.log());
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(ALICE.to_string(), 1)].into()
    );
    let log = service.log();
    assert!(log.contains("signal=SIGTERM"), "{log}");
    assert!(log.contains("message=sms route=warnings recipient=alice number=+49152******86 segments=1 outcome=sent"), "{log}");
    assert!(log.contains("all SMS in flight finished"), "{log}");
}

#[tokio::test]
async fn sigterm_lets_a_send_past_the_deadline_finish() {
    let fake = slow_sipgate(Duration::from_millis(2500)).await;
    let mut service = Service::start(&fault_config(&fake.uri())).await;

    assert_eq!(
        post(&service.url).await.unwrap(),
        502,
        "unconfirmed at the 1s deadline"
    );
    let status = service.stop().await;

    assert!(status.success(), "{status:?}\n{}", service.log());
    let log = service.log();
    assert!(
        log.contains("SMS accepted by Sipgate after the response deadline"),
        "the send finished before exit:\n{log}"
    );
    assert!(log.contains("all SMS in flight finished"), "{log}");
    assert!(!log.contains(ALICE), "numbers are masked in logs:\n{log}");
    assert!(
        !log.contains(TOKEN),
        "the token never appears in logs:\n{log}"
    );
}

#[tokio::test]
async fn a_failing_send_is_logged_with_its_reason_and_without_secrets() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("bad token for {ALICE}")))
        .mount(&fake)
        .await;
    let mut service = Service::start(&fault_config(&fake.uri())).await;

    assert_eq!(post(&service.url).await.unwrap(), 502);
    let log = service.stop_and_read_log().await;
    assert!(log.contains("level=error"), "{log}");
    assert!(log.contains("reason=auth"), "{log}");
    assert!(log.contains("operator action needed"), "{log}");
    assert!(
        log.contains("message=sms route=warnings recipient=alice number=+49152******86 segments=1 outcome=failed reason=auth"),
        "{log}"
    );
    assert!(
        log.contains("sipgate_body=\"bad token for +49*********86\""),
        "{log}"
    );
    assert!(!log.contains(ALICE), "full number in the log:\n{log}");
    assert!(!log.contains(&ALICE[1..]), "full number in the log:\n{log}");
    assert!(!log.contains(TOKEN), "token in the log:\n{log}");
    assert!(
        !log.contains(&AUTHORIZATION[6..]),
        "encoded credentials in the log:\n{log}"
    );
}

#[tokio::test]
async fn label_values_cannot_forge_log_lines() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let mut service = Service::start(&fault_config(&fake.uri())).await;
    let forged = "x\nts=2026-01-01T00:00:00Z level=error message=forged";
    let body = serde_json::json!({
        "receiver": forged, "status": "firing", "groupKey": forged,
        "alerts": [{"status": "firing", "labels": {"alertname": forged, "severity": "warning", "service": "api"}}]
    });
    let status = reqwest::Client::new()
        .post(format!("{}/alerts", service.url))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let log = service.stop_and_read_log().await;
    assert!(
        log.contains("message=forged"),
        "the value is logged, escaped:\n{log}"
    );
    assert!(
        // The date is masked as any run of 7 or more digits is (redact).
        log.contains(r#"group_key="x\nts=20**-**-01T00:00:00Z level=error message=forged""#),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            line.starts_with("ts=2026-11") || !line.starts_with("ts=2026-01"),
            "forged line:\n{log}"
        );
        assert_eq!(
            line.split(' ').nth(1),
            Some("level=info"),
            "forged line:\n{log}"
        );
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line_of_a_notification() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &fault_config(&fake.uri()));
    let mut service = Service::start_with(&config, &["--log.format=json"], &[]).await;
    let url = service.url.clone();
    let response = reqwest::Client::new()
        .post(format!("{url}/alerts"))
        .body(fixture("firing-diskfull.json"))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(response.status(), 200);
    service.stop().await;

    let lines: Vec<serde_json::Value> = service
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id.as_str())
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        vec!["sms", "sms", "notification handled"],
        "{lines:?}"
    );
    assert_eq!(of_request[2]["group_key"], "{}:{alertname=\"DiskFull\"}");
    assert_eq!(of_request[2]["alerts"], 1);
    assert_eq!(of_request[2]["outcome"], "success");
    assert!(of_request[2]["duration_ms"].is_u64());
}

#[tokio::test]
async fn sighup_reloads_the_config_and_a_bad_one_is_refused() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let config = TestConfig::faults(&fake.uri());
    let mut service = Service::start(&config.yaml()).await;
    let with_warnings_to = |name: &str| {
        let mut changed = config.clone();
        changed.route("warnings").to = vec![name.to_string()];
        changed.yaml()
    };

    std::fs::write(&service.config, with_warnings_to("nobody")).unwrap();
    service.child.signal("HUP");
    metrics_with(
        &service.url,
        "alertmanager_sipgate_config_last_reload_successful 0",
    )
    .await;

    std::fs::write(&service.config, with_warnings_to("bob")).unwrap();
    service.child.signal("HUP");
    metrics_with(
        &service.url,
        "alertmanager_sipgate_config_last_reload_successful 1",
    )
    .await;
    assert_eq!(post(&service.url).await.unwrap(), 200);
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(BOB.to_string(), 1)].into()
    );

    let log = service.stop_and_read_log().await;
    assert!(
        log.contains("config reload failed; keeping the running config"),
        "{log}"
    );
    assert!(log.contains("message=\"config reloaded\""), "{log}");
}

/// A refused notification is lost (Alertmanager does not retry a 4xx), so the operator must
/// see it: one warning naming the scheme that was tried, never the credentials.
#[tokio::test]
async fn refused_credentials_are_logged_with_the_scheme_only() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let yaml = TestConfig::new(&fake.uri())
        .server(serde_json::json!({"auth": {
            "basic": {"username": "alertmanager", "password": "right-secret"}
        }}))
        .yaml();
    let mut service = Service::start(&yaml).await;
    let response = reqwest::Client::new()
        .post(format!("{}/alerts", service.url))
        .basic_auth("alertmanager", Some("wrong-secret"))
        .body(fixture("firing-diskfull.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let log = service.stop_and_read_log().await;
    let refused = lines_with(&log, "request refused");
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].contains(" level=warn "), "{log}");
    assert!(refused[0].contains(" scheme=basic "), "{log}");
    assert!(refused[0].contains(" path=/alerts "), "{log}");
    assert!(
        !log.contains("wrong-secret") && !log.contains("right-secret"),
        "{log}"
    );
    assert!(
        !log.contains("YWxlcnRtYW5hZ2Vy"),
        "no encoded credentials either:\n{log}"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

/// Listening beyond loopback without inbound auth is allowed (it is the default), but said.
#[tokio::test]
async fn an_open_port_without_auth_is_warned_about_once() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_yaml(&fake.uri()));

    let mut open = Service::start_on("0.0.0.0", &config, &[], &[]).await;
    let log = open.stop_and_read_log().await;
    let warnings = lines_with(&log, "inbound authentication is off");
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains(" level=warn "), "{log}");
    assert!(warnings[0].contains("set server.auth"), "{log}");

    let mut local = Service::start_with(&config, &[], &[]).await;
    local.stop().await;
    assert!(!local.log().contains("inbound authentication is off"));
}

/// `SIPGATE_API_URL` points the example config, unedited, at a fake or a proxy, as the README's
/// "Trying it against a fake Sipgate" does.
#[tokio::test]
async fn sipgate_api_url_in_the_environment_points_the_unedited_example_elsewhere() {
    let fake = FakeSipgate::new().with_credential_check().start().await;
    let dir = example_service_dir(None);
    let config = dir.path().join("config.yml");
    let api_url = format!("{}/v2", fake.uri());
    let service = Service::start_with(
        &config,
        &[],
        &[
            ("SIPGATE_TOKEN_ID", TOKEN_ID),
            ("SIPGATE_TOKEN", TOKEN),
            ("SIPGATE_API_URL", &api_url),
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/alerts", service.url))
        .basic_auth("alertmanager", Some(EXAMPLE_SECRET))
        .body(std::fs::read(example("payloads/firing.json")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "log:\n{}", service.log());
    let loaded = alertmanager_sipgate::config::Config::load_with_env(&config, &|_| None).unwrap();
    let on_call = loaded.schedules["primary"].who(chrono::Utc::now());
    // The example's critical route escalates: step 1 pages the primary with a link.
    let sent = sent_sms(&fake).await;
    let [(number, text)] = &sent[..] else {
        panic!("one SMS expected: {sent:?}")
    };
    assert_eq!(number, loaded.recipients[on_call].e164());
    assert_eq!(
        split_at_ack_code(text).0,
        "FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full\n\
         Ack: https://pager.example.com/a/"
    );
    assert_eq!(credential_checks(&fake).await, 1);
    assert!(
        service.log().contains(&format!(" sipgate={api_url}\n")),
        "the start's log line names where SMS go:\n{}",
        service.log()
    );
}

/// Sipgate's error body is logged as the text it is, on one line and masked, and escaped once by
/// the log format: a quote in it reads `\"` in logfmt and in JSON, never `\\\"`.
#[tokio::test]
async fn a_sipgate_error_body_is_escaped_once_by_the_log_format() {
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(400).set_body_string("{\"to\":\"0152 28817386\"}\r\n"))
        .start()
        .await;

    let mut logfmt = Service::start(&fault_config(&fake.uri())).await;
    assert_eq!(post(&logfmt.url).await.unwrap(), 502);
    let log = logfmt.stop_and_read_log().await;
    let logged = lines_with(&log, "sipgate_body=");
    assert_eq!(logged.len(), 1, "{log}");
    assert!(
        logged[0].contains(r#" sipgate_body="{\"to\":\"01** ******86\"}" "#),
        "{log}"
    );

    let mut json =
        Service::start_with_flags(&fault_config(&fake.uri()), &["--log.format=json"]).await;
    assert_eq!(post(&json.url).await.unwrap(), 502);
    let log = json.stop_and_read_log().await;
    let logged = lines_with(&log, "sipgate_body");
    assert_eq!(logged.len(), 1, "{log}");
    assert!(
        logged[0].contains(r#""sipgate_body":"{\"to\":\"01** ******86\"}""#),
        "{log}"
    );
    let line: serde_json::Value = serde_json::from_str(logged[0]).unwrap();
    assert_eq!(line["sipgate_body"], r#"{"to":"01** ******86"}"#);
}

/// Only a refused notification is lost. A refused reload, scrape or on-call query says what it
/// means instead, and each kind is sampled on its own, so that a scraper with old credentials
/// cannot hide a lost page behind its own refusals.
#[tokio::test]
async fn each_kind_of_refused_request_says_what_the_refusal_means() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let yaml = TestConfig::new(&fake.uri())
        .server(serde_json::json!({"auth": {
            "basic": {"username": "alertmanager", "password": "right-secret"},
            "protect_metrics": true
        }}))
        .yaml();
    let mut service = Service::start(&yaml).await;
    let http = reqwest::Client::new();
    let url = &service.url;
    for request in [
        http.get(format!("{url}/metrics")),
        http.post(format!("{url}/-/reload")),
        http.get(format!("{url}/api/v1/oncall")),
        http.post(format!("{url}/alerts"))
            .body(fixture("firing-diskfull.json")),
        // The second notification within the interval: counted, not logged again.
        http.post(format!("{url}/healthchecks"))
            .body(r#"{"status":"down","name":"backup"}"#),
        http.get(format!("{url}/metrics")),
    ] {
        assert_eq!(request.send().await.unwrap().status(), 401);
    }
    let log = service.stop_and_read_log().await;

    let refused: Vec<(&str, &str)> = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .map(|l| {
            let path = l.split(" path=").nth(1).unwrap().split(' ').next().unwrap();
            let message = l
                .split("message=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            (path, message)
        })
        .collect();
    assert_eq!(
        refused,
        [
            (
                "/metrics",
                "request refused: missing or wrong credentials; the scrape gets no metrics"
            ),
            (
                "/-/reload",
                "request refused: missing or wrong credentials; the config was not reloaded"
            ),
            (
                "/api/v1/oncall",
                "request refused: missing or wrong credentials; the on-call query gets no answer"
            ),
            (
                "/alerts",
                "request refused: missing or wrong credentials; Alertmanager does not retry this, the notification is lost"
            ),
        ],
        "{log}"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}
