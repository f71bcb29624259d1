//! The web pages in a real browser (headless chromium), at a phone's and a desktop's size: the
//! acknowledgement flow clicked through end to end against the service's binary and the fake
//! Sipgate, also without JavaScript; the status page; screenshots under target/screenshots/;
//! axe-core finds no serious or critical violation.

use serde_json::{Value, json};

use crate::harness::*;

/// The notification of `fixture("firing-diskfull.json")`, as its SMS says it.
const DISK_FULL: &str = "FIRING DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full";

/// Critical alerts page alice and bob at once, and carol 10 minutes later; the links in the SMS
/// lead to `service_url`.
fn paging_two_then_carol(api_url: &str, service_url: &str) -> TestConfig {
    let mut config = TestConfig::new(api_url);
    config.recipients.insert("carol".to_string(), CAROL.into());
    config.web = Some(json!({ "external_url": service_url }));
    config.escalation_policies.insert(
        "critical".to_string(),
        json!({"steps": [{"to": ["alice", "bob"], "wait": "10m"}, {"to": ["carol"]}]}),
    );
    let route = config.route("critical");
    route.to.clear();
    route.escalation = Some("critical".to_string());
    config
}

/// A DiskFull pages alice and bob; alice opens the link of her SMS, presses Acknowledge and
/// sees it confirmed; bob is told, carol is never paged. Screenshots before and after, and
/// axe-core when the browser runs scripts.
async fn acknowledge_in(browser: &Browser) {
    let with_axe = browser.javascript();
    let screenshot = |name: &str| match with_axe {
        true => name.to_string(),
        false => format!("{name}-without-javascript"),
    };
    let fake = FakeSipgate::new().start().await;
    let service =
        Service::start_at_its_url(|url| paging_two_then_carol(&fake.uri(), url).yaml()).await;
    let (status, answer) = service.post_alerts(fixture("firing-diskfull.json")).await;
    assert_eq!(status, 200, "{answer}");
    let alice = texts_to(&fake, ALICE).await;
    assert_eq!(alice.len(), 1, "{alice:?}");
    let (text, code) = split_at_ack_code(&alice[0]);
    assert_eq!(text, format!("{DISK_FULL}\nAck: {}/a/", service.url));

    // The link exactly as the SMS has it.
    browser.goto(&format!("{}/a/{code}", service.url)).await;
    assert!(browser.text("h1").await.contains("DiskFull"));
    browser.screenshot(&screenshot("ack")).await;
    if with_axe {
        assert!(
            !browser.inline_scripts_run().await,
            "the page's Content-Security-Policy lets an inline script run"
        );
        browser.assert_accessible("the acknowledgement page").await;
    }

    browser.click(r#"button[name="action"][value="ack"]"#).await;
    let outcome = browser.text("#outcome").await;
    assert!(outcome.starts_with("Acknowledged"), "{outcome}");
    browser.screenshot(&screenshot("ack-done")).await;
    if with_axe {
        browser
            .assert_accessible("the acknowledgement page after acknowledging")
            .await;
    }

    // bob, paged with alice, is told who took it; carol's step never comes.
    wait_for_texts(&fake, BOB, 2).await;
    let sent = sent_sms(&fake).await;
    let to = |number: &str| -> Vec<&str> {
        sent.iter()
            .filter(|(recipient, _)| recipient == number)
            .map(|(_, text)| text.as_str())
            .collect()
    };
    assert_eq!(to(ALICE), [alice[0].as_str()]);
    let bob = to(BOB);
    assert_eq!(bob.len(), 2, "{bob:?}");
    assert_eq!(bob[0], "ACK DiskFull by alice");
    assert_eq!(split_at_ack_code(bob[1]).0, text);
    assert_eq!(sent.len(), 3, "{sent:?}");
    let (status, listed) = service.get("/api/v1/incidents").await;
    assert_eq!(status, 200, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let incident = &listed["incidents"][0];
    assert_eq!(incident["acknowledged"]["by"], "alice", "{listed}");
    assert_eq!(incident["acknowledged"]["via"], "link", "{listed}");
    assert_eq!(incident["next_step"], Value::Null, "{listed}");
    assert_eq!(incident["next_at"], Value::Null, "{listed}");
}

#[tokio::test]
#[ignore = "needs chromium: apt-get install chromium chromium-driver"]
async fn a_page_is_acknowledged_from_the_link_in_its_sms() {
    for viewport in VIEWPORTS {
        let browser = Browser::start(viewport).await;
        acknowledge_in(&browser).await;
    }
}

#[tokio::test]
#[ignore = "needs chromium: apt-get install chromium chromium-driver"]
async fn a_page_is_acknowledged_without_javascript() {
    let browser = Browser::without_javascript(PHONE).await;
    assert!(
        !browser.javascript_runs_on_pages().await,
        "the profile still runs scripts"
    );
    acknowledge_in(&browser).await;
}

#[tokio::test]
#[ignore = "needs chromium: apt-get install chromium chromium-driver"]
async fn an_unknown_link_says_so() {
    let fake = FakeSipgate::new().start().await;
    let service =
        Service::start_at_its_url(|url| paging_two_then_carol(&fake.uri(), url).yaml()).await;
    for viewport in VIEWPORTS {
        let browser = Browser::start(viewport).await;
        browser
            .goto(&format!("{}/a/{}", service.url, "A".repeat(24)))
            .await;
        let heading = browser.text("h1").await.to_lowercase();
        assert!(
            heading.contains("unknown") || heading.contains("expired"),
            "{heading}"
        );
        browser.screenshot("ack-unknown").await;
        browser.assert_accessible("an unknown link's page").await;
    }
}

/// bob is on call for `primary`, which critical alerts page; everything behind Basic auth.
fn bob_on_call_behind_auth(api_url: &str, service_url: &str) -> TestConfig {
    let mut config = paging_two_then_carol(api_url, service_url);
    config.schedules.insert(
        "primary".to_string(),
        json!({
            "time_zone": "Europe/Berlin",
            "rotation": {"members": ["bob"], "shift": "1w", "start": "2026-01-05T09:00"},
        }),
    );
    config.escalation_policies.insert(
        "critical".to_string(),
        json!({"steps": [{"to": ["primary"], "wait": "10m"}, {"to": ["carol"]}]}),
    );
    config.with_basic_auth()
}

#[tokio::test]
#[ignore = "needs chromium: apt-get install chromium chromium-driver"]
async fn the_status_page_shows_who_is_on_call_and_the_open_incidents() {
    let fake = FakeSipgate::new().start().await;
    let service =
        Service::start_at_its_url(|url| bob_on_call_behind_auth(&fake.uri(), url).yaml()).await;
    let (status, answer) = service
        .post_alerts_authorized(fixture("firing-diskfull.json"))
        .await;
    assert_eq!(status, 200, "{answer}");
    // The credentials in the URL: chromium answers the service's 401 with them, as a person
    // does in the login prompt.
    let page = service.url.replacen(
        "http://",
        &format!("http://{SERVER_USER}:{SERVER_PASSWORD}@"),
        1,
    ) + "/";
    for viewport in VIEWPORTS {
        let browser = Browser::start(viewport).await;
        browser.goto(&page).await;
        let on_call = browser.text("#oncall").await;
        assert!(
            on_call.contains("primary") && on_call.contains("bob"),
            "{on_call}"
        );
        let incidents = browser.text("#incidents").await;
        assert!(incidents.contains("DiskFull"), "{incidents}");
        browser.screenshot("status").await;
        browser.assert_accessible("the status page").await;
    }
}

/// The check itself: axe-core finds what a page without alternative text, with unreadable
/// contrast, without a language, a heading or a main part breaks, so that its silence on the
/// service's pages means something.
#[tokio::test]
#[ignore = "needs chromium: apt-get install chromium chromium-driver"]
async fn axe_core_finds_the_violations_of_a_broken_page() {
    let browser = Browser::start(DESKTOP).await;
    browser
        .goto(
            "data:text/html,<title>broken</title><img src='x.png'>\
             <p style='color:%23777;background:%23888'>faint</p>",
        )
        .await;
    let mut found: Vec<(String, Option<String>)> = browser
        .axe()
        .await
        .into_iter()
        .map(|v| (v.id, v.impact))
        .collect();
    found.sort();
    let impact = |i: &str| Some(i.to_string());
    assert_eq!(
        found,
        [
            ("color-contrast".to_string(), impact("serious")),
            ("html-has-lang".to_string(), impact("serious")),
            ("image-alt".to_string(), impact("critical")),
            ("landmark-one-main".to_string(), impact("moderate")),
            ("page-has-heading-one".to_string(), impact("moderate")),
            ("region".to_string(), impact("moderate")),
        ]
    );
}
