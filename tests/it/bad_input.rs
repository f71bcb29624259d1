//! Hostile and broken input: a clear answer for what cannot be used, limits for what is too big,
//! label values that stay data, and a service that answers afterwards.

use crate::harness::*;
use serde_json::json;
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn app() -> (TestApp, MockServer) {
    let fake = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(204))
        .mount(&fake)
        .await;
    (TestApp::with_fake(&fake).await, fake)
}

#[tokio::test]
async fn malformed_json_is_400_naming_the_problem() {
    let (app, fake) = app().await;
    let (status, body) = app
        .post_alerts(fixture("firing-diskfull.json")[..200].to_vec())
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("EOF while parsing"),
        "{body}"
    );

    let (status, body) = app
        .post_alerts(
            r#"{"status":"firing","alerts":[{"status":"firing","labels":{"severity":5}}]}"#,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with(
            "invalid payload at `alerts[0].labels.severity`: invalid type: integer `5`"
        ),
        "{body}"
    );

    let (status, body) = app.post_alerts(r#"{"status":"firing"}"#).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing field `alerts`"),
        "{body}"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn empty_alert_list_is_200_with_nothing_sent() {
    let (app, fake) = app().await;
    let (status, body) = app
        .post_alerts(r#"{"status":"resolved","alerts":[]}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "sms": [], "unrouted_alerts": 0})
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (app, _fake) = app().await;
    let (status, body) = app.post_alerts(vec![b' '; 2 << 20]).await;
    assert_eq!(status, 413);
    assert_eq!(
        body["error"],
        "request body is larger than the limit of 1048576 bytes (server.max_body_size)"
    );
}

#[tokio::test]
async fn wrong_method_and_unknown_path() {
    let (app, _fake) = app().await;
    // Each webhook names the methods it takes.
    for path in ["/alerts", "/healthchecks"] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(response.headers()["allow"], "POST, PUT", "{path}");
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap(),
            json!({"status": "error", "error": "method not allowed"}),
            "{path}"
        );
    }
    let response = app
        .http
        .get(format!("{}/nope", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn service_keeps_answering_after_bad_input() {
    let (app, _fake) = app().await;
    for body in ["", "null", "[]", "{", "\u{0}", "{\"alerts\":null}"] {
        let (status, _) = app.post_alerts(body).await;
        assert_eq!(status, 400, "body {body:?}");
    }
    let (status, _) = app.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(status, 200);
    let health = app
        .http
        .get(format!("{}/-/healthy", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// The shared config with room for big bodies, so that the alert and value limits are reached.
async fn roomy_app() -> (TestApp, MockServer) {
    let fake = failing_then_ok(204, 0, None).await;
    let yaml = TestConfig::new(&fake.uri())
        .delivery("response_deadline", "10s")
        .server(serde_json::json!({"max_body_size": "32MiB"}))
        .yaml();
    (TestApp::start(&yaml).await, fake)
}

fn warning_alert(i: usize, labels: serde_json::Value) -> serde_json::Value {
    let mut l = json!({"alertname": format!("A{i}"), "severity": "warning", "service": "api"});
    if let (Some(l), Some(extra)) = (l.as_object_mut(), labels.as_object()) {
        l.extend(extra.clone());
    }
    json!({"status": "firing", "labels": l, "fingerprint": format!("{i:016x}")})
}

async fn sent_text(fake: &MockServer) -> Vec<String> {
    sent_sms(fake)
        .await
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

#[tokio::test]
async fn a_hundred_thousand_alerts_are_cut_to_the_limit_and_said_so() {
    let (app, fake) = roomy_app().await;
    let alerts: Vec<_> = (0..100_000).map(|i| warning_alert(i, json!({}))).collect();
    let body = json!({"status": "firing", "alerts": alerts}).to_string();

    let (status, _) = app.post_alerts(body).await;

    assert_eq!(status, 200);
    let texts = sent_text(&fake).await;
    assert_eq!(texts.len(), 1);
    let text = &texts[0];
    assert!(text.starts_with("FIRING A0, A1, "), "{text}");
    let shown = text.matches(", ").count() + 1;
    assert!(
        text.ends_with(&format!(" +{} more", 100_000 - shown)),
        "{text}"
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_input_truncated_total{what=\"alerts\"} 99000")
    );
}

#[tokio::test]
async fn megabyte_label_values_are_cut_and_the_sms_still_fits() {
    let (app, fake) = roomy_app().await;
    let huge = "x".repeat(1 << 20);
    let body = json!({"status": "firing", "alerts": [warning_alert(1, json!({"instance": huge}))]});

    let (status, answer) = app.post_alerts(body.to_string()).await;

    assert_eq!(status, 200);
    assert_eq!(answer["sms"][0]["segments"], 1);
    let text = &sent_text(&fake).await[0];
    assert!(
        text.starts_with("FIRING A1@xxxx") && text.ends_with("..."),
        "{text}"
    );
    assert!(
        app.metrics
            .render()
            .contains("alertmanager_sipgate_input_truncated_total{what=\"values\"} 1")
    );
}

#[tokio::test]
async fn template_syntax_newlines_and_nuls_in_labels_are_just_text() {
    let (app, fake) = roomy_app().await;
    let body = json!({"status": "firing", "alerts": [
        warning_alert(1, json!({"alertname": "{{#each x}}boom{{/each}}", "instance": "a\nb\u{0}c}}"}))
    ]});

    let (status, _) = app.post_alerts(body.to_string()).await;

    assert_eq!(status, 200);
    assert_eq!(
        sent_text(&fake).await,
        vec!["FIRING {{#each x}}boom{{/each}}@a\nbc}}".to_string()]
    );
}

#[tokio::test]
async fn control_characters_in_labels_never_reach_sipgate() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::with_fake(&fake).await;

    let payload = with_control_characters(&fixture("firing-diskfull.json"));
    let (status, body) = app.post_alerts(payload).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sms"][0]["segments"], 1);
    let mut bodies: Vec<String> = fake
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.body).unwrap())
        .collect();
    bodies.sort();
    let message =
        r#"FIRING DiskFull db1:9100 since Nov 25 09:05 UTC: Disk[31m on db1 is 95% full\nnow"#;
    assert_eq!(
        bodies,
        [ALICE, BOB].map(|number| format!(
            r#"{{"smsId":"s0","recipient":"{number}","message":"{message}"}}"#
        ))
    );
}

#[tokio::test]
async fn hostile_bodies_get_clear_answers_and_the_service_lives_on() {
    let (app, fake) = app().await;
    let nested = format!(
        r#"{{"status":"firing","alerts":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("truncated JSON", fixture("firing-diskfull.json")[..300].to_vec(), 400),
        ("10 MiB body", vec![b'{'; 10 << 20], 413),
        ("deeply nested JSON", nested.into_bytes(), 400),
        ("invalid UTF-8", b"{\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"a\":\"\xff\xfe\"}}]}".to_vec(), 400),
        ("a number for a label", br#"{"status":"firing","alerts":[{"status":"firing","labels":{"a":1}}]}"#.to_vec(), 400),
        ("an array for the body", b"[]".to_vec(), 400),
    ];
    for (what, body, expected) in cases {
        let response = app
            .http
            .post(format!("{}/alerts", app.url))
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{what}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["status"], "error", "{what}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}"
        );
    }
    // A wrong Content-Type on a good body is fine: Alertmanager's is right, others vary.
    let response = app
        .http
        .post(format!("{}/alerts", app.url))
        .header("Content-Type", "text/plain")
        .body(fixture("firing-diskfull.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fake.received_requests().await.unwrap().len(), 2);
    assert_eq!(app.get("/-/healthy").await.0, 200);
}

#[tokio::test]
async fn a_body_that_trickles_in_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = failing_then_ok(204, 0, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let mut stream = tokio::net::TcpStream::connect(app.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"status\"")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("the server gave up on the slow body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body did not arrive in time"),
        "{answer}"
    );
}
