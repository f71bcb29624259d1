//! Escalation through the HTTP side of one in-process replica: the acknowledgement page and its
//! form, and what hostile requests to `/a/` get. Time is the app's manual clock and the job's
//! ticks at chosen instants.

use serde_json::json;

use alertmanager_sipgate::clock::Clock;

use crate::harness::*;

/// alice first, bob after 10 minutes; incidents behind `server.auth` as the other APIs.
fn escalating(api_url: &str) -> String {
    let mut config = TestConfig::new(api_url);
    config.web = Some(json!({"external_url": "https://pager.example.com"}));
    config.escalation_policies.insert(
        "critical".to_string(),
        json!({"steps": [{"to": ["alice"], "wait": "10m"}, {"to": ["bob"]}]}),
    );
    let route = config.route("critical");
    route.to.clear();
    route.escalation = Some("critical".to_string());
    config.server = Some(json!({"auth": {"basic": {"username": "am", "password": "pw"}}}));
    config.yaml()
}

/// A DiskFull on db1 with a hostile summary, posted with the test's basic auth.
async fn fire(app: &TestApp, status: &str) -> (u16, serde_json::Value) {
    let body = json!({
        "version": "4", "status": status, "receiver": "sms",
        "groupKey": "{}:{alertname=\"DiskFull\"}", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"}, "commonAnnotations": {}, "externalURL": "",
        "truncatedAlerts": 0,
        "alerts": [{"status": status, "fingerprint": "f1", "startsAt": "2026-11-25T09:55:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
            "labels": {"alertname": "DiskFull", "instance": "<script>alert(1)</script>", "severity": "critical"},
            "annotations": {"summary": "\"quoted\" & javascript:alert(2)"}}]
    });
    let response = app
        .http
        .post(format!("{}/alerts", app.url))
        .basic_auth("am", Some("pw"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn code_of(text: &str) -> String {
    text.rsplit("/a/").next().unwrap().to_string()
}

/// The CSRF token in a page's form.
fn token_in(page: &str) -> String {
    let start = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[start..].split('"').next().unwrap().to_string()
}

async fn post_form(app: &TestApp, code: &str, form: &str) -> (u16, String) {
    let response = app
        .http
        .post(format!("{}/a/{code}", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_page_shows_without_acting_and_only_its_form_acknowledges() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&escalating(&fake.uri())).await;
    let (status, _) = fire(&app, "firing").await;
    assert_eq!(status, 200);
    let sent = sent_sms(&fake).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, ALICE);
    let code = code_of(&sent[0].1);

    // GET shows, with the headers of a page whose URL is a credential, and acts on nothing.
    let response = app
        .http
        .get(format!("{}/a/{code}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let page = response.text().await.unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("&quot;quoted&quot; &amp; javascript:alert(2)"));
    assert!(!page.contains("<script>"));
    assert!(!page.contains(ALICE) && !page.contains("15228817386"));
    assert!(page.contains("You are alice."));

    // Without the token, or with another's, nothing happens.
    assert_eq!(post_form(&app, &code, "action=ack").await.0, 403);
    assert_eq!(post_form(&app, &code, "action=ack&csrf=AAAA").await.0, 403);
    let token = token_in(&page);
    assert_eq!(
        post_form(&app, &code, &format!("action=dance&csrf={token}"))
            .await
            .0,
        400
    );
    let (status, done) = post_form(&app, &code, &format!("action=ack&csrf={token}")).await;
    assert_eq!(status, 200);
    assert!(
        done.contains("Acknowledged. Nobody else will be paged."),
        "{done}"
    );
    assert!(done.contains("Acknowledged by alice"));

    // bob's step never comes.
    let later = app.clock.datetime() + chrono::Duration::minutes(30);
    app.tick("escalation", later).await;
    assert_eq!(sent_sms(&fake).await.len(), 1);
    let metrics = app.metrics.render();
    assert!(metrics.contains("alertmanager_sipgate_acknowledgements_total{via=\"link\"} 1"));
}

#[tokio::test]
async fn hostile_requests_to_the_acknowledgement_pages_acknowledge_nothing() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&escalating(&fake.uri())).await;
    assert_eq!(fire(&app, "firing").await.0, 200);
    let code = code_of(&sent_sms(&fake).await[0].1);
    let forged = format!("{}{}", &code[..12], "B".repeat(12));

    // Unknown, malformed and over-long codes: 404, each counted as a guess.
    for path in [
        format!("/a/{forged}"),
        "/a/x".to_string(),
        format!("/a/{}", "A".repeat(5000)),
    ] {
        assert_eq!(
            app.get(&path).await.0,
            404,
            "{}",
            &path[..20.min(path.len())]
        );
    }
    assert_eq!(app.get("/a/").await.0, 404);
    let put = app
        .http
        .put(format!("{}/a/{code}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST");
    // A form too large to be one.
    let huge = format!("csrf={}", "A".repeat(10_000));
    assert_eq!(post_form(&app, &code, &huge).await.0, 413);

    // 1,000 guesses from one address: after the first few, 429 with Retry-After, also for the
    // right code, so that guessing teaches nothing.
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..1000 {
        let guess = format!("{}{:012}", &code[..12], i);
        let status = post_form(&app, &guess, "action=ack&csrf=x").await.0;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses.get(&404).copied().unwrap_or(0) + 3,
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses[&429], 1000 - 7);
    let response = app
        .http
        .get(format!("{}/a/{code}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");

    // Nothing was acknowledged: bob is paged at his time.
    let later = app.clock.datetime() + chrono::Duration::minutes(10);
    app.tick("escalation", later).await;
    let sent = sent_sms(&fake).await;
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .any(|(to, text)| to == BOB && text.contains("Not acknowledged by alice for 10m"))
    );
}

#[tokio::test]
async fn open_incidents_are_listed_behind_auth_with_names_only() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&escalating(&fake.uri())).await;
    assert_eq!(fire(&app, "firing").await.0, 200);
    assert_eq!(app.get("/api/v1/incidents").await.0, 401);
    let listed: serde_json::Value = app
        .http
        .get(format!("{}/api/v1/incidents", app.url))
        .basic_auth("am", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incidents = listed["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["route"], "critical");
    assert_eq!(incidents[0]["policy"], "critical");
    assert_eq!(incidents[0]["next_step"], 2);
    assert_eq!(incidents[0]["paged"][0]["people"], json!(["alice"]));
    assert!(!listed.to_string().contains("15228817386"));
    // Resolved: the incident ends and alice gets the resolved SMS.
    assert_eq!(fire(&app, "resolved").await.0, 200);
    let sent = sent_sms(&fake).await;
    assert_eq!(sent.len(), 2);
    assert!(sent[1].1.starts_with("RESOLVED DiskFull"), "{}", sent[1].1);
    let listed: serde_json::Value = app
        .http
        .get(format!("{}/api/v1/incidents", app.url))
        .basic_auth("am", Some("pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["incidents"], json!([]));
}
