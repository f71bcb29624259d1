//! The web pages against the real server: the status page `/` behind `server.auth`, the
//! acknowledgement pages `/a/<code>` and the stylesheet; their status codes and headers, what
//! they say, and label values that must stay text. Time is the app's manual clock.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

/// The one Content-Security-Policy of every HTML answer: no script at all, styles only from the
/// service's own stylesheet.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// Wednesday 25 November 2026, 10:00 UTC: alice's week in `primary`, from Monday 23 November to
/// Monday 30 November, 09:00 in Berlin.
const NOW: &str = "2026-11-25T10:00:00Z";

/// alice and bob take turns by the week in `primary` (Berlin, Mondays 09:00); the critical route
/// escalates to `primary` first and to bob 10 minutes later; everything behind `server.auth`.
fn paging(api_url: &str) -> TestConfig {
    let mut config = TestConfig::new(api_url).with_basic_auth();
    config.web = Some(json!({"external_url": "https://pager.example.com"}));
    config.schedules.insert(
        "primary".into(),
        json!({
            "time_zone": "Europe/Berlin",
            "rotation": {"members": ["alice", "bob"], "shift": "1w", "start": "2026-01-05T09:00"},
        }),
    );
    config.escalation_policies.insert(
        "critical".into(),
        json!({"steps": [{"to": ["primary"], "wait": "10m"}, {"to": ["bob"]}]}),
    );
    let route = config.route("critical");
    route.to.clear();
    route.escalation = Some("critical".into());
    config
}

/// The service on `paging` at `NOW`, with the DiskFull alert paged to alice; her link's code.
async fn paged(fake: &wiremock::MockServer, body: Vec<u8>) -> (TestApp, String) {
    let app = TestApp::start(&paging(&fake.uri()).yaml()).await;
    app.clock.set(at(NOW));
    let (status, answer) = app.post_alerts_authorized(body).await;
    assert_eq!(
        (status, outcomes(&answer)),
        (200, vec!["alice sent".into()])
    );
    let sent = sent_sms(fake).await;
    let code = split_at_ack_code(&sent[0].1).1.to_string();
    (app, code)
}

/// The headers every HTML answer carries.
fn assert_html_headers(response: &reqwest::Response) {
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-security-policy"], CSP);
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
}

/// The phone numbers of the test config, whole and without their `+49`.
const NUMBERS: [&str; 4] = [ALICE, BOB, "15228817386", "15254599371"];

#[tokio::test]
async fn the_status_page_is_behind_the_credentials_of_the_api_and_only_read() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&paging(&fake.uri()).yaml()).await;

    // Without credentials, or with wrong ones: the API's 401, so that a browser asks for them.
    let api = app.get("/api/v1/oncall").await.0;
    let anonymous = app.http.get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!((anonymous.status().as_u16(), api), (401, 401));
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        r#"Basic realm="alertmanager-sipgate", charset="UTF-8""#
    );
    let wrong = app
        .http
        .get(format!("{}/", app.url))
        .basic_auth(SERVER_USER, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let head = app.http.head(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(head.status(), 401);

    let page = app.authorized(Method::GET, "/").await;
    assert_eq!(page.status(), 200);
    assert_html_headers(&page);
    let html = page.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    for id in ["oncall", "incidents", "recent", "health"] {
        section(&html, id);
    }
    let head = app.authorized(Method::HEAD, "/").await;
    assert_eq!(head.status(), 200);
    assert_html_headers(&head);
    assert_eq!(head.text().await.unwrap(), "");
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let refused = app.authorized(method.clone(), "/").await;
        assert_eq!(refused.status(), 405, "{method}");
        assert_eq!(refused.headers()["allow"], "GET, HEAD");
    }

    // The JSON and text endpoints keep their own headers.
    for path in [
        "/api/v1/oncall",
        "/api/v1/incidents",
        "/metrics",
        "/-/healthy",
        "/-/ready",
    ] {
        let response = app.authorized(Method::GET, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            !headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        for html_only in [
            "content-security-policy",
            "referrer-policy",
            "cache-control",
        ] {
            assert!(headers.get(html_only).is_none(), "{path}: {html_only}");
        }
    }
}

#[tokio::test]
async fn the_status_page_shows_who_is_on_call_the_open_incident_and_the_last_sms() {
    let fake = FakeSipgate::new().start().await;
    let (app, code) = paged(&fake, fixture("firing-diskfull.json")).await;

    let (status, html) = app.get_authorized("/").await;
    assert_eq!(status, 200);
    let oncall = text(section(&html, "oncall"));
    assert!(oncall.contains("primary"), "{oncall}");
    assert!(
        oncall.contains("alice is on call until Mon 30 Nov 09:00 (in 4d 22h)."),
        "{oncall}"
    );
    assert!(
        oncall.contains(
            "Next: bob from Mon 30 Nov 09:00, alice from Mon 07 Dec 09:00, bob from Mon 14 Dec 09:00. \
             Times in Europe/Berlin."
        ),
        "{oncall}"
    );
    let incidents = text(section(&html, "incidents"));
    for line in [
        "DiskFull Firing since Wed 25 Nov 10:00 UTC (just now).",
        "firing DiskFull db1:9100: Disk on db1 is 95% full",
        "Step 1 paged alice at Wed 25 Nov 10:00 UTC (just now).",
        "Step 2 is due Wed 25 Nov 10:10 UTC (in 10m), unless someone acknowledges.",
        "Route critical, policy critical.",
    ] {
        assert!(incidents.contains(line), "{line:?} in {incidents}");
    }
    let recent = text(section(&html, "recent"));
    assert!(recent.contains("this replica"), "{recent}");
    assert!(
        recent.contains("Wed 25 Nov 10:00 UTC: alice, route critical: sent, 1 segment."),
        "{recent}"
    );
    let health = text(section(&html, "health"));
    for line in [
        "State store: memory, up.",
        "Watchdog: not configured.",
        "Sipgate credentials: not checked (sipgate.check_credentials is off).",
        "Sending: SMS go to Sipgate.",
        "Last reload: none since the start.",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(health.contains(line), "{line:?} in {health}");
    }
    for number in NUMBERS {
        assert!(!html.contains(number), "{number} in {html}");
    }

    // alice acknowledges three minutes later: the page says who and when, and no step is due.
    app.clock.set(at("2026-11-25T10:03:00Z"));
    let (_, page) = app.get(&format!("/a/{code}")).await;
    let form = format!("csrf={}&action=ack", csrf_token_in(&page));
    let acknowledged = app
        .http
        .post(format!("{}/a/{code}", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(acknowledged.status(), 200);
    let (_, html) = app.get_authorized("/").await;
    let incidents = text(section(&html, "incidents"));
    assert!(
        incidents.contains(
            "DiskFull Acknowledged by alice at Wed 25 Nov 10:03 UTC (just now) through the SMS link."
        ),
        "{incidents}"
    );
    assert!(!incidents.contains("is due"), "{incidents}");
}

#[tokio::test]
async fn hostile_label_values_stay_text_on_both_pages_and_never_become_a_link() {
    let fake = FakeSipgate::new().start().await;
    let (app, code) = paged(&fake, with_hostile_labels(&fixture("firing-diskfull.json"))).await;
    let (status, acknowledgement) = app.get(&format!("/a/{code}")).await;
    assert_eq!(status, 200);
    let (status, overview) = app.get_authorized("/").await;
    assert_eq!(status, 200);

    for (html, stylesheet) in [
        (&acknowledgement, "../static/style.css"),
        (&overview, "static/style.css"),
    ] {
        // Escaped in the HTML ...
        for escaped in [
            "&#60;script&#62;alert(1)&#60;/script&#62;",
            "&#34;db1&#34; &#39;x&#39; javascript:alert(1)",
            "&#60;/section&#62;&#60;img src=x onerror=alert(1)&#62; {{ layout.title }} {% if true %}",
        ] {
            assert!(html.contains(escaped), "{escaped:?} in {html}");
        }
        for raw in [
            HOSTILE_ALERTNAME,
            HOSTILE_INSTANCE,
            HOSTILE_SUMMARY,
            "<script",
            "<img",
        ] {
            assert!(!html.contains(raw), "{raw:?} in {html}");
        }
        // ... and read as they were sent.
        let text = text(html);
        for value in [HOSTILE_ALERTNAME, HOSTILE_INSTANCE, HOSTILE_SUMMARY] {
            assert!(text.contains(value), "{value:?} in {text}");
        }
        // No section ends early, and nothing of an alert is a URL (not even its generator URL):
        // the stylesheet is the page's one.
        assert_eq!(
            html.matches("<section").count(),
            html.matches("</section>").count()
        );
        assert_eq!(url_attributes(html), [stylesheet], "{html}");
    }
}

#[tokio::test]
async fn the_stylesheet_is_served_to_anyone_with_a_short_lifetime_and_a_validator() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&paging(&fake.uri()).yaml()).await;
    let response = app
        .http
        .get(format!("{}/static/style.css", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().unwrap().to_string();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/web/style.css"),
    )
    .unwrap();
    assert_eq!(response.text().await.unwrap(), shipped);

    // A browser that has it asks whether it changed: 304, without the body.
    for validator in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
        let again = app
            .http
            .get(format!("{}/static/style.css", app.url))
            .header("if-none-match", &validator)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{validator}");
        assert_eq!(again.headers()["etag"], etag.as_str());
        assert_eq!(again.text().await.unwrap(), "");
    }
    let changed = app
        .http
        .get(format!("{}/static/style.css", app.url))
        .header("if-none-match", "\"another\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let head = app
        .http
        .head(format!("{}/static/style.css", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    let post = app
        .http
        .post(format!("{}/static/style.css", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(app.get("/static/other.css").await.0, 404);
}

/// The `<h1>` of `html`, as text.
fn heading(html: &str) -> String {
    let start = html
        .find("<h1")
        .unwrap_or_else(|| panic!("no <h1> in {html}"));
    let end = html[start..].find("</h1>").unwrap() + start;
    text(&html[start..end])
}

#[tokio::test]
async fn the_acknowledgement_pages_carry_the_headers_and_say_what_happened() {
    let fake = FakeSipgate::new().start().await;
    let (app, code) = paged(&fake, fixture("firing-diskfull.json")).await;

    let page = app
        .http
        .get(format!("{}/a/{code}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_html_headers(&page);
    let html = page.text().await.unwrap();
    assert_eq!(heading(&html), "DiskFull");
    let read = text(&html);
    for line in [
        "Firing since Wed 25 Nov 10:00 UTC (just now).",
        "firing DiskFull db1:9100: Disk on db1 is 95% full",
        "Step 1 paged alice at Wed 25 Nov 10:00 UTC (just now).",
        "Step 2 is due Wed 25 Nov 10:10 UTC (in 10m), unless someone acknowledges.",
        "You are alice.",
    ] {
        assert!(read.contains(line), "{line:?} in {read}");
    }
    assert!(html.contains("<form method=\"post\">"), "{html}");
    assert!(
        html.contains("<button name=\"action\" value=\"ack\""),
        "{html}"
    );
    // Without `alertmanager.urls` there is nothing to silence with.
    assert!(!html.contains("value=\"silence\""), "{html}");
    for number in NUMBERS {
        assert!(!html.contains(number), "{number}");
    }

    // The form's answer says what happened, in the element a reader's screen reader announces.
    let form = format!("csrf={}&action=ack", csrf_token_in(&html));
    let done = app.post_ack_form(&code, &form).await;
    assert_eq!(done.status(), 200);
    assert_html_headers(&done);
    let html = done.text().await.unwrap();
    assert!(
        html.contains(
            "<p role=\"status\" id=\"outcome\">Acknowledged. Nobody else will be paged.</p>"
        ),
        "{html}"
    );
    assert!(
        text(&html).contains(
            "Acknowledged by alice at Wed 25 Nov 10:00 UTC (just now) through the SMS link."
        ),
        "{html}"
    );
    assert!(!html.contains("<form"), "{html}");
    let again = app.post_ack_form(&code, &form).await.text().await.unwrap();
    assert!(
        again.contains("<p role=\"status\" id=\"outcome\">alice had already acknowledged it.</p>"),
        "{again}"
    );

    // A form from elsewhere.
    let forged = app.post_ack_form(&code, "action=ack&csrf=AAAA").await;
    assert_eq!(forged.status(), 403);
    assert_html_headers(&forged);
    assert_eq!(
        heading(&forged.text().await.unwrap()),
        "This form is not from this link's page"
    );

    // An unknown code, and too many of them.
    let unknown = format!("{}{}", &code[..12], "B".repeat(12));
    let response = app
        .http
        .get(format!("{}/a/{unknown}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_html_headers(&response);
    let html = response.text().await.unwrap();
    assert_eq!(heading(&html), "This link is unknown or has expired");
    assert!(
        text(&html).contains("Links expire a day after their incident ended."),
        "{html}"
    );
    for _ in 1..10 {
        assert_eq!(app.get(&format!("/a/{unknown}")).await.0, 404);
    }
    let refused = app
        .http
        .get(format!("{}/a/{unknown}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_html_headers(&refused);
    assert_eq!(refused.headers()["retry-after"], "60");
    assert_eq!(
        heading(&refused.text().await.unwrap()),
        "Too many unknown links"
    );
}

#[tokio::test]
async fn the_status_page_tells_the_last_reload_and_why_it_failed() {
    let fake = FakeSipgate::new().start().await;
    let config = paging(&fake.uri());
    let app = TestApp::start(&config.yaml()).await;
    app.clock.set(at(NOW));
    let health = |html: String| text(section(&html, "health"));

    // A number the config refuses: the problem is shown, the number in it masked.
    let mut broken = config.clone();
    broken
        .recipients
        .insert("alice".into(), json!("+49 1522 8817386 x"));
    std::fs::write(&app.config_path, broken.yaml()).unwrap();
    assert_eq!(
        app.authorized(Method::POST, "/-/reload").await.status(),
        500
    );
    let shown = health(app.get_authorized("/").await.1);
    assert!(
        shown.contains(
            "Last reload: Wed 25 Nov 10:00 UTC (just now), failed: line 9: recipients.alice: \
             invalid phone number"
        ),
        "{shown}"
    );
    assert!(shown.contains("the running config stays"), "{shown}");
    for number in NUMBERS.iter().chain(&["1522 8817386"]) {
        assert!(!shown.contains(number), "{number} in {shown}");
    }

    app.clock.set(at("2026-11-25T10:05:00Z"));
    std::fs::write(&app.config_path, config.yaml()).unwrap();
    assert_eq!(
        app.authorized(Method::POST, "/-/reload").await.status(),
        200
    );
    let shown = health(app.get_authorized("/").await.1);
    assert!(
        shown.contains("Last reload: Wed 25 Nov 10:05 UTC (just now), succeeded."),
        "{shown}"
    );
}

#[tokio::test]
async fn a_reload_by_sighup_shows_on_the_status_page() {
    let fake = FakeSipgate::new().start().await;
    let service = Service::start(&paging(&fake.uri()).yaml()).await;
    let before = text(section(&service.get_authorized("/").await.1, "health"));
    assert!(
        before.contains("Last reload: none since the start."),
        "{before}"
    );
    service.child.signal("HUP");
    eventually(
        std::time::Duration::from_secs(10),
        "the status page shows the reload",
        || async {
            let (_, html) = service.get_authorized("/").await;
            let health = text(section(&html, "health"));
            (health.contains("Last reload: ") && health.contains("succeeded.")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs redis-server: apt-get install redis-server"]
async fn the_status_page_still_answers_when_the_state_store_does_not() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let service = Service::start(&paging(&fake.uri()).on_redis(&redis).yaml()).await;
    let (status, answer) = service
        .post_alerts_authorized(fixture("firing-diskfull.json"))
        .await;
    assert_eq!(status, 200, "{answer}");

    redis.pause();
    let (status, html) = service.get_authorized("/").await;
    assert_eq!(status, 200, "{html}");
    let health = text(section(&html, "health"));
    assert!(health.contains("State store: redis, down"), "{health}");
    let incidents = text(section(&html, "incidents"));
    assert!(
        incidents.contains("The open incidents cannot be read: the state store does not answer."),
        "{incidents}"
    );
    // What needs no store is still there.
    assert!(
        text(section(&html, "oncall")).contains("is on call"),
        "{html}"
    );
    assert!(
        text(section(&html, "recent")).contains("route critical: sent, 1 segment."),
        "{html}"
    );

    redis.resume();
    eventually(
        std::time::Duration::from_secs(10),
        "the status page shows the store up again",
        || async {
            let (_, html) = service.get_authorized("/").await;
            text(section(&html, "health"))
                .contains("State store: redis, up.")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn with_alertmanager_the_page_offers_a_silence_and_says_when_it_could_not_be_made() {
    let fake = FakeSipgate::new().start().await;
    let alertmanager = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/api/v2/silences"))
        .respond_with(wiremock::ResponseTemplate::new(500))
        .mount(&alertmanager)
        .await;
    let mut config = paging(&fake.uri());
    config.alertmanager = Some(json!({"urls": [alertmanager.uri()], "timeout": "2s"}));
    let app = TestApp::start(&config.yaml()).await;
    app.clock.set(at(NOW));
    let (status, _) = app
        .post_alerts_authorized(fixture("firing-diskfull.json"))
        .await;
    assert_eq!(status, 200);
    let code = split_at_ack_code(&sent_sms(&fake).await[0].1).1.to_string();

    let (_, html) = app.get(&format!("/a/{code}")).await;
    assert!(
        html.contains(
            "<button name=\"action\" value=\"silence\" class=\"secondary\">Acknowledge and \
             silence until resolved</button>"
        ),
        "{html}"
    );
    let form = format!("csrf={}&action=silence", csrf_token_in(&html));
    let done = app.post_ack_form(&code, &form).await;
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    assert!(
        html.contains(
            "<p role=\"status\" id=\"outcome\">Acknowledged. Nobody else will be paged. The \
             silence could not be made in Alertmanager; silence the alerts there.</p>"
        ),
        "{html}"
    );
    let silences = alertmanager.received_requests().await.unwrap();
    assert_eq!(silences.len(), 1);
}

#[tokio::test]
async fn an_incident_storm_keeps_the_status_page_short() {
    let fake = FakeSipgate::new().start().await;
    let mut config = paging(&fake.uri());
    // Every page goes out, however many.
    config = config.delivery("rate_limit", json!({}));
    let app = TestApp::start(&config.yaml()).await;
    for n in 0..52 {
        let (status, answer) = app.post_alerts_authorized(diskfull(n)).await;
        assert_eq!(status, 200, "{answer}");
        app.clock.advance(std::time::Duration::from_secs(1));
    }
    let (status, html) = app.get_authorized("/").await;
    assert_eq!(status, 200);
    let incidents = section(&html, "incidents");
    assert_eq!(
        incidents.matches("<article class=\"incident\">").count(),
        50
    );
    assert!(
        text(incidents).contains("And 2 more; /api/v1/incidents lists them all."),
        "{incidents}"
    );
    // The oldest first: db0 is shown, db51 is not.
    assert!(incidents.contains("db0:9100") && !incidents.contains("db51:9100"));
}
