//! The binary as operators run it: graceful shutdown with SMS in flight, and what its logs show.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Service {
    child: Child,
    url: String,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start(yaml: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let log = dir.path().join("service.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .env_remove("SIPGATE_TOKEN")
            .env_remove("SIPGATE_TOKEN_ID")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{url}/-/healthy")).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "service did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Service {
            child,
            url,
            config,
            log,
            _dir: dir,
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "process did not exit in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn slow_sipgate(delay: Duration) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204).set_delay(delay))
        .mount(&fake)
        .await;
    fake
}

async fn post(url: &str) -> reqwest::Result<u16> {
    let response = reqwest::Client::new()
        .post(format!("{url}/alerts"))
        .body(fixture("firing-highlatency.json"))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn sigterm_waits_for_the_request_and_its_sms() {
    let fake = slow_sipgate(Duration::from_millis(1500)).await;
    let mut service = Service::start(
        &fault_config(&fake.uri(), "  response_deadline: 4s\n")
            .replace("  response_deadline: 1s\n", ""),
    )
    .await;

    let url = service.url.clone();
    let caller = tokio::spawn(async move { post(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        post(&service.url).await.is_err(),
        "no new requests after SIGTERM"
    );

    assert_eq!(
        caller.await.unwrap().unwrap(),
        200,
        "the request in flight got its answer"
    );
    let status = service.wait_for_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}\n{}", service.log());
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(ALICE.to_string(), 1)].into()
    );
    let log = service.log();
    assert!(log.contains("signal=SIGTERM"), "{log}");
    assert!(log.contains("message=sms route=warnings recipient=alice number=+49151******78 segments=1 outcome=sent"), "{log}");
    assert!(log.contains("all SMS in flight finished"), "{log}");
}

#[tokio::test]
async fn sigterm_lets_a_send_past_the_deadline_finish() {
    let fake = slow_sipgate(Duration::from_millis(2500)).await;
    let mut service = Service::start(&fault_config(&fake.uri(), "")).await;

    assert_eq!(
        post(&service.url).await.unwrap(),
        502,
        "unconfirmed at the 1s deadline"
    );
    service.terminate();
    let status = service.wait_for_exit(Duration::from_secs(15)).await;

    assert!(status.success(), "{status:?}\n{}", service.log());
    let log = service.log();
    assert!(
        log.contains("SMS accepted by Sipgate after the response deadline"),
        "the send finished before exit:\n{log}"
    );
    assert!(log.contains("all SMS in flight finished"), "{log}");
    assert!(!log.contains(ALICE), "numbers are masked in logs:\n{log}");
    assert!(
        !log.contains(TOKEN),
        "the token never appears in logs:\n{log}"
    );
}

#[tokio::test]
async fn a_failing_send_is_logged_with_its_reason_and_without_secrets() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string(format!("bad token for {ALICE}")))
        .mount(&fake)
        .await;
    let mut service = Service::start(&fault_config(&fake.uri(), "")).await;

    assert_eq!(post(&service.url).await.unwrap(), 502);
    service.terminate();
    service.wait_for_exit(Duration::from_secs(15)).await;

    let log = service.log();
    assert!(log.contains("level=error"), "{log}");
    assert!(log.contains("reason=auth"), "{log}");
    assert!(log.contains("operator action needed"), "{log}");
    assert!(
        log.contains("message=sms route=warnings recipient=alice number=+49151******78 segments=1 outcome=failed reason=auth"),
        "{log}"
    );
    assert!(
        log.contains("sipgate_body=\"bad token for +49151******78\""),
        "{log}"
    );
    assert!(!log.contains(ALICE), "full number in the log:\n{log}");
    assert!(!log.contains(&ALICE[1..]), "full number in the log:\n{log}");
    assert!(!log.contains(TOKEN), "token in the log:\n{log}");
    assert!(
        !log.contains(&AUTHORIZATION[6..]),
        "encoded credentials in the log:\n{log}"
    );
}

#[tokio::test]
async fn label_values_cannot_forge_log_lines() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let mut service = Service::start(&fault_config(&fake.uri(), "")).await;
    let forged = "x\nts=2026-01-01T00:00:00Z level=error message=forged";
    let body = serde_json::json!({
        "receiver": forged, "status": "firing", "groupKey": forged,
        "alerts": [{"status": "firing", "labels": {"alertname": forged, "severity": "warning", "service": "api"}}]
    });
    let status = reqwest::Client::new()
        .post(format!("{}/alerts", service.url))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    service.terminate();
    service.wait_for_exit(Duration::from_secs(15)).await;

    let log = service.log();
    assert!(
        log.contains("message=forged"),
        "the value is logged, escaped:\n{log}"
    );
    assert!(
        log.contains(r#"group_key="x\nts=2026-01-01T00:00:00Z level=error message=forged""#),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            line.starts_with("ts=2026-11") || !line.starts_with("ts=2026-01"),
            "forged line:\n{log}"
        );
        assert_eq!(
            line.split(' ').nth(1),
            Some("level=info"),
            "forged line:\n{log}"
        );
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line_of_a_notification() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, fault_config(&fake.uri(), "")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = dir.path().join("log.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.format=json")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{url}/-/healthy")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = reqwest::Client::new()
        .post(format!("{url}/alerts"))
        .body(fixture("firing-diskfull.json"))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(response.status(), 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == request_id.as_str())
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        vec!["sms", "sms", "notification handled"],
        "{lines:?}"
    );
    assert_eq!(of_request[2]["group_key"], "{}:{alertname=\"DiskFull\"}");
    assert_eq!(of_request[2]["alerts"], 1);
    assert_eq!(of_request[2]["outcome"], "success");
    assert!(of_request[2]["duration_ms"].is_u64());
}

#[tokio::test]
async fn sighup_reloads_the_config_and_a_bad_one_is_refused() {
    let fake = slow_sipgate(Duration::ZERO).await;
    let yaml = fault_config(&fake.uri(), "");
    let mut service = Service::start(&yaml).await;
    let metrics = || async {
        reqwest::get(format!("{}/metrics", service.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let hangup = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };

    std::fs::write(&service.config, yaml.replace("to: [alice]", "to: [nobody]")).unwrap();
    hangup(service.child.id());
    let mut text = String::new();
    for _ in 0..100 {
        text = metrics().await;
        if text.contains("alertmanager_sipgate_config_last_reload_successful 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains("alertmanager_sipgate_config_last_reload_successful 0"),
        "{text}"
    );

    std::fs::write(&service.config, yaml.replace("to: [alice]", "to: [bob]")).unwrap();
    hangup(service.child.id());
    for _ in 0..100 {
        text = metrics().await;
        if text.contains("alertmanager_sipgate_config_last_reload_successful 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        text.contains("alertmanager_sipgate_config_last_reload_successful 1"),
        "{text}"
    );
    assert_eq!(post(&service.url).await.unwrap(), 200);
    assert_eq!(
        requests_per_recipient(&fake).await,
        [(BOB.to_string(), 1)].into()
    );

    service.terminate();
    service.wait_for_exit(Duration::from_secs(15)).await;
    let log = service.log();
    assert!(
        log.contains("config reload failed; keeping the running config"),
        "{log}"
    );
    assert!(log.contains("message=\"config reloaded\""), "{log}");
}
