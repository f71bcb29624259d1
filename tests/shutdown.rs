//! SIGTERM while an SMS is on its way: the SMS completes, then the process exits cleanly.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Service {
    child: Child,
    url: String,
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
    assert!(log.contains("SMS accepted by Sipgate"), "{log}");
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
        log.contains("SMS accepted by Sipgate"),
        "the send finished before exit:\n{log}"
    );
    assert!(log.contains("all SMS in flight finished"), "{log}");
    assert!(!log.contains(ALICE), "numbers are masked in logs:\n{log}");
    assert!(
        !log.contains(TOKEN),
        "the token never appears in logs:\n{log}"
    );
}
