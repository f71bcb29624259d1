//! The Alertmanager API v2 client: against Debian's real Alertmanager (alerts with hostile label
//! values, silences made, extended and expired, a dead member skipped), and against a loopback
//! server for what a real one does not do on demand (credentials, exact bodies, a 500, a 400, a
//! stall, an endless answer).

use std::collections::BTreeMap;
use std::time::Duration;

use alertmanager_sipgate::alertmanager::{
    AlertState, Alertmanager as Client, AlertmanagerError, FailureCause, Silence,
};
use alertmanager_sipgate::config::{AlertmanagerAuth, AlertmanagerConfig, AlertmanagerTls};
use chrono::{DateTime, Utc};
use wiremock::matchers::{body_string, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

/// A label value with everything a matcher has to escape, and more.
const HOSTILE: &str = "db\"1\\x\nü 🚨,}{=~'`";

fn client_config(urls: &[&str]) -> AlertmanagerConfig {
    AlertmanagerConfig {
        urls: urls.iter().map(ToString::to_string).collect(),
        timeout: Duration::from_secs(10),
        resolved_after: Duration::from_secs(180),
        auth: None,
        tls: AlertmanagerTls::default(),
    }
}

fn client(urls: &[&str]) -> Client {
    Client::new(&client_config(urls)).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn matchers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    labels(pairs).into_iter().collect()
}

fn hostile_alert() -> BTreeMap<String, String> {
    labels(&[("alertname", "DiskFull"), ("instance", HOSTILE)])
}

fn plain_alert() -> BTreeMap<String, String> {
    labels(&[("alertname", "DiskFull"), ("instance", "db2")])
}

/// Three alerts as Prometheus posts them: two firing, one of them with the hostile value, and
/// one that resolved a minute ago.
async fn post_three_alerts(am: &Alertmanager) {
    let now = Utc::now();
    am.post_alerts(serde_json::json!([
        {"labels": hostile_alert(), "startsAt": now - chrono::Duration::minutes(5)},
        {"labels": plain_alert(), "startsAt": now - chrono::Duration::minutes(5)},
        {"labels": {"alertname": "DiskFull", "instance": "db3"},
         "startsAt": now - chrono::Duration::minutes(5), "endsAt": now - chrono::Duration::minutes(1)},
    ]))
    .await;
}

fn sorted_labels(alerts: &[AlertState]) -> Vec<BTreeMap<String, String>> {
    let mut labels: Vec<_> = alerts.iter().map(|a| a.labels.clone()).collect();
    labels.sort();
    labels
}

async fn start_alertmanager(dir: &tempfile::TempDir) -> Alertmanager {
    let config = silent_alertmanager_config(dir.path());
    Alertmanager::start(&config, &dir.path().join("data")).await
}

/// What Alertmanager itself lists for the silence `id`.
async fn silence_as_listed(am: &Alertmanager, id: &str) -> serde_json::Value {
    let listed: serde_json::Value = reqwest::get(format!("{}/api/v2/silence/{id}", am.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    listed
}

fn silence(id: Option<String>, ends_at: DateTime<Utc>) -> Silence {
    Silence {
        id,
        matchers: matchers(&[("alertname", "DiskFull"), ("instance", HOSTILE)]),
        starts_at: Utc::now() - chrono::Duration::minutes(1),
        ends_at,
        created_by: "alertmanager-sipgate".to_string(),
        comment: "Acknowledged by alice via SMS ✓".to_string(),
    }
}

#[tokio::test]
#[ignore = "needs prometheus-alertmanager (apt-get install prometheus-alertmanager); run with: cargo test -- --include-ignored"]
async fn alerts_finds_exactly_the_firing_alerts_that_match_hostile_label_values_too() {
    let dir = tempfile::tempdir().unwrap();
    let am = start_alertmanager(&dir).await;
    post_three_alerts(&am).await;
    let client = client(&[&am.url]);

    let hostile = client
        .alerts(&matchers(&[
            ("alertname", "DiskFull"),
            ("instance", HOSTILE),
        ]))
        .await
        .unwrap();
    assert_eq!(sorted_labels(&hostile), [hostile_alert()]);
    assert_eq!(hostile[0].fingerprint.len(), 16, "{hostile:?}");
    assert!(hostile[0].silenced_by.is_empty() && hostile[0].inhibited_by.is_empty());
    assert!(
        ["active", "unprocessed"].contains(&hostile[0].state.as_str()),
        "{hostile:?}"
    );

    let all = client
        .alerts(&matchers(&[("alertname", "DiskFull")]))
        .await
        .unwrap();
    assert_eq!(sorted_labels(&all), [hostile_alert(), plain_alert()]);
    // A prefix of the hostile value is another value.
    let none = client
        .alerts(&matchers(&[("instance", "db\"1")]))
        .await
        .unwrap();
    assert_eq!(none, []);
}

#[tokio::test]
#[ignore = "needs prometheus-alertmanager (apt-get install prometheus-alertmanager); run with: cargo test -- --include-ignored"]
async fn a_silence_is_created_extended_and_expired() {
    let dir = tempfile::tempdir().unwrap();
    let am = start_alertmanager(&dir).await;
    post_three_alerts(&am).await;
    let client = client(&[&am.url]);
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);

    let mut acknowledged = silence(None, in_an_hour);
    let id = client.silence(&acknowledged).await.unwrap();
    let listed = silence_as_listed(&am, &id).await;
    assert_eq!(
        listed["matchers"],
        serde_json::json!([
            {"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true},
            {"name": "instance", "value": HOSTILE, "isRegex": false, "isEqual": true},
        ])
    );
    assert_eq!(listed["createdBy"], "alertmanager-sipgate");
    assert_eq!(listed["comment"], "Acknowledged by alice via SMS ✓");
    assert_eq!(listed["status"]["state"], "active");

    // The silenced alert says so; the other one is not silenced.
    let alerts = client
        .alerts(&matchers(&[("alertname", "DiskFull")]))
        .await
        .unwrap();
    let by_instance: BTreeMap<&str, &AlertState> = alerts
        .iter()
        .map(|a| (a.labels["instance"].as_str(), a))
        .collect();
    assert_eq!(by_instance[HOSTILE].silenced_by, std::slice::from_ref(&id));
    assert_eq!(by_instance[HOSTILE].state, "suppressed");
    assert_eq!(by_instance["db2"].silenced_by, Vec::<String>::new());

    let active = client.active_silences().await.unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].id, id);
    assert_eq!(active[0].created_by, "alertmanager-sipgate");
    assert_eq!(active[0].comment, "Acknowledged by alice via SMS ✓");
    assert_eq!(active[0].ends_at.timestamp(), in_an_hour.timestamp());

    // Extended: the same silence, from the same start, ending later.
    let in_two_hours = in_an_hour + chrono::Duration::hours(1);
    acknowledged.id = Some(id.clone());
    acknowledged.ends_at = in_two_hours;
    let extended = client.silence(&acknowledged).await.unwrap();
    assert_eq!(extended, id);
    let listed = silence_as_listed(&am, &id).await;
    let ends_at: DateTime<Utc> = listed["endsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(ends_at.timestamp(), in_two_hours.timestamp());

    client.expire_silence(&id).await.unwrap();
    assert_eq!(
        silence_as_listed(&am, &id).await["status"]["state"],
        "expired"
    );
    assert_eq!(client.active_silences().await.unwrap(), []);
    let alerts = client
        .alerts(&matchers(&[("instance", HOSTILE)]))
        .await
        .unwrap();
    assert_eq!(alerts[0].silenced_by, Vec::<String>::new());

    // Expiring again, or an id Alertmanager never had, is done already.
    client.expire_silence(&id).await.unwrap();
    client
        .expire_silence("00000000-0000-4000-8000-000000000000")
        .await
        .unwrap();

    // Renewing an expired silence makes a new one; an unknown id too.
    let renewed = client
        .silence(&silence(Some(id.clone()), in_an_hour))
        .await
        .unwrap();
    assert_ne!(renewed, id);
    assert_eq!(
        silence_as_listed(&am, &renewed).await["status"]["state"],
        "active"
    );
    let unknown = client
        .silence(&silence(
            Some("00000000-0000-4000-8000-000000000000".to_string()),
            in_an_hour,
        ))
        .await
        .unwrap();
    assert_ne!(unknown, "00000000-0000-4000-8000-000000000000");
    assert_eq!(
        silence_as_listed(&am, &unknown).await["status"]["state"],
        "active"
    );
}

#[tokio::test]
#[ignore = "needs prometheus-alertmanager (apt-get install prometheus-alertmanager); run with: cargo test -- --include-ignored"]
async fn a_dead_first_url_is_skipped_for_the_second() {
    let dir = tempfile::tempdir().unwrap();
    let am = start_alertmanager(&dir).await;
    post_three_alerts(&am).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let client = client(&[&dead, &am.url]);

    let alerts = client
        .alerts(&matchers(&[("instance", "db2")]))
        .await
        .unwrap();
    assert_eq!(sorted_labels(&alerts), [plain_alert()]);
    let id = client
        .silence(&silence(None, Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(
        silence_as_listed(&am, &id).await["status"]["state"],
        "active"
    );
}

/// `Basic base64("sms:pa55-w0rd")`, computed outside the code.
const BASIC_SMS: &str = "Basic c21zOnBhNTUtdzByZA==";

/// The silence posted in the loopback tests, and its body to the byte.
fn fixed_silence(id: Option<&str>) -> Silence {
    Silence {
        id: id.map(ToString::to_string),
        matchers: matchers(&[("alertname", "DiskFull"), ("instance", "db\"1")]),
        starts_at: at("2026-01-01T10:00:00Z"),
        ends_at: at("2026-01-01T11:00:00Z"),
        created_by: "alertmanager-sipgate".to_string(),
        comment: "Acknowledged by alice via SMS".to_string(),
    }
}

const FIXED_SILENCE_BODY: &str = r#"{"matchers":[{"name":"alertname","value":"DiskFull","isRegex":false,"isEqual":true},{"name":"instance","value":"db\"1","isRegex":false,"isEqual":true}],"startsAt":"2026-01-01T10:00:00Z","endsAt":"2026-01-01T11:00:00Z","createdBy":"alertmanager-sipgate","comment":"Acknowledged by alice via SMS"}"#;

fn silence_id(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({ "silenceID": id }))
}

fn host_of(server: &MockServer) -> String {
    server.uri().trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn a_silence_is_posted_with_the_credentials_and_exactly_this_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/prefix/api/v2/silences"))
        .and(header("authorization", BASIC_SMS))
        .and(header("content-type", "application/json"))
        .and(body_string(FIXED_SILENCE_BODY))
        .respond_with(silence_id("6f1c3e9a"))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = client_config(&[&format!("{}/prefix", server.uri())]);
    config.auth = Some(AlertmanagerAuth::Basic {
        username: "sms".to_string(),
        password: "pa55-w0rd".to_string().into(),
    });
    let client = Client::new(&config).unwrap();
    assert_eq!(
        client.silence(&fixed_silence(None)).await.unwrap(),
        "6f1c3e9a"
    );
    assert!(!format!("{client:?}").contains("pa55"), "{client:?}");

    // With a bearer token. An update names its id first and keeps the start Alertmanager
    // recorded: it had moved the start in the past to when it made the silence.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/silence/6f1c3e9a"))
        .and(header("authorization", "Bearer t0k3n"))
        .respond_with(recorded_silence("6f1c3e9a", "active"))
        .expect(1)
        .mount(&server)
        .await;
    let update = FIXED_SILENCE_BODY
        .replacen('{', r#"{"id":"6f1c3e9a","#, 1)
        .replace("2026-01-01T10:00:00Z", "2026-01-01T10:00:07.250Z");
    Mock::given(method("POST"))
        .and(path("/api/v2/silences"))
        .and(header("authorization", "Bearer t0k3n"))
        .and(body_string(update))
        .respond_with(silence_id("6f1c3e9a"))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = client_config(&[&server.uri()]);
    config.auth = Some(AlertmanagerAuth::Authorization {
        kind: "Bearer".to_string(),
        credentials: "t0k3n".to_string().into(),
    });
    let client = Client::new(&config).unwrap();
    assert_eq!(
        client
            .silence(&fixed_silence(Some("6f1c3e9a")))
            .await
            .unwrap(),
        "6f1c3e9a"
    );
}

#[tokio::test]
async fn the_alerts_filter_is_escaped_and_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/alerts"))
        .and(query_param("filter", r#"instance="db\"1\\x\nü""#))
        .and(query_param("active", "true"))
        .and(query_param("silenced", "true"))
        .and(query_param("inhibited", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"fingerprint": "a1", "labels": {"instance": "db\"1\\x\nü"}, "startsAt": "2026-01-01T10:00:00Z",
             "endsAt": "2026-01-01T12:00:00Z", "updatedAt": "2026-01-01T10:00:00Z", "receivers": [],
             "annotations": {}, "status": {"state": "suppressed", "silencedBy": ["s1"], "inhibitedBy": []}},
            {"fingerprint": "b2", "labels": {"instance": "db\"1\\x\nü"}, "startsAt": "2026-01-01T09:00:00Z",
             "endsAt": "2026-01-01T10:30:00Z", "updatedAt": "2026-01-01T10:00:00Z", "receivers": [],
             "annotations": {}, "status": {"state": "active", "silencedBy": [], "inhibitedBy": ["a1"]}},
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let alerts = client(&[&server.uri()])
        .alerts_at(
            &matchers(&[("instance", "db\"1\\x\nü")]),
            at("2026-01-01T11:00:00Z"),
        )
        .await
        .unwrap();
    // b2 ended before `now`: it resolved.
    assert_eq!(
        alerts,
        [AlertState {
            fingerprint: "a1".to_string(),
            labels: labels(&[("instance", "db\"1\\x\nü")]),
            silenced_by: vec!["s1".to_string()],
            inhibited_by: vec![],
            state: "suppressed".to_string(),
        }]
    );
    let received = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        received.url.query(),
        Some(
            "filter=instance%3D%22db%5C%221%5C%5Cx%5Cn%C3%BC%22&active=true&silenced=true&inhibited=true"
        )
    );
}

#[tokio::test]
async fn a_server_error_moves_on_to_the_next_url_and_a_client_error_is_final() {
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&failing)
        .await;
    let answering = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string(FIXED_SILENCE_BODY))
        .respond_with(silence_id("s-2"))
        .up_to_n_times(2)
        .mount(&answering)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("\"bad matcher db\\\"1\""))
        .mount(&answering)
        .await;
    let client = client(&[&failing.uri(), &answering.uri()]);

    assert_eq!(client.silence(&fixed_silence(None)).await.unwrap(), "s-2");
    // The next request goes to the one that answered last first.
    assert_eq!(client.silence(&fixed_silence(None)).await.unwrap(), "s-2");
    assert_eq!(failing.received_requests().await.unwrap().len(), 1);

    let refused = client.silence(&fixed_silence(None)).await.unwrap_err();
    match &refused {
        AlertmanagerError::Refused { host, status, .. } => {
            assert_eq!(
                (host.as_str(), *status),
                (host_of(&answering).as_str(), 400)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused.to_string(),
        format!(
            "Alertmanager at {} refused POST /api/v2/silences: HTTP 400",
            host_of(&answering)
        )
    );
    assert!(!refused.is_temporary());
    assert_eq!(
        failing.received_requests().await.unwrap().len(),
        1,
        "a 400 is final"
    );

    // Both failing: each is named with what it did.
    let dead = free_port();
    let unavailable = self::client(&[&failing.uri(), &format!("http://127.0.0.1:{dead}")])
        .silence(&fixed_silence(None))
        .await
        .unwrap_err();
    match &unavailable {
        AlertmanagerError::Unavailable { failures } => {
            assert_eq!(failures.len(), 2, "{failures:?}");
            assert_eq!(failures[0].host, host_of(&failing));
            assert_eq!(failures[0].cause, FailureCause::Status(500));
            assert_eq!(failures[1].host, format!("127.0.0.1:{dead}"));
            assert!(matches!(failures[1].cause, FailureCause::Unreachable(_)));
        }
        other => panic!("{other:?}"),
    }
    assert!(unavailable.is_temporary());
    let message = unavailable.to_string();
    assert!(
        message.starts_with(&format!(
            "no Alertmanager answered: {}: HTTP 500; 127.0.0.1:{dead}: ",
            host_of(&failing)
        )),
        "{message}"
    );
    assert!(
        !message.contains("db\\\"1") && !message.contains("db\"1"),
        "{message}"
    );
}

/// `GET /api/v2/silence/{id}` as Alertmanager answers it, started when it was made.
fn recorded_silence(id: &str, state: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "id": id, "status": {"state": state}, "updatedAt": "2026-01-01T10:00:07.250Z",
        "comment": "Acknowledged by alice via SMS", "createdBy": "alertmanager-sipgate",
        "startsAt": "2026-01-01T10:00:07.250Z", "endsAt": "2026-01-01T11:00:00Z",
        "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true}],
    }))
}

#[tokio::test]
async fn an_update_of_a_silence_that_expired_or_was_forgotten_makes_a_new_one() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/silence/expired"))
        .respond_with(recorded_silence("expired", "expired"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/silence/forgotten"))
        .respond_with(ResponseTemplate::new(404).set_body_string("\"silence not found\""))
        .mount(&server)
        .await;
    // Known when asked, gone when posted to (another member, or expired and forgotten between).
    Mock::given(method("GET"))
        .and(path("/api/v2/silence/vanishing"))
        .respond_with(recorded_silence("vanishing", "active"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string_contains(r#""id":"vanishing""#))
        .respond_with(ResponseTemplate::new(404).set_body_string("\"silence not found\""))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_string(FIXED_SILENCE_BODY))
        .respond_with(silence_id("fresh"))
        .expect(3)
        .mount(&server)
        .await;
    let client = client(&[&server.uri()]);
    for id in ["expired", "forgotten", "vanishing"] {
        let answer = client.silence(&fixed_silence(Some(id))).await.unwrap();
        assert_eq!(answer, "fresh", "{id}");
    }
}

#[tokio::test]
async fn a_stalling_alertmanager_is_given_up_after_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([]))
                .set_delay(Duration::from_secs(60)),
        )
        .mount(&server)
        .await;
    let mut config = client_config(&[&server.uri()]);
    config.timeout = Duration::from_millis(200);
    let error = Client::new(&config)
        .unwrap()
        .active_silences()
        .await
        .unwrap_err();
    match &error {
        AlertmanagerError::Unavailable { failures } => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].cause, FailureCause::Timeout);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            "no Alertmanager answered: {}: no answer within alertmanager.timeout",
            host_of(&server)
        )
    );
}

#[tokio::test]
async fn an_answer_larger_than_the_limit_is_refused() {
    let server = MockServer::start().await;
    let huge = format!("[{}]", "\" \",".repeat(6 << 20));
    Mock::given(method("GET"))
        .and(path("/api/v2/silences"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge, "application/json"))
        .mount(&server)
        .await;
    let error = client(&[&server.uri()])
        .active_silences()
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "Alertmanager at {} answered GET /api/v2/silences with more than 16777216 bytes",
            host_of(&server)
        )
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_api_is_an_error_that_quotes_none_of_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/alerts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"fingerprint": "a1", "labels": {"instance": "db-secret-value"}, "status": {"state": 7}}
        ])))
        .mount(&server)
        .await;
    let error = client(&[&server.uri()])
        .alerts(&matchers(&[("instance", "db-secret-value")]))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "Alertmanager at {} answered GET /api/v2/alerts with what is not its API v2: ",
            host_of(&server)
        )),
        "{message}"
    );
    assert!(!message.contains("db-secret-value"), "{message}");
}
