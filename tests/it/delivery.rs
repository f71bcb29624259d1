//! Delivery guarantees against a misbehaving Sipgate: the caller's status, how many requests reached
//! Sipgate, and that after the caller's retries every recipient got the SMS exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::json;
use tokio::io::AsyncReadExt;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn with_deadline(api_url: &str, deadline: &str) -> String {
    TestConfig::faults(api_url)
        .delivery("response_deadline", deadline)
        .yaml()
}

fn warning() -> Vec<u8> {
    fixture("firing-highlatency.json")
}

fn alice(n: usize) -> std::collections::BTreeMap<String, usize> {
    [(ALICE.to_string(), n)].into()
}

#[tokio::test]
async fn transient_errors_are_retried_within_the_deadline() {
    for status in [500, 502, 503, 429] {
        let fake = failing_then_ok(status, 2, None).await;
        // Two backoffs take at most 0.375 s + 0.75 s: a 3 s deadline always has room for them.
        let app = TestApp::start(&with_deadline(&fake.uri(), "3s")).await;

        let (code, body) = app.post_alerts(warning()).await;

        assert_eq!(code, 200, "Sipgate {status} twice, then 204");
        assert_eq!(body["sms"][0]["outcome"], "sent");
        assert_eq!(
            requests_per_recipient(&fake).await,
            alice(3),
            "Sipgate {status}"
        );
    }
}

#[tokio::test]
async fn a_fault_that_outlasts_the_deadline_is_502_and_the_callers_retry_sends_once() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&fake)
        .await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "server_error");
    let tries = requests_per_recipient(&fake).await[ALICE];
    assert!((2..=6).contains(&tries), "retried within 1s: {tries}");

    fake.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fake)
        .await;
    let (code, _) = app.post_alerts(warning()).await;
    assert_eq!(code, 200);
    assert_eq!(
        requests_per_recipient(&fake).await,
        alice(1),
        "exactly one accepted SMS"
    );
    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 200);
    assert_eq!(
        body["sms"][0],
        json!({"route": "warnings", "recipient": "alice", "outcome": "suppressed", "reason": "duplicate", "segments": 0})
    );
    assert_eq!(
        requests_per_recipient(&fake).await,
        alice(1),
        "the duplicate is not sent"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_when_it_fits() {
    let fake = failing_then_ok(
        429,
        1,
        Some(ResponseTemplate::new(429).insert_header("Retry-After", "1")),
    )
    .await;
    let app = TestApp::start(&with_deadline(&fake.uri(), "3s")).await;

    let started = Instant::now();
    let (code, _) = app.post_alerts(warning()).await;

    assert_eq!(code, 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(requests_per_recipient(&fake).await, alice(2));
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_ends_the_retries() {
    let fake = failing_then_ok(
        429,
        10,
        Some(ResponseTemplate::new(429).insert_header("Retry-After", "60")),
    )
    .await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let (code, body) = app.post_alerts(warning()).await;

    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "rate_limited");
    assert_eq!(
        requests_per_recipient(&fake).await,
        alice(1),
        "no retry that cannot be honoured"
    );
}

#[tokio::test]
async fn account_errors_are_not_retried_and_start_a_hold_off() {
    for (status, reason) in [
        (401, "auth"),
        (402, "payment"),
        (403, "forbidden"),
        (404, "client_error"),
    ] {
        let fake = failing_then_ok(status, 100, None).await;
        let app = TestApp::start(&fault_config(&fake.uri())).await;

        let (code, body) = app.post_alerts(warning()).await;
        assert_eq!(code, 502, "Sipgate {status}");
        assert_eq!(body["sms"][0]["reason"], reason);
        assert_eq!(
            requests_per_recipient(&fake).await,
            alice(1),
            "Sipgate {status}: no retry"
        );

        // Another notification fails fast without a request while the hold-off lasts.
        let (code, body) = app.post_alerts(fixture("firing-diskfull.json")).await;
        assert_eq!(code, 502);
        assert_eq!(body["sms"][0]["reason"], reason);
        assert_eq!(
            fake.received_requests().await.unwrap().len(),
            1,
            "Sipgate {status}: hold-off"
        );
        let (ready, text) = app.get("/-/ready").await;
        assert_eq!(ready, 503);
        assert!(text.contains(reason), "{text}");

        app.state.deliverer.clear_holdoff();
        let (code, _) = app.post_alerts(warning()).await;
        assert_eq!(code, 502);
        assert_eq!(
            fake.received_requests().await.unwrap().len(),
            2,
            "Sipgate {status}: sent again after the hold-off"
        );
    }
}

#[tokio::test]
async fn a_redirect_to_a_login_page_is_a_failed_sms_not_a_sent_one() {
    let fake = FakeSipgate::new().redirecting_to_login().start().await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let (code, body) = app.post_alerts(warning()).await;

    assert_eq!(code, 502, "{body}");
    assert_eq!(
        body,
        json!({"status": "failed", "unrouted_alerts": 0, "sms": [
            {"route": "warnings", "recipient": "alice", "outcome": "failed", "reason": "redirect", "segments": 1}]})
    );
    assert_eq!(requests_per_recipient(&fake).await, alice(1), "no retry");
    assert_eq!(
        requests_to(&fake, LOGIN_PATH).await,
        0,
        "the redirect is not followed"
    );
    let metrics = app.metrics.render();
    assert!(
        metrics.contains(
            "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"warnings\"} 0\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "alertmanager_sipgate_sms_failed_total{reason=\"redirect\",route=\"warnings\"} 1\n"
        ),
        "{metrics}"
    );

    // Every SMS would be redirected the same way: the next one fails fast.
    let (code, body) = app.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "redirect");
    assert_eq!(requests_per_recipient(&fake).await, alice(1), "hold-off");
    let (ready, text) = app.get("/-/ready").await;
    assert_eq!(ready, 503);
    assert!(text.contains("sipgate.api_url"), "{text}");
}

#[tokio::test]
async fn a_rejected_message_fails_alone_without_a_hold_off() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(
            json!({"recipient": ALICE}),
        ))
        .respond_with(ResponseTemplate::new(400))
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fake)
        .await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "client_error");
    assert_eq!(requests_per_recipient(&fake).await, alice(1), "no retry");

    let (code, body) = app.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(code, 502, "alice still fails");
    assert_eq!(
        body["sms"][1],
        json!({"route": "critical", "recipient": "bob", "outcome": "sent", "segments": 1})
    );
    assert_eq!(
        app.get("/-/ready").await.0,
        200,
        "one bad message is no reason to be unready"
    );
}

#[tokio::test]
async fn a_hold_off_also_stops_sms_queued_for_a_request_slot() {
    let fake = failing_then_ok(401, 100, None).await;
    let app = TestApp::start(
        &TestConfig::faults(&fake.uri())
            .delivery("max_concurrency", 1)
            .yaml(),
    )
    .await;

    let (code, body) = app.post_alerts(fixture("firing-diskfull.json")).await;

    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "auth");
    assert_eq!(body["sms"][1]["reason"], "auth");
    assert_eq!(
        fake.received_requests().await.unwrap().len(),
        1,
        "the queued SMS never called Sipgate"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_ends_retries_and_gives_the_rate_limit_slot_back() {
    let huge = ResponseTemplate::new(429).insert_header("Retry-After", "18446744073709551615");
    let fake = failing_then_ok(429, 1, Some(huge)).await;
    let app = TestApp::start(
        &TestConfig::faults(&fake.uri())
            .delivery("rate_limit", json!({"per_recipient": "1/h"}))
            .yaml(),
    )
    .await;

    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "rate_limited");

    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["sms"][0]["outcome"], "sent",
        "the failed SMS did not use up the limit"
    );
    assert_eq!(requests_per_recipient(&fake).await, alice(2));
}

#[tokio::test]
async fn a_slow_send_is_not_abandoned_at_the_deadline_and_not_repeated() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(2500)))
        .mount(&fake)
        .await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let started = Instant::now();
    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 502, "unconfirmed at the deadline");
    assert_eq!(body["sms"][0]["reason"], "timeout");
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "answered by the deadline"
    );

    // Alertmanager retries while the first request is still on the wire: nothing is sent twice.
    let (code, _) = app.post_alerts(warning()).await;
    assert_eq!(code, 502);
    assert_eq!(requests_per_recipient(&fake).await, alice(1));

    // The first request finishes in the background; then a retry is a duplicate.
    eventually(
        Duration::from_secs(10),
        "the slow SMS is accepted",
        || async {
            app.metrics
                .render()
                .contains(
                    "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"warnings\"} 1",
                )
                .then_some(())
        },
    )
    .await;
    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 200, "the slow request succeeded in the background");
    assert_eq!(body["sms"][0]["reason"], "duplicate");
    assert_eq!(requests_per_recipient(&fake).await, alice(1));
    assert!(
        app.metrics.render().contains(
            "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"warnings\"} 1"
        )
    );
}

#[tokio::test]
async fn a_retry_waits_for_a_send_in_flight_that_finishes_in_time() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(600)))
        .mount(&fake)
        .await;
    let app = Arc::new(TestApp::start(&fault_config(&fake.uri())).await);

    let first = tokio::spawn({
        let app = app.clone();
        async move { app.post_alerts(warning()).await }
    });
    // The second comes while the first is on the wire.
    requests_received(&fake, 1).await;
    let (second, body) = app.post_alerts(warning()).await;

    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(second, 200);
    assert_eq!(body["sms"][0]["reason"], "duplicate");
    assert_eq!(requests_per_recipient(&fake).await, alice(1));
}

/// A Sipgate that accepts the connection, reads the request and drops it without an answer.
async fn resetting_sipgate() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            drop(stream);
        }
    });
    (url, connections)
}

#[tokio::test]
async fn connection_resets_and_refusals_are_retried_then_502() {
    let (url, connections) = resetting_sipgate().await;
    let app = TestApp::start(&fault_config(&url)).await;
    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "network");
    assert!(connections.load(Ordering::SeqCst) >= 2, "retried");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::start(&fault_config(&url)).await;
    let (code, body) = app.post_alerts(warning()).await;
    assert_eq!(code, 502);
    assert_eq!(body["sms"][0]["reason"], "network");
}

#[tokio::test]
async fn alertmanager_style_retries_end_with_exactly_one_sms_per_recipient() {
    // 7 failures: more than one response deadline of retries can absorb.
    let fake = failing_then_ok(503, 7, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;

    let statuses = app
        .post_like_alertmanager(&fixture("firing-diskfull.json"), 20)
        .await;

    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert!(
        statuses.len() > 1,
        "needed the caller's retries: {statuses:?}"
    );
    let accepted = fake.received_requests().await.unwrap().len() - 7;
    assert_eq!(accepted, 2, "one accepted SMS each for alice and bob");
    let sent = app.metrics.render();
    assert!(
        sent.contains(
            "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"critical\"} 1"
        )
    );
    assert!(
        sent.contains(
            "alertmanager_sipgate_sms_sent_total{recipient=\"bob\",route=\"critical\"} 1"
        )
    );
}

#[tokio::test]
async fn an_ha_pair_posting_the_same_notification_sends_it_once() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(100)))
        .mount(&fake)
        .await;
    let app = Arc::new(TestApp::start(&fault_config(&fake.uri())).await);

    let peers: Vec<_> = (0..2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.post_alerts(fixture("firing-diskfull.json")).await.0 })
        })
        .collect();
    for peer in peers {
        assert_eq!(peer.await.unwrap(), 200);
    }

    let expected = alice_and_bob(1);
    assert_eq!(requests_per_recipient(&fake).await, expected);
}

#[tokio::test]
async fn a_real_change_in_the_group_is_sent() {
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
        app.post_alerts(fixture("resolved-diskfull.json")).await.0,
        200
    );
    let expected = alice_and_bob(2);
    assert_eq!(
        requests_per_recipient(&fake).await,
        expected,
        "firing once, resolved once"
    );
}

fn storm_notification(i: usize) -> Vec<u8> {
    json!({
        "status": "firing", "groupKey": format!("{{}}:{{alertname=\"Storm{i}\"}}"),
        "alerts": [{"status": "firing", "fingerprint": format!("{i:016x}"),
                    "labels": {"alertname": format!("Storm{i}"), "severity": "warning", "service": "api"},
                    "startsAt": "2026-11-25T09:00:00Z"}]
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_storm_is_held_to_the_rate_limit() {
    let fake = failing_then_ok(204, 0, None).await;
    let app = Arc::new(
        TestApp::start(
            &TestConfig::faults(&fake.uri())
                .delivery("rate_limit", json!({"per_recipient": "10/h"}))
                .yaml(),
        )
        .await,
    );

    let mut statuses = Vec::new();
    for chunk in (0..200).collect::<Vec<_>>().chunks(20) {
        let posts: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let app = app.clone();
                tokio::spawn(async move { app.post_alerts(storm_notification(i)).await })
            })
            .collect();
        for post in posts {
            statuses.push(post.await.unwrap());
        }
    }

    assert!(
        statuses.iter().all(|(code, _)| *code == 200),
        "held back is policy, not failure"
    );
    let suppressed = statuses
        .iter()
        .filter(|(_, body)| body["sms"][0]["reason"] == "rate_limited")
        .count();
    assert_eq!(suppressed, 190);
    assert_eq!(requests_per_recipient(&fake).await, alice(10));
    assert!(app.metrics.render().contains(
        "alertmanager_sipgate_sms_suppressed_total{reason=\"rate_limited\",route=\"warnings\"} 190"
    ));

    // What the next SMS after the window says is a rule of the delivery, tested on the
    // paused clock in delivery::tests::the_rate_limit_holds_back_and_the_next_sms_says_how_many.
}
