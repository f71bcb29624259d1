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
    config.with_basic_auth().yaml()
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
    app.post_alerts_authorized(serde_json::to_vec(&body).unwrap())
        .await
}

/// `GET /api/v1/incidents` with the test's credentials.
async fn incidents_listed(app: &TestApp) -> serde_json::Value {
    let (status, text) = app.get_authorized("/api/v1/incidents").await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn code_of(text: &str) -> String {
    text.rsplit("/a/").next().unwrap().to_string()
}

async fn post_form(app: &TestApp, code: &str, form: &str) -> (u16, String) {
    let response = app.post_ack_form(code, form).await;
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
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{page}"
    );
    assert!(page.contains("&#34;quoted&#34; &#38; javascript:alert(2)"));
    assert!(!page.contains("<script>"));
    assert!(!page.contains(ALICE) && !page.contains("15228817386"));
    assert!(page.contains("You are alice."));

    // Without the token, or with another's, nothing happens.
    assert_eq!(post_form(&app, &code, "action=ack").await.0, 403);
    assert_eq!(post_form(&app, &code, "action=ack&csrf=AAAA").await.0, 403);
    let token = csrf_token_in(&page);
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

    // 1,000 guesses from one address: after the first few, 429 with Retry-After.
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
        .get(format!("{}/a/{forged}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "60");
    // The person on call behind the same address (a proxy, a NAT) still gets the page; it acts
    // on nothing.
    assert_eq!(app.get(&format!("/a/{code}")).await.0, 200);

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
    let listed = incidents_listed(&app).await;
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
    let listed = incidents_listed(&app).await;
    assert_eq!(listed["incidents"], json!([]));
}

#[tokio::test]
async fn a_link_shows_its_ended_incident_for_a_day_and_then_is_unknown() {
    let fake = FakeSipgate::new().start().await;
    let app = TestApp::start(&escalating(&fake.uri())).await;
    assert_eq!(fire(&app, "firing").await.0, 200);
    let code = code_of(&sent_sms(&fake).await[0].1);
    assert_eq!(fire(&app, "resolved").await.0, 200);
    let (status, page) = app.get(&format!("/a/{code}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Resolved"), "{page}");
    assert!(
        !page.contains("<form"),
        "an ended incident takes no acknowledgement"
    );
    let token = alertmanager_sipgate::http::web::ack::form_token(&code);
    let (status, done) = post_form(&app, &code, &format!("action=ack&csrf={token}")).await;
    assert_eq!(status, 200);
    assert!(
        done.contains("This incident has ended; there is nothing to acknowledge."),
        "{done}"
    );

    app.clock.advance(std::time::Duration::from_secs(86_400));
    assert_eq!(app.get(&format!("/a/{code}")).await.0, 404);
    assert_eq!(
        post_form(&app, &code, &format!("action=ack&csrf={token}"))
            .await
            .0,
        404
    );
}

/// alice, then bob after 4 s, then carol after 4 s more; on `redis`, watching `alertmanagers`.
fn escalating_replica(api_url: &str, redis: &Redis, alertmanagers: &[&str]) -> String {
    let mut config = TestConfig::new(api_url).on_redis(redis);
    config.recipients.insert("carol".to_string(), CAROL.into());
    config.web = Some(json!({"external_url": "https://pager.example.com"}));
    config.escalation_policies.insert(
        "critical".to_string(),
        json!({"steps": [
            {"to": ["alice"], "wait": "4s"}, {"to": ["bob"], "wait": "4s"}, {"to": ["carol"]}
        ]}),
    );
    if !alertmanagers.is_empty() {
        config.alertmanager =
            Some(json!({"urls": alertmanagers, "timeout": "2s", "resolved_after": "1s"}));
    }
    let route = config.route("critical");
    route.to.clear();
    route.escalation = Some("critical".to_string());
    config.yaml()
}

/// `amtool silence query` (with `--expired`: the expired ones instead of the others), as JSON.
fn amtool_silences(alertmanager: &str, expired: bool) -> serde_json::Value {
    let url = format!("--alertmanager.url={alertmanager}");
    let mut args = vec!["silence", "query", "--output=json", &url];
    if expired {
        args.push("--expired");
    }
    let output = std::process::Command::new("amtool")
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn disk_full(ends_at: Option<&str>) -> serde_json::Value {
    let mut alert = json!({
        "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
        "annotations": {"summary": "Disk on db1 is 95% full"},
        "startsAt": "2026-11-25T09:05:47Z"
    });
    if let Some(ends_at) = ends_at {
        alert["endsAt"] = json!(ends_at);
    }
    json!([alert])
}

/// The whole loop with the real programs: an Alertmanager HA pair, each posting to its own
/// replica, both replicas on one Redis. Nobody acknowledges alice's page, so bob is paged once;
/// bob acknowledges and silences at the other replica; the alert resolves while silenced and
/// the resolved SMS still goes out.
#[tokio::test]
#[ignore = "needs prometheus-alertmanager (amtool) and redis-server: apt-get install prometheus-alertmanager redis-server"]
async fn an_escalation_runs_across_replicas_and_an_alertmanager_pair_until_resolved() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let ports = [free_port(), free_port()];
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let urls = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let [first, second] = Alertmanager::start_pair(
        [
            &quick_alertmanager_config(dirs[0].path(), &urls[0], "2s", "1h"),
            &quick_alertmanager_config(dirs[1].path(), &urls[1], "2s", "1h"),
        ],
        [&dirs[0].path().join("data"), &dirs[1].path().join("data")],
    )
    .await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = write_config(
        config_dir.path(),
        &escalating_replica(&fake.uri(), &redis, &[&first.url, &second.url]),
    );
    let replicas = [
        Service::start_at("127.0.0.1", ports[0], &config, &[], &[]).await,
        Service::start_at("127.0.0.1", ports[1], &config, &[], &[]).await,
    ];
    // Prometheus sends every alert to every Alertmanager.
    first.post_alerts(disk_full(None)).await;
    second.post_alerts(disk_full(None)).await;

    let alice = wait_for_texts(&fake, ALICE, 1).await;
    let text = "FIRING DiskFull db1:9100 since Nov 25 09:05 UTC: Disk on db1 is 95% full";
    let (body, code) = alice[0]
        .split_once("\nAck: https://pager.example.com/a/")
        .unwrap();
    assert_eq!(body, text);
    assert_eq!(code.len(), 24);

    // Nobody acknowledges: bob, once across both replicas.
    let bob = wait_for_texts(&fake, BOB, 1).await;
    let (body, bob_code) = bob[0]
        .split_once("\nAck: https://pager.example.com/a/")
        .unwrap();
    assert_eq!(
        body.split_once("\nNot acknowledged by alice for ")
            .unwrap()
            .0,
        text
    );
    // bob acknowledges at the replica the page did not come from, with the page's form.
    let page = reqwest::get(format!("{}/a/{bob_code}", replicas[0].url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/a/{bob_code}", replicas[1].url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}&action=silence", csrf_token_in(&page)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Acknowledged and silenced until the alerts resolve")
    );
    let ack = wait_for_texts(&fake, ALICE, 2).await;
    assert_eq!(ack[1], "ACK DiskFull by bob");

    // The silence is in both Alertmanagers, as amtool shows it.
    for alertmanager in [&first.url, &second.url] {
        let silences = eventually(
            std::time::Duration::from_secs(10),
            "the silence gossiped",
            || async {
                let silences = amtool_silences(alertmanager, false);
                (silences.as_array()?.len() == 1).then_some(silences)
            },
        )
        .await;
        let silence = &silences[0];
        assert_eq!(silence["createdBy"], "alertmanager-sipgate");
        assert_eq!(silence["comment"], "Acknowledged by bob via SMS");
        assert_eq!(silence["status"]["state"], "active");
        assert_eq!(
            silence["matchers"],
            json!([
                {"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true},
                {"name": "instance", "value": "db1:9100", "isRegex": false, "isEqual": true},
                {"name": "severity", "value": "critical", "isRegex": false, "isEqual": true}
            ])
        );
    }
    // carol's step was due 4 s after bob's; two more looks of each replica after it: nobody.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(texts_to(&fake, CAROL).await, Vec::<String>::new());
    assert_eq!(texts_to(&fake, BOB).await.len(), 1);

    // The alert resolves while silenced: Alertmanager sends nothing, the service notices.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    first.post_alerts(disk_full(Some(&now))).await;
    second.post_alerts(disk_full(Some(&now))).await;
    let resolved = wait_for_texts(&fake, BOB, 2).await;
    assert!(
        resolved[1].starts_with("RESOLVED DiskFull db1:9100"),
        "{}",
        resolved[1]
    );
    let alice = wait_for_texts(&fake, ALICE, 3).await;
    assert_eq!(alice[2], resolved[1]);
    eventually(
        std::time::Duration::from_secs(10),
        "the silence expired",
        || async {
            let expired = amtool_silences(&first.url, true);
            (expired[0]["status"]["state"] == "expired").then_some(())
        },
    )
    .await;
    assert_eq!(amtool_silences(&first.url, false), json!([]));
    let mut pages = 0;
    for replica in &replicas {
        let metrics = metrics(&replica.url).await;
        pages += metric_value(
            &metrics,
            "alertmanager_sipgate_escalation_pages_total{policy=\"critical\",step=\"2\"}",
        );
    }
    assert_eq!(pages, 1);
    assert_eq!(texts_to(&fake, CAROL).await, Vec::<String>::new());
}

/// The replica that opened an incident dies; the other pages the next step when it is due,
/// once.
#[tokio::test]
#[ignore = "needs redis-server: apt-get install redis-server"]
async fn a_replica_killed_during_an_escalation_leaves_the_next_step_to_the_other() {
    let redis = Redis::start().await;
    let fake = FakeSipgate::new().start().await;
    let yaml = escalating_replica(&fake.uri(), &redis, &[]);
    let opener = Service::start(&yaml).await;
    let other = Service::start(&yaml).await;
    let body = serde_json::to_vec(&json!({
        "version": "4", "status": "firing", "receiver": "sms",
        "groupKey": "{}:{alertname=\"DiskFull\"}", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "fingerprint": "f1", "startsAt": "2026-11-25T09:05:47Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
            "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
            "annotations": {"summary": "Disk on db1 is 95% full"}}]
    }))
    .unwrap();
    let (status, _) = opener.post_alerts(body).await;
    assert_eq!(status, 200);
    assert_eq!(texts_to(&fake, ALICE).await.len(), 1);
    opener.child.signal("KILL");

    wait_for_texts(&fake, BOB, 1).await;
    wait_for_texts(&fake, CAROL, 1).await;
    let listed: serde_json::Value = reqwest::get(format!("{}/api/v1/incidents", other.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paged = listed["incidents"][0]["paged"].as_array().unwrap();
    let at =
        |i: usize| chrono::DateTime::parse_from_rfc3339(paged[i]["at"].as_str().unwrap()).unwrap();
    // Each step at its time: 4 s after the one before, late by at most about one look (1 s).
    for step in 1..3 {
        let gap = (at(step) - at(step - 1)).num_milliseconds();
        assert!(
            (3_900..6_500).contains(&gap),
            "step {} came {gap} ms after the one before",
            step + 1
        );
    }
    assert_eq!(listed["incidents"][0]["exhausted"], true);
    assert_eq!(texts_to(&fake, BOB).await.len(), 1);
    assert_eq!(texts_to(&fake, CAROL).await.len(), 1);
    drop(opener);
}

/// A dry run logs each SMS, but an acknowledgement link's code is a credential: masked.
#[tokio::test]
async fn dry_run_logs_a_page_without_its_code() {
    let fake = FakeSipgate::new().start().await;
    let service = Service::start_with_flags(&escalating(&fake.uri()), &["--dry-run"]).await;
    let (status, _) = service
        .post_alerts_authorized(fixture("firing-diskfull.json"))
        .await;
    assert_eq!(status, 200);
    let log = eventually(
        std::time::Duration::from_secs(10),
        "the page is logged",
        || {
            let log = service.log();
            async move { log.contains("dry-run: SMS not sent").then_some(log) }
        },
    )
    .await;
    let links: Vec<&str> = log.split("/a/").skip(1).collect();
    assert_eq!(links.len(), 1, "{log}");
    assert!(
        links[0].starts_with(&format!("{}\"", "*".repeat(24))),
        "{log}"
    );
}
