//! Senders other than Alertmanager: Healthchecks.io's webhook and Grafana's alerting webhook.

use crate::harness::*;

fn grafana(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/grafana")
        .join(name);
    std::fs::read(path).unwrap()
}

/// The shared config plus a route for Healthchecks.io production checks and one that shows
/// Grafana's own fields.
fn config(api_url: &str, dir: &std::path::Path, server: Option<serde_json::Value>) -> String {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("templates/grafana.hbs"),
        "{{title}} (org {{orgId}}, {{state}}) A={{alerts.0.values.A}} {{alerts.0.silenceURL}}",
    )
    .unwrap();
    let mut config = TestConfig::faults(api_url);
    config.routes.insert(
        0,
        TestRoute::new(
            "checks",
            &["source=\"healthchecks\"", "tags=~\".*prod.*\""],
            &["alice"],
        ),
    );
    config.routes.insert(
        1,
        TestRoute {
            template: Some("grafana".to_string()),
            max_segments: Some(3),
            ..TestRoute::new("grafana", &["grafana_folder=\"Custom\""], &["bob"])
        },
    );
    config.templates = Some(serde_json::json!({"dir": dir.join("templates")}));
    config.server = server;
    config.yaml()
}

async fn start(
    server: Option<serde_json::Value>,
) -> (TestApp, wiremock::MockServer, tempfile::TempDir) {
    let fake = failing_then_ok(204, 0, None).await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(&config(&fake.uri(), dir.path(), server)).await;
    (app, fake, dir)
}

const DOWN: &str = r#"{"source": "healthchecks", "status": "down", "name": "nächtliches \"Backup\"", "slug": "nightly-backup", "code": "5f1c2a7e-0d1b-4a57-9b43-2a6b8c1e9f10", "tags": "prod db", "now": "2024-05-14T08:41:27+00:00", "check": {"name": "nächtliches \"Backup\"", "desc": "pg_dump to S3", "grace": 3600, "n_pings": 42, "status": "down", "next_ping": null}}"#;

#[tokio::test]
async fn healthchecks_down_and_up_with_and_without_content_type() {
    let (app, fake, _dir) = start(None).await;

    // Healthchecks.io adds no Content-Type unless the user configures one.
    let response = app
        .http
        .post(format!("{}/healthchecks", app.url))
        .body(DOWN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let up = replace_once(
        &replace_once(
            DOWN,
            r#""status": "down", "name""#,
            r#""status": "up", "name""#,
        ),
        "08:41:27",
        "09:03:00",
    );
    let response = app
        .http
        .post(format!("{}/healthchecks", app.url))
        .header("Content-Type", "application/json")
        .body(up)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(
        sent_sms(&fake).await,
        vec![
            (
                ALICE.to_string(),
                "FIRING nächtliches \"Backup\" since May 14 08:41 UTC: pg_dump to S3".to_string()
            ),
            (
                ALICE.to_string(),
                "RESOLVED nächtliches \"Backup\" at May 14 09:03 UTC: pg_dump to S3".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn healthchecks_put_and_its_quick_retries_send_once() {
    let (app, fake, _dir) = start(None).await;
    for _ in 0..3 {
        let response = app
            .http
            .put(format!("{}/healthchecks", app.url))
            .body(DOWN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(ALICE.to_string(), 1)].into()
    );
}

#[tokio::test]
async fn healthchecks_routes_by_tags_and_refuses_bad_bodies() {
    let (app, fake, _dir) = start(None).await;
    let staging = replace_once(DOWN, "prod db", "staging");
    let response = app
        .http
        .post(format!("{}/healthchecks", app.url))
        .body(staging)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["unrouted_alerts"],
        1
    );

    // A body written with "$NAME" instead of $NAME_JSON breaks on a name with quotes.
    let broken = r#"{"status": "down", "name": "nightly "backup""}"#;
    let response = app
        .http
        .post(format!("{}/healthchecks", app.url))
        .body(broken)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid payload at"),
        "{answer}"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn grafana_firing_and_resolved_with_null_values_are_routed_and_rendered() {
    let (app, fake, _dir) = start(None).await;
    let (code, body) = app.post_alerts(grafana("firing.json")).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = app.post_alerts(grafana("resolved-null-values.json")).await;
    assert_eq!(code, 200);
    let firing = "FIRING HighCPU web-1 since May 14 08:41 UTC: CPU above 95% on web-1";
    let resolved = "RESOLVED HighCPU web-1 at May 14 08:56 UTC: CPU above 95% on web-1";
    assert_eq!(
        sent_sms(&fake).await,
        vec![
            (ALICE.to_string(), firing.to_string()),
            (ALICE.to_string(), resolved.to_string()),
            (BOB.to_string(), firing.to_string()),
            (BOB.to_string(), resolved.to_string()),
        ]
    );
}

/// Grafana (and a sender that leaves the field out) may give no start time: the zero time
/// `0001-01-01T00:00:00Z`. The SMS then says nothing about since when, and a resolved alert
/// without an end time nothing about when, instead of ending in a bare "since".
#[tokio::test]
async fn alerts_without_start_or_end_time_say_neither_since_nor_at() {
    let (app, fake, _dir) = start(None).await;
    let zero_start = String::from_utf8(grafana("firing.json")).unwrap().replace(
        "\"startsAt\":\"2024-05-14T10:41:27+02:00\"",
        "\"startsAt\":\"0001-01-01T00:00:00Z\"",
    );
    assert!(zero_start.contains("\"startsAt\":\"0001-01-01T00:00:00Z\""));
    let (code, body) = app.post_alerts(zero_start).await;
    assert_eq!(code, 200, "{body}");
    let zero_end = String::from_utf8(grafana("resolved-null-values.json"))
        .unwrap()
        .replace(
            "\"endsAt\":\"2024-05-14T10:56:27+02:00\"",
            "\"endsAt\":\"0001-01-01T00:00:00Z\"",
        );
    assert!(zero_end.contains("\"endsAt\":\"0001-01-01T00:00:00Z\""));
    let (code, body) = app.post_alerts(zero_end).await;
    assert_eq!(code, 200, "{body}");
    // Two alerts, one without a start time (left out of the payload): the list form.
    let mut two: serde_json::Value =
        serde_json::from_slice(&fixture("firing-diskfull.json")).unwrap();
    let mut second = two["alerts"][0].clone();
    second["labels"]["instance"] = "db2:9100".into();
    second["fingerprint"] = "00000000000000d2".into();
    second.as_object_mut().unwrap().remove("startsAt");
    two["alerts"].as_array_mut().unwrap().push(second);
    let (code, body) = app.post_alerts(two.to_string()).await;
    assert_eq!(code, 200, "{body}");
    // A Healthchecks.io body without `now`.
    let (code, body) = app
        .post_healthchecks(r#"{"status": "down", "name": "backup", "tags": "prod", "check": {"desc": "pg_dump to S3"}}"#)
        .await;
    assert_eq!(code, 200, "{body}");

    let firing = "FIRING HighCPU web-1: CPU above 95% on web-1";
    let resolved = "RESOLVED HighCPU web-1: CPU above 95% on web-1";
    let list = "FIRING 2\n\
                DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full\n\
                DiskFull db2:9100: Disk on db1 is 95% full";
    assert_eq!(
        sent_sms(&fake).await,
        vec![
            (ALICE.to_string(), list.to_string()),
            (ALICE.to_string(), firing.to_string()),
            (
                ALICE.to_string(),
                "FIRING backup: pg_dump to S3".to_string()
            ),
            (ALICE.to_string(), resolved.to_string()),
            (BOB.to_string(), list.to_string()),
            (BOB.to_string(), firing.to_string()),
            (BOB.to_string(), resolved.to_string()),
        ]
    );
}

#[tokio::test]
async fn grafana_fields_are_there_for_templates_and_put_works() {
    let (app, fake, _dir) = start(None).await;
    // Every mention of the folder, labels and group labels alike.
    let body = String::from_utf8(grafana("firing.json"))
        .unwrap()
        .replace("\"Infra\"", "\"Custom\"");
    assert_eq!(body.matches("\"Custom\"").count(), 3);
    let response = app
        .http
        .put(format!("{}/alerts", app.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        sent_sms(&fake).await,
        vec![(
            BOB.to_string(),
            "[FIRING:1] HighCPU Infra (web-1 critical) (org 1, alerting) A=97.3 https://grafana.example.org/alerting/silence/new?alertmanager=grafana&matcher=__alert_rule_uid__%3Dcdx1k2&matcher=instance%3Dweb-1&orgId=1".to_string()
        )]
    );
}

fn sign(secret: &str, text: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(text);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn grafana_hmac_signatures_are_checked_when_configured() {
    let server = serde_json::json!({
        "grafana_hmac_secret": "sh4red",
        "grafana_hmac_timestamp_header": "X-Grafana-Alerting-Signature-Timestamp"
    });
    let (app, fake, _dir) = start(Some(server)).await;
    let body = grafana("firing.json");
    let post = |signature: Option<String>, timestamp: &'static str| {
        let mut request = app
            .http
            .post(format!("{}/alerts", app.url))
            .header("X-Grafana-Alerting-Signature-Timestamp", timestamp)
            .body(body.clone());
        if let Some(s) = signature {
            request = request.header("X-Grafana-Alerting-Signature", s);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let signed = |ts: &str| sign("sh4red", &[ts.as_bytes(), b":", &body].concat());

    assert_eq!(post(None, "1700000000").await, 401, "unsigned");
    assert_eq!(
        post(Some(sign("wrong", &body)), "1700000000").await,
        401,
        "wrong secret"
    );
    assert_eq!(
        post(Some(signed("1700000001")), "1700000000").await,
        401,
        "other timestamp"
    );
    assert!(fake.received_requests().await.unwrap().is_empty());
    assert_eq!(
        post(Some(signed("1700000000")), "1700000000").await,
        200,
        "right signature"
    );
    assert_eq!(fake.received_requests().await.unwrap().len(), 2);

    // Alertmanager's notifications are not signed; server.auth is their protection.
    assert_eq!(
        app.post_alerts(fixture("firing-highlatency.json")).await.0,
        200
    );
}
