//! A real Alertmanager (Debian's `prometheus-alertmanager`) posting to the service: the example
//! configs as an operator copies them, and Alertmanager's own retries against a flaky Sipgate.

use std::time::Duration;

use crate::harness::*;
use wiremock::MockServer;

/// The bodies of the SMS requests the fake received, sorted, once there are `count` of them.
async fn wait_for_sms(fake: &MockServer, count: usize, limit: Duration) -> Vec<String> {
    eventually(limit, &format!("{count} SMS requests"), || async {
        let mut bodies: Vec<String> = fake
            .received_requests()
            .await?
            .into_iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v2/sessions/sms")
            .map(|r| String::from_utf8(r.body).unwrap_or_default())
            .collect();
        bodies.sort();
        (bodies.len() >= count).then_some(bodies)
    })
    .await
}

/// The alert as Prometheus sends it, to every Alertmanager alike: with the time it started.
fn diskfull_alert() -> serde_json::Value {
    serde_json::json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
        "annotations": {"summary": "Disk on db1 is 95% full"},
        "startsAt": "2026-11-25T09:05:47Z"
    }])
}

#[tokio::test]
#[ignore = "needs prometheus-alertmanager (apt-get install prometheus-alertmanager); run with: cargo test -- --include-ignored"]
async fn flaky_sipgate_behind_a_real_alertmanager_gives_exactly_one_sms_each() {
    const FAILURES: usize = 12;
    let fake = failing_then_ok(503, FAILURES as u64, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = quick_alertmanager_config(dir.path(), &app.url, "2s", "1h");
    let am = Alertmanager::start(&config, &dir.path().join("data")).await;

    am.post_alerts(diskfull_alert()).await;

    wait_for_sms(&fake, FAILURES + 2, Duration::from_secs(40)).await;
    // Two more flushes of the group: Alertmanager must not cause another SMS.
    let flushed = am.flushes();
    eventually(Duration::from_secs(20), "two more flushes", || async {
        (am.flushes() >= flushed + 2).then_some(())
    })
    .await;

    assert_eq!(fake.received_requests().await.unwrap().len(), FAILURES + 2);
    let metrics = app.metrics.render();
    for who in ["alice", "bob"] {
        let line = format!(
            "alertmanager_sipgate_sms_sent_total{{recipient=\"{who}\",route=\"critical\"}} 1\n"
        );
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    let failed: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("alertmanager_sipgate_requests_total{code=\"502\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        failed >= 1,
        "Alertmanager had to retry at least once:\n{metrics}"
    );
}

/// `examples/alertmanager.yml` and `examples/config.yml`, each in a folder of its own as on two
/// machines, with the shared secret written beside each as the README says. Only the receiver
/// URL's port (Alertmanager), Sipgate's `api_url`, `alertmanager.urls`, the token and the listen
/// port (service) differ from the files in the repository.
#[tokio::test]
#[ignore = "needs prometheus-alertmanager (apt-get install prometheus-alertmanager); run with: cargo test -- --include-ignored"]
async fn the_example_configs_work_together_as_copied() {
    let fake = FakeSipgate::new().with_credential_check().start().await;
    // Alertmanager first, on the port the service will have: the service's config names it.
    let port = free_port();
    let am_dir = tempfile::tempdir().unwrap();
    let am_config = am_dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        replace_once(
            &std::fs::read_to_string(example("alertmanager.yml")).unwrap(),
            "url: http://127.0.0.1:9716/alerts",
            &format!("url: http://127.0.0.1:{port}/alerts"),
        ),
    )
    .unwrap();
    std::fs::write(
        am_dir.path().join("sms-password"),
        format!("{EXAMPLE_SECRET}\n"),
    )
    .unwrap();
    let am = Alertmanager::start(&am_config, &am_dir.path().join("data")).await;

    let api_url = format!("{}/v2", fake.uri());
    let service_dir = example_service_dir(Some(&|config| {
        config["sipgate"]["api_url"] = api_url.clone().into();
        config["alertmanager"]["urls"] = yaml_serde::Value::Sequence(vec![am.url.clone().into()]);
    }));
    let config_path = service_dir.path().join("config.yml");
    let service = Service::start_at(
        "127.0.0.1",
        port,
        &config_path,
        &[],
        &[("SIPGATE_TOKEN_ID", TOKEN_ID), ("SIPGATE_TOKEN", TOKEN)],
    )
    .await;
    wait_until_ok(
        &format!("{}/-/ready", service.url),
        Duration::from_secs(10),
        "the service (credential check)",
    )
    .await;

    am.post_alerts(serde_json::json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
        "annotations": {"summary": "Disk on db1 is 95% full"},
        "startsAt": "2026-11-25T09:05:47Z"
    }]))
    .await;

    // The example waits group_wait (30s) before the first notification of a group, and its
    // escalation's step 1 pages whoever the primary schedule has on call, with a link.
    let sms = wait_for_sms(&fake, 1, Duration::from_secs(60)).await;
    let config =
        alertmanager_sipgate::config::Config::load_with_env(&config_path, &|_| None).unwrap();
    let on_call = config.schedules["primary"].who(chrono::Utc::now());
    let number = config.recipients[on_call].e164();
    let [body] = &sms[..] else {
        panic!("one SMS expected: {sms:?}\nlog:\n{}", service.log())
    };
    let message: serde_json::Value = serde_json::from_str(body).unwrap();
    let (text, code) = split_at_ack_code(message["message"].as_str().unwrap());
    assert_eq!(
        text,
        "FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full\n\
         Ack: https://pager.example.com/a/"
    );
    let expected = format!(
        r#"{{"smsId":"s0","recipient":"{number}","message":{}}}"#,
        serde_json::to_string(&format!("{text}{code}")).unwrap()
    );
    assert_eq!(body, &expected, "log:\n{}", service.log());
    // The example protects /metrics with the credentials Alertmanager has.
    assert_eq!(service.get("/metrics").await.0, 401);
    let metrics = metrics_as(&service.url, Some(("alertmanager", EXAMPLE_SECRET))).await;
    assert!(
        metrics
            .contains("alertmanager_sipgate_requests_total{code=\"200\",endpoint=\"/alerts\"} 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("code=\"401\",endpoint=\"/alerts\""),
        "Alertmanager's credentials were refused:\n{metrics}"
    );
}

/// An Alertmanager HA pair in a gossip cluster, each posting to its own replica, both replicas
/// on one Redis. Sipgate fails the first attempts, so the first peer's notification fails and
/// the second peer delivers too: the shared ledger still lets exactly one SMS per recipient out.
#[tokio::test]
#[ignore = "needs prometheus-alertmanager and redis-server (apt-get install prometheus-alertmanager redis-server); run with: cargo test -- --include-ignored"]
async fn an_alertmanager_ha_pair_on_two_replicas_sends_one_sms_each() {
    const FAILURES: usize = 30;
    let redis = Redis::start().await;
    let fake = failing_then_ok(503, FAILURES as u64, None).await;
    let yaml = TestConfig::faults(&fake.uri()).on_redis(&redis).yaml();
    let replicas = [Service::start(&yaml).await, Service::start(&yaml).await];

    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let [first, second] = Alertmanager::start_pair(
        [
            &quick_alertmanager_config(dirs[0].path(), &replicas[0].url, "2s", "1h"),
            &quick_alertmanager_config(dirs[1].path(), &replicas[1].url, "2s", "1h"),
        ],
        [&dirs[0].path().join("data"), &dirs[1].path().join("data")],
    )
    .await;
    // Prometheus sends every alert to every Alertmanager.
    first.post_alerts(diskfull_alert()).await;
    second.post_alerts(diskfull_alert()).await;

    wait_for_sms(&fake, FAILURES + 2, Duration::from_secs(60)).await;
    for replica in &replicas {
        metrics_with(&replica.url, "endpoint=\"/alerts\"} ").await;
    }
    // Two more flushes of each peer: no further SMS.
    let flushed = (first.flushes(), second.flushes());
    eventually(
        Duration::from_secs(20),
        "two more flushes of each peer",
        || async {
            (first.flushes() >= flushed.0 + 2 && second.flushes() >= flushed.1 + 2).then_some(())
        },
    )
    .await;
    let accepted: Vec<String> = fake.received_requests().await.unwrap()[FAILURES..]
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            body["recipient"].as_str().unwrap().to_string()
        })
        .collect();
    let mut accepted = accepted;
    accepted.sort();
    assert_eq!(accepted, [ALICE, BOB]);
    let mut posted_to = 0;
    for replica in &replicas {
        let metrics = metrics(&replica.url).await;
        if metrics
            .contains("alertmanager_sipgate_requests_total{code=\"200\",endpoint=\"/alerts\"}")
            || metrics
                .contains("alertmanager_sipgate_requests_total{code=\"502\",endpoint=\"/alerts\"}")
        {
            posted_to += 1;
        }
    }
    assert_eq!(posted_to, 2, "both peers delivered to their replica");
}
