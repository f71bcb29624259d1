//! Input the service must refuse with a clear answer, without sending anything or falling over.

mod common;

use common::*;
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
    let response = app
        .http
        .get(format!("{}/alerts", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "error", "error": "method not allowed"})
    );
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
