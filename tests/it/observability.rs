//! What operators see: exact metric values after each kind of outcome, the Sipgate credential
//! check behind `/-/ready`, and the metrics as Prometheus itself reads them.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn metric_lines(app: &TestApp, prefix: &str) -> Vec<String> {
    let mut lines: Vec<String> = app
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(prefix) && !l.ends_with(" 0"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_successful_notification_counts_exactly() {
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    assert_eq!(
        app.post_alerts(fixture("firing-diskfull.json")).await.0,
        200
    );
    assert_eq!(
        app.post_alerts(fixture("firing-diskfull.json")).await.0,
        200
    );

    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_sms_"),
        vec![
            r#"alertmanager_sipgate_sms_segments_total{route="critical"} 2"#,
            r#"alertmanager_sipgate_sms_sent_total{recipient="alice",route="critical"} 1"#,
            r#"alertmanager_sipgate_sms_sent_total{recipient="bob",route="critical"} 1"#,
            r#"alertmanager_sipgate_sms_suppressed_total{reason="duplicate",route="critical"} 2"#,
        ]
    );
    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_alerts_received_total"),
        vec![r#"alertmanager_sipgate_alerts_received_total{status="firing"} 2"#]
    );
    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_requests_total"),
        vec![r#"alertmanager_sipgate_requests_total{code="200",endpoint="/alerts"} 2"#]
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_sipgate_request_duration_seconds_count 2\n")
    );
}

#[tokio::test]
async fn every_failure_class_counts_under_its_reason() {
    let slow = ResponseTemplate::new(204).set_delay(Duration::from_millis(1500));
    for (template, reason) in [
        (ResponseTemplate::new(401), "auth"),
        (ResponseTemplate::new(402), "payment"),
        (ResponseTemplate::new(403), "forbidden"),
        (ResponseTemplate::new(400), "client_error"),
        (redirect_to_login(), "redirect"),
        (ResponseTemplate::new(500), "server_error"),
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "60"),
            "rate_limited",
        ),
        (slow, "timeout"),
    ] {
        let fake = failing_then_ok(0, 100, Some(template)).await;
        let app = TestApp::start(&fault_config(&fake.uri())).await;

        assert_eq!(
            app.post_alerts(fixture("firing-highlatency.json")).await.0,
            502
        );

        assert_eq!(
            metric_lines(&app, "alertmanager_sipgate_sms_failed_total"),
            vec![format!(
                r#"alertmanager_sipgate_sms_failed_total{{reason="{reason}",route="warnings"}} 1"#
            )],
        );
        assert_eq!(
            metric_lines(&app, "alertmanager_sipgate_requests_total"),
            vec![r#"alertmanager_sipgate_requests_total{code="502",endpoint="/alerts"} 1"#]
        );
    }

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::start(&fault_config(&url)).await;
    assert_eq!(
        app.post_alerts(fixture("firing-highlatency.json")).await.0,
        502
    );
    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_sms_failed_total"),
        vec![r#"alertmanager_sipgate_sms_failed_total{reason="network",route="warnings"} 1"#]
    );
}

#[tokio::test]
async fn alerts_without_route_and_bad_requests_count_too() {
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let info = r#"{"status":"firing","alerts":[{"status":"firing","labels":{"severity":"info"}},{"status":"resolved","labels":{"severity":"info"}}]}"#;
    assert_eq!(app.post_alerts(info).await.0, 200);
    assert_eq!(app.post_alerts("{").await.0, 400);
    assert_eq!(app.get("/nope").await.0, 404);

    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_sms_"),
        vec![r#"alertmanager_sipgate_sms_suppressed_total{reason="no_route",route=""} 2"#]
    );
    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_alerts_received_total"),
        vec![
            r#"alertmanager_sipgate_alerts_received_total{status="firing"} 1"#,
            r#"alertmanager_sipgate_alerts_received_total{status="resolved"} 1"#,
        ]
    );
    assert_eq!(
        metric_lines(&app, "alertmanager_sipgate_requests_total"),
        vec![
            r#"alertmanager_sipgate_requests_total{code="200",endpoint="/alerts"} 1"#,
            r#"alertmanager_sipgate_requests_total{code="400",endpoint="/alerts"} 1"#,
            r#"alertmanager_sipgate_requests_total{code="404",endpoint="other"} 1"#,
        ]
    );
}

#[tokio::test]
async fn series_exist_at_zero_before_the_first_event() {
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let text = app.metrics.render();
    for line in [
        r#"alertmanager_sipgate_sms_failed_total{reason="auth",route="critical"} 0"#,
        r#"alertmanager_sipgate_sms_sent_total{recipient="bob",route="critical"} 0"#,
        r#"alertmanager_sipgate_sms_suppressed_total{reason="rate_limited",route="warnings"} 0"#,
        r#"alertmanager_sipgate_alerts_received_total{status="resolved"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing");
    }
}

/// A fake Sipgate whose account has the extensions `s0` and `s1`.
async fn sipgate_account(userinfo: ResponseTemplate, extensions: ResponseTemplate) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/authorization/userinfo"))
        .respond_with(userinfo)
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/w0/sms"))
        .respond_with(extensions)
        .mount(&fake)
        .await;
    fake
}

fn userinfo() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"sub": "w0", "domain": "sipgate.de", "masterSipId": "0000000", "locale": "de_DE"}),
    )
}

fn extensions() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"items": [
        {"id": "s0", "alias": "SMS", "callerId": "+4915799912345"},
        {"id": "s1", "alias": "Other", "callerId": "sipgate"}]}))
}

async fn ready_after_check(app: &TestApp) -> (u16, String) {
    eventually(
        Duration::from_secs(10),
        "the credential check ends",
        || async {
            let (code, text) = app.get("/-/ready").await;
            (!text.contains("checking")).then_some((code, text))
        },
    )
    .await
}

fn checked_config(api_url: &str, sms_id: &str) -> String {
    let mut config = TestConfig::faults(api_url);
    config.sipgate.check_credentials = true;
    config.sipgate.sms_id = sms_id.to_string();
    config.yaml()
}

#[tokio::test]
async fn ready_when_sipgate_confirms_token_and_extension() {
    let fake = sipgate_account(userinfo(), extensions()).await;
    let app = TestApp::start(&checked_config(&fake.uri(), "s1")).await;
    assert_eq!(
        ready_after_check(&app).await,
        (200, "OK (sipgate, state: memory)\n".to_string())
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_sipgate_credentials_valid 1\n")
    );
    let auth: Vec<_> = fake
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["authorization"].clone())
        .collect();
    assert_eq!(auth, vec![AUTHORIZATION, AUTHORIZATION]);
}

#[tokio::test]
async fn not_ready_when_sipgate_refuses_the_token() {
    let fake = sipgate_account(ResponseTemplate::new(401), extensions()).await;
    let app = TestApp::start(&checked_config(&fake.uri(), "s0")).await;
    let (code, text) = ready_after_check(&app).await;
    assert_eq!(code, 503);
    assert_eq!(
        text,
        "not ready: Sipgate rejected the credentials: check sipgate.token_id and the token (personal access token, not the account password)\n"
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_sipgate_credentials_valid 0\n")
    );
}

#[tokio::test]
async fn not_ready_when_the_account_lacks_the_extension() {
    let fake = sipgate_account(userinfo(), extensions()).await;
    let app = TestApp::start(&checked_config(&fake.uri(), "s7")).await;
    let (code, text) = ready_after_check(&app).await;
    assert_eq!(code, 503);
    assert_eq!(
        text,
        "not ready: the token's Sipgate account has no SMS extension \"s7\" (sipgate.sms_id); it has: s0, s1\n"
    );
}

#[tokio::test]
async fn a_token_that_may_not_list_extensions_only_warns() {
    let fake = sipgate_account(userinfo(), ResponseTemplate::new(403)).await;
    let app = TestApp::start(&checked_config(&fake.uri(), "s0")).await;
    assert_eq!(
        ready_after_check(&app).await,
        (200, "OK (sipgate, state: memory)\n".to_string())
    );
}

#[tokio::test]
async fn not_ready_when_the_api_url_redirects() {
    let fake = sipgate_account(redirect_to_login(), extensions()).await;
    mount_login_page(&fake).await;
    let app = TestApp::start(&checked_config(&fake.uri(), "s0")).await;
    let (code, text) = ready_after_check(&app).await;
    assert_eq!(code, 503);
    assert_eq!(
        text,
        format!(
            "not ready: {}/v2/authorization/userinfo answered HTTP 302, a redirect to /login: check sipgate.api_url (or SIPGATE_API_URL) and any proxy on the way; Sipgate's API does not redirect\n",
            fake.uri()
        )
    );
    assert_eq!(
        requests_to(&fake, LOGIN_PATH).await,
        0,
        "the redirect is not followed"
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_sipgate_credentials_valid 0\n")
    );
}

#[tokio::test]
async fn not_ready_while_sipgate_cannot_be_asked() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::start(&checked_config(&url, "s0")).await;
    let (code, text) = ready_after_check(&app).await;
    assert_eq!(code, 503);
    assert!(
        text.starts_with(
            "not ready: the Sipgate credentials are not verified yet: cannot reach Sipgate: "
        ),
        "{text}"
    );
}

/// After Sipgate refused an SMS, `/-/ready` says once what is wrong and for how long SMS fail
/// fast, in the words the log uses for it.
#[tokio::test]
async fn during_a_hold_off_ready_says_what_to_fix() {
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(401))
        .start()
        .await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let (status, _) = app.post_alerts(fixture("firing-highlatency.json")).await;
    assert_eq!(status, 502);
    let (code, text) = app.get("/-/ready").await;
    assert_eq!(code, 503);
    let left = text
        .strip_prefix(
            "not ready: Sipgate rejected the credentials: check sipgate.token_id and the token \
             (personal access token, not the account password); SMS fail fast for ",
        )
        .and_then(|rest| rest.strip_suffix("s more (reason auth)\n"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!((1..=60).contains(&left.parse::<u64>().unwrap()), "{text}");
}

/// The real binary with the credential check on, ready on the fake's first answer.
async fn checked_service(fake: &MockServer) -> Service {
    let mut config = TestConfig::faults(&fake.uri());
    config.sipgate.check_credentials = true;
    let service = Service::start(&config.yaml()).await;
    wait_until_ok(
        &format!("{}/-/ready", service.url),
        Duration::from_secs(10),
        "the service",
    )
    .await;
    service
}

#[tokio::test]
async fn a_failed_credential_check_after_a_reload_leaves_the_service_ready_and_is_retried_soon() {
    let fake = FakeSipgate::new().with_credential_check().start().await;
    let service = checked_service(&fake).await;
    assert_eq!(credential_checks(&fake).await, 1);

    credential_check_answers(&fake, Some(1), ResponseTemplate::new(503)).await;
    assert_eq!(service.reload().await.0, 200);
    let answers = std::cell::RefCell::new(Vec::new());
    // The retry comes after 1 s; the next after a failure used to come after 30 s.
    eventually(
        Duration::from_secs(10),
        "the failed check is retried",
        || {
            let (answers, fake, service) = (&answers, &fake, &service);
            async move {
                let answer = service.get("/-/ready").await;
                answers.borrow_mut().push(answer);
                (credential_checks(fake).await == 3).then_some(())
            }
        },
    )
    .await;
    let answers = answers.into_inner();
    assert_eq!(
        service.get("/-/ready").await,
        (200, "OK (sipgate, state: memory)\n".to_string())
    );
    assert!(
        answers.iter().all(|(code, _)| *code == 200),
        "ready throughout: {answers:?}"
    );
    let unknown = format!(
        "OK (sipgate, state: memory; the reloaded credentials are not verified yet: Sipgate \
         answered HTTP 503 to {}/v2/authorization/userinfo; Sipgate accepted them before)\n",
        fake.uri()
    );
    assert!(
        answers.iter().any(|(_, body)| *body == unknown),
        "the answer says why: {answers:?}"
    );
    assert!(
        service.log().contains(
            "the reloaded Sipgate credentials are not verified yet; the last answer stands"
        ),
        "{}",
        service.log()
    );

    // A definite refusal still makes it unready.
    credential_check_answers(&fake, None, ResponseTemplate::new(401)).await;
    assert_eq!(service.reload().await.0, 200);
    let (code, body) = eventually(Duration::from_secs(10), "the refusal counts", || async {
        Some(service.get("/-/ready").await).filter(|(code, _)| *code == 503)
    })
    .await;
    assert_eq!(code, 503);
    assert_eq!(
        body,
        "not ready: Sipgate rejected the credentials: check sipgate.token_id and the token \
         (personal access token, not the account password)\n"
    );
}

#[tokio::test]
#[ignore = "needs promtool (apt-get install prometheus); run with: cargo test -- --include-ignored"]
async fn promtool_finds_nothing_to_complain_about() {
    require("promtool", "prometheus");
    let fake = failing_then_ok(500, 1, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    app.post_alerts(fixture("firing-diskfull.json")).await;
    app.post_alerts(fixture("resolved-highlatency.json")).await;
    let (_, text) = app.get("/metrics").await;

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "needs prometheus (apt-get install prometheus); run with: cargo test -- --include-ignored"]
async fn a_real_prometheus_scrapes_the_service() {
    require("prometheus", "prometheus");
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    assert_eq!(
        app.post_alerts(fixture("firing-diskfull.json")).await.0,
        200
    );

    let target = app.url.trim_start_matches("http://");
    let prometheus = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: alertmanager-sipgate\n    static_configs: [{{targets: ['{target}']}}]\n"
        ),
        &[],
    )
    .await;

    let query = |q: &'static str| {
        let url = format!("{}/api/v1/query", prometheus.url);
        async move {
            let encoded: String = q
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            let r = reqwest::get(format!("{url}?query={encoded}")).await.ok()?;
            let body: serde_json::Value = r.json().await.ok()?;
            body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_string)
        }
    };
    let (up, sent) = eventually(
        Duration::from_secs(30),
        "Prometheus has scraped the service",
        || async {
            let up = query(r#"up{job="alertmanager-sipgate"}"#).await?;
            let sent = query(r#"sum(alertmanager_sipgate_sms_sent_total{job="alertmanager-sipgate",route="critical"})"#).await?;
            (up == "1").then_some((up, sent))
        },
    )
    .await;
    assert_eq!(up, "1", "target up");
    assert_eq!(sent, "2", "SMS to alice and bob, as Prometheus sees them");
}

/// The ways Sipgate (or anything in between) might echo alice's number in an error body.
const ALICE_WRITTEN: [&str; 7] = [
    "+4915228817386",
    "015112345678",
    "+49 151 12345678",
    "0049 15112345678",
    "(0151) 123-45678",
    "0151/12345678",
    "+49.151.12345678",
];

/// What an operator trying the service without a token reads: each SMS, whom it is for and its
/// text, on one line.
#[tokio::test]
async fn dry_run_logs_each_sms_with_its_route_recipient_and_text() {
    let fake = FakeSipgate::new().start().await;
    let config = TestConfig::new(&fake.uri()).yaml();
    let service = Service::start_with_flags(&config, &["--dry-run"]).await;

    let (code, body) = service.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(code, 200);
    assert_eq!(outcomes(&body), ["alice dry_run", "bob dry_run"]);

    let log = eventually(Duration::from_secs(10), "both SMS are logged", || {
        let log = service.log();
        async move { (log.matches("dry-run: SMS not sent").count() == 2).then_some(log) }
    })
    .await;
    let text = r#"text="FIRING DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full""#;
    for recipient in ["alice", "bob"] {
        let line = format!(
            r#"message="dry-run: SMS not sent" route=critical recipient={recipient} {text}"#
        );
        assert!(
            log.lines()
                .any(|l| l.starts_with("ts=") && l.contains(" level=info ") && l.contains(&line)),
            "{line} missing in:\n{log}"
        );
    }
    assert!(!log.contains(ALICE) && !log.contains(BOB), "{log}");
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn numbers_echoed_by_sipgate_never_reach_the_log_in_clear() {
    let echo = format!(
        r#"{{"error":"invalid recipient","tried":["{}"]}}"#,
        ALICE_WRITTEN.join(r#"",""#)
    );
    let fake = FakeSipgate::new()
        .answering(ResponseTemplate::new(400).set_body_string(echo))
        .start()
        .await;
    let service = Service::start(&fault_config(&fake.uri())).await;

    let (code, body) = service
        .post_alerts(fixture("firing-highlatency.json"))
        .await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "client_error");

    let log = eventually(Duration::from_secs(10), "the failure is logged", || {
        let log = service.log();
        async move { log.contains("SMS not delivered").then_some(log) }
    })
    .await;
    assert!(
        log.contains("invalid recipient"),
        "the body is logged:\n{log}"
    );
    assert!(
        log.contains("01********78"),
        "masked, still recognisable:\n{log}"
    );
    for written in ALICE_WRITTEN {
        assert!(!log.contains(written), "{written} in clear:\n{log}");
    }
    for digits in ["12345678", "15112345678", "5112345"] {
        assert!(!log.contains(digits), "{digits} in clear:\n{log}");
    }
}
