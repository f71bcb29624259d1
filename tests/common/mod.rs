//! Runs the real server on a free loopback port, with a fake Sipgate (a real HTTP server) behind it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::delivery::Deliverer;
use alertmanager_sipgate::metrics::Metrics;
use alertmanager_sipgate::server::{self, AppState, Live};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN_ID: &str = "token-AB12CD";
pub const TOKEN: &str = "00000000-1111-4222-8333-444444444444";
/// `Basic base64("token-AB12CD:00000000-1111-4222-8333-444444444444")`, computed outside the code.
pub const AUTHORIZATION: &str =
    "Basic dG9rZW4tQUIxMkNEOjAwMDAwMDAwLTExMTEtNDIyMi04MzMzLTQ0NDQ0NDQ0NDQ0NA==";
pub const ALICE: &str = "+4915112345678";
pub const BOB: &str = "+4917098765432";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alertmanager-0.25")
        .join(name);
    std::fs::read(path).unwrap()
}

/// A config with the phone book and routes the tests share; `sipgate` is pointed at the fake.
pub fn config_yaml(api_url: &str) -> String {
    format!(
        r#"
sipgate:
  api_url: {api_url}/v2
  token_id: {TOKEN_ID}
  token: {TOKEN}
  sms_id: s0
  timeout: 5s
  check_credentials: false
recipients:
  alice: "{ALICE}"
  bob: "{BOB}"
groups:
  oncall: [alice, bob]
routes:
  - name: critical
    matchers: ['severity="critical"']
    to: [oncall]
    max_segments: 2
  - name: warnings
    matchers: ['severity="warning"', 'service=~"api|db"']
    to: [alice]
    template: compact
    send_resolved: false
"#
    )
}

pub struct TestApp {
    pub url: String,
    pub config_path: std::path::PathBuf,
    pub state: Arc<AppState>,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start(yaml: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        let config = Config::load_with_env(&path, &|_| None).unwrap();
        let metrics = Metrics::new().unwrap();
        let deliverer = Deliverer::new(
            config.delivery.max_concurrency,
            config.delivery.max_pending,
            alertmanager_sipgate::ledger::DEFAULT_CAPACITY,
            tokio::runtime::Handle::current(),
            metrics.clone(),
        );
        let live = Live::new(config, false).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(AppState::new(live, deliverer, metrics.clone(), false));
        let server = server::build(state.clone(), listener, Duration::from_secs(5)).unwrap();
        tokio::spawn(server);
        tokio::spawn(alertmanager_sipgate::health::watch_credentials(
            state.clone(),
            state.current(),
        ));
        TestApp {
            url,
            config_path: path,
            state,
            metrics,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn with_fake(fake: &MockServer) -> TestApp {
        TestApp::start(&config_yaml(&fake.uri())).await
    }

    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("{}/alerts", self.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, json)
    }
}

/// What the fake Sipgate received on `POST /v2/sessions/sms`, as (recipient, message) in order of
/// recipient, after checking method, path, headers and the exact body shape of every request.
pub async fn sent_sms(fake: &MockServer) -> Vec<(String, String)> {
    let mut sent: Vec<(String, String)> = fake
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert_eq!(r.method.as_str(), "POST");
            assert_eq!(r.url.path(), "/v2/sessions/sms");
            assert_eq!(r.headers["authorization"], AUTHORIZATION);
            assert_eq!(r.headers["content-type"], "application/json");
            assert_eq!(r.headers["accept"], "application/json");
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let recipient = body["recipient"].as_str().unwrap().to_string();
            let message = body["message"].as_str().unwrap().to_string();
            // The body is exactly these three fields in this order, and no sendAt.
            let expected = format!(
                r#"{{"smsId":"s0","recipient":{},"message":{}}}"#,
                serde_json::to_string(&recipient).unwrap(),
                serde_json::to_string(&message).unwrap()
            );
            assert_eq!(String::from_utf8(r.body.clone()).unwrap(), expected);
            (recipient, message)
        })
        .collect();
    sent.sort();
    sent
}

/// The shared config with a short response deadline, so that fault tests run in seconds, plus
/// extra `delivery:` settings (indented by two spaces).
pub fn fault_config(api_url: &str, delivery: &str) -> String {
    format!(
        "{}delivery:\n  response_deadline: 1s\n{delivery}",
        config_yaml(api_url)
    )
}

impl TestApp {
    /// Posts like Alertmanager does: again after every 5xx, with a short pause, up to `tries`.
    /// Returns the status of each attempt.
    pub async fn post_like_alertmanager(&self, body: &[u8], tries: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for _ in 0..tries {
            let (status, _) = self.post_alerts(body.to_vec()).await;
            statuses.push(status);
            if status < 500 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        statuses
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// How many requests the fake received for each recipient number.
pub async fn requests_per_recipient(
    fake: &MockServer,
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for r in fake.received_requests().await.unwrap() {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        *counts
            .entry(body["recipient"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

/// Answers `status` to the first `times` requests, then 204.
pub async fn failing_then_ok(
    status: u16,
    times: u64,
    template: Option<ResponseTemplate>,
) -> MockServer {
    let fake = MockServer::start().await;
    if times > 0 {
        Mock::given(method("POST"))
            .respond_with(template.unwrap_or_else(|| ResponseTemplate::new(status)))
            .up_to_n_times(times)
            .with_priority(1)
            .mount(&fake)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&fake)
        .await;
    fake
}

/// Whether a program from Debian's packages is installed. CI installs them, so there a missing
/// one is a failure; elsewhere the test says why it did not run.
pub fn installed(program: &str, package: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed; .ci/run installs it with apt-get"
        );
        eprintln!("skipped: {program} not installed (apt-get install {package})");
    }
    found
}
