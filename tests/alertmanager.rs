//! A real Alertmanager (Debian's `prometheus-alertmanager`) posting to the service while Sipgate is
//! flaky: Alertmanager's own retries and repeats must end in exactly one SMS per recipient.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const ALERTMANAGER: &str = "prometheus-alertmanager";

struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_alertmanager(webhook: &str) -> Alertmanager {
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
      - url: {webhook}
        send_resolved: true
"#
        ),
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let child = Command::new(ALERTMANAGER)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg(format!("--web.external-url={url}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/-/ready")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "Alertmanager did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Alertmanager {
        child,
        url,
        _dir: dir,
    }
}

#[tokio::test]
async fn flaky_sipgate_behind_a_real_alertmanager_gives_exactly_one_sms_each() {
    if !installed(ALERTMANAGER, "prometheus-alertmanager") {
        return;
    }
    const FAILURES: usize = 12;
    let fake = failing_then_ok(503, FAILURES as u64, None).await;
    let app = TestApp::start(&fault_config(&fake.uri(), "")).await;
    let am = start_alertmanager(&format!("{}/alerts", app.url)).await;

    let response = reqwest::Client::new()
        .post(format!("{}/api/v2/alerts", am.url))
        .json(&serde_json::json!([{
            "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
            "annotations": {"summary": "Disk on db1 is 95% full"}
        }]))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let started = Instant::now();
    while fake.received_requests().await.unwrap().len() < FAILURES + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "SMS not delivered in time: {:?}",
            requests_per_recipient(&fake).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more group intervals: Alertmanager must not cause another SMS.
    tokio::time::sleep(Duration::from_secs(5)).await;

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
