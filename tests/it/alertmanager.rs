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

#[tokio::test]
#[ignore = "needs prometheus-alertmanager: apt-get install prometheus-alertmanager"]
async fn flaky_sipgate_behind_a_real_alertmanager_gives_exactly_one_sms_each() {
    const FAILURES: usize = 12;
    let fake = failing_then_ok(503, FAILURES as u64, None).await;
    let app = TestApp::start(&fault_config(&fake.uri())).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            r#"
route:
  receiver: sms
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: sms
    webhook_configs:
      - url: {}/alerts
        send_resolved: true
"#,
            app.url
        ),
    )
    .unwrap();
    let am = Alertmanager::start(&config, &dir.path().join("data")).await;

    am.post_alerts(serde_json::json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
        "annotations": {"summary": "Disk on db1 is 95% full"}
    }]))
    .await;

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
/// URL's port (Alertmanager), Sipgate's `api_url`, the token and the listen port (service) differ
/// from the files in the repository.
#[tokio::test]
#[ignore = "needs prometheus-alertmanager: apt-get install prometheus-alertmanager"]
async fn the_example_configs_work_together_as_copied() {
    let fake = FakeSipgate::new().with_credential_check().start().await;
    let api_url = format!("{}/v2", fake.uri());
    let service_dir = example_service_dir(Some(&|config| {
        config["sipgate"]["api_url"] = api_url.clone().into();
    }));
    let config_path = service_dir.path().join("config.yml");
    let service = Service::start_with(
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

    let am_dir = tempfile::tempdir().unwrap();
    let am_config = am_dir.path().join("alertmanager.yml");
    let port = service.url.rsplit(':').next().unwrap();
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

    am.post_alerts(serde_json::json!([{
        "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
        "annotations": {"summary": "Disk on db1 is 95% full"},
        "startsAt": "2026-11-25T09:05:47Z"
    }]))
    .await;

    // The example waits group_wait (30s) before the first notification of a group.
    let sms = wait_for_sms(&fake, 2, Duration::from_secs(60)).await;
    let text = "FIRING DiskFull db1:9100 since Nov 25 10:05 CET: Disk on db1 is 95% full";
    let mut expected: Vec<String> = [ALICE, BOB]
        .iter()
        .map(|n| format!(r#"{{"smsId":"s0","recipient":"{n}","message":"{text}"}}"#))
        .collect();
    expected.sort();
    assert_eq!(sms, expected, "log:\n{}", service.log());
    let metrics = reqwest::get(format!("{}/metrics", service.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("alertmanager_sipgate_requests_total{code=\"200\",endpoint=\"/alerts\"} 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("code=\"401\""),
        "Alertmanager's credentials were refused:\n{metrics}"
    );
}
