//! Runs the real server on a free loopback port, with a fake Sipgate (a real HTTP server) behind it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmanager_sipgate::app::{AppState, Live};
use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::delivery::Deliverer;
use alertmanager_sipgate::metrics::Metrics;
use alertmanager_sipgate::server;
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
            Arc::new(alertmanager_sipgate::state::MemoryStore::default()),
            config.delivery.max_concurrency,
            config.delivery.max_pending,
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

/// For tests marked `#[ignore = "needs PROGRAM: apt-get install PACKAGE"]`: they run only when
/// asked for (`cargo test -- --include-ignored`, as CI does), and then a missing program is a
/// failure, never a silent pass.
pub fn require(program: &str, package: &str) {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is not installed: apt-get install {package} (.ci/run does)"
    );
}

/// A loopback port that was free a moment ago, for programs that take a port and not a socket.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Replaces the one place where `from` stands in `text`; a config edit that misses (or hits
/// twice) fails the test instead of silently testing another config.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must stand exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The shared secret the example configs read from `sms-password`, in the tests.
pub const EXAMPLE_SECRET: &str = "Zm9yLXRoZS1leGFtcGxlLXRlc3Q=";

/// A file of the repository's `examples/` folder.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `examples/config.yml` with its templates in a folder of its own, as an operator installs it,
/// with the shared secret in `sms-password` beside it. `edit` changes the parsed config; without
/// it the file is copied byte for byte.
pub fn example_service_dir(edit: Option<&dyn Fn(&mut yaml_serde::Value)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example("config.yml")).unwrap();
    let text = match edit {
        None => text,
        Some(edit) => {
            let mut config: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
            edit(&mut config);
            yaml_serde::to_string(&config).unwrap()
        }
    };
    std::fs::write(dir.path().join("config.yml"), text).unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    for entry in std::fs::read_dir(example("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.path().join("templates").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("sms-password"),
        format!("{EXAMPLE_SECRET}\n"),
    )
    .unwrap();
    dir
}

/// Every child process a test starts: killed and reaped when the test ends, also on a panic.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> ChildGuard {
        let program = command.get_program().to_string_lossy().into_owned();
        ChildGuard(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {program}: {e}")),
        )
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGTERM, as a service manager does.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    pub async fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "process did not exit in {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `url` answers 200.
pub async fn wait_until_ok(url: &str, limit: Duration, what: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{what} did not answer 200 at {url}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's binary (as `cargo test` builds it), run as operators run it, on loopback,
/// logging to a file.
pub struct Service {
    pub child: ChildGuard,
    pub url: String,
    pub config: PathBuf,
    pub log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Service {
    /// Writes `yaml` to a config file of its own and runs the service on it.
    pub async fn start(yaml: &str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let mut service = Service::start_with(&config, &[], &[]).await;
        service._dir = Some(dir);
        service
    }

    /// Runs the service on a config file that stays where it is, with these extra flags and
    /// environment variables (the Sipgate token variables are otherwise removed).
    pub async fn start_with(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Service {
        Service::start_on("127.0.0.1", config, args, env).await
    }

    /// As `start_with`, listening on `host` (e.g. `0.0.0.0`); tests still call it on loopback.
    pub async fn start_on(
        host: &str,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let port = free_port();
        let log = config.with_extension("log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"));
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={host}:{port}"))
            .args(args)
            .env_remove("SIPGATE_TOKEN")
            .env_remove("SIPGATE_TOKEN_ID")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = ChildGuard::spawn(&mut command);
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ok(
            &format!("{url}/-/healthy"),
            Duration::from_secs(10),
            "the service",
        )
        .await;
        Service {
            child,
            url,
            config: config.to_path_buf(),
            log,
            _dir: None,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// Debian's `prometheus-alertmanager` on a loopback port, without clustering.
pub struct Alertmanager {
    pub url: String,
    _child: ChildGuard,
}

pub const ALERTMANAGER: &str = "prometheus-alertmanager";

impl Alertmanager {
    /// Runs Alertmanager on `config`, with its data in `data`.
    pub async fn start(config: &Path, data: &Path) -> Alertmanager {
        require(ALERTMANAGER, "prometheus-alertmanager");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = ChildGuard::spawn(
            Command::new(ALERTMANAGER)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .arg(format!("--web.external-url={url}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_until_ok(
            &format!("{url}/-/ready"),
            Duration::from_secs(15),
            "Alertmanager",
        )
        .await;
        Alertmanager { url, _child: child }
    }

    /// Posts alerts to Alertmanager's API, as Prometheus does.
    pub async fn post_alerts(&self, alerts: serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(&alerts)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }
}
