//! The one test harness: the real server on a free loopback port with a fake Sipgate (a real
//! HTTP server) behind it, a typed test config, the service's binary and Debian's programs as
//! child processes under one guard, and one way to wait for something (`eventually`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alertmanager_sipgate::app::{AppState, Live};
use alertmanager_sipgate::clock::ManualClock;
use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::delivery::Deliverer;
use alertmanager_sipgate::http;
use alertmanager_sipgate::jobs::Runner;
use alertmanager_sipgate::metrics::Metrics;
use alertmanager_sipgate::oncall::shifts::ShiftJob;
use alertmanager_sipgate::watchdog::WatchdogJob;
use serde::Serialize;
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const TOKEN_ID: &str = "token-AB12CD";
pub const TOKEN: &str = "00000000-1111-4222-8333-444444444444";
/// `Basic base64("token-AB12CD:00000000-1111-4222-8333-444444444444")`, computed outside the code.
pub const AUTHORIZATION: &str =
    "Basic dG9rZW4tQUIxMkNEOjAwMDAwMDAwLTExMTEtNDIyMi04MzMzLTQ0NDQ0NDQ0NDQ0NA==";
pub const ALICE: &str = "+4915228817386";
pub const BOB: &str = "+4915254599371";

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alertmanager-0.25")
        .join(name);
    std::fs::read(path).unwrap()
}

/// The service's config as the tests write it: typed, and serialised to YAML, so that a test
/// changes a field instead of editing YAML text.
#[derive(Debug, Clone, Serialize)]
pub struct TestConfig {
    pub sipgate: TestSipgate,
    /// A number, or `{number, quiet_hours}`.
    pub recipients: BTreeMap<String, Value>,
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub schedules: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub time_intervals: Vec<Value>,
    pub routes: Vec<TestRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<Value>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub delivery: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestSipgate {
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub sms_id: String,
    pub timeout: String,
    pub check_credentials: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestRoute {
    pub name: String,
    pub matchers: Vec<String>,
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_segments: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_quiet_hours: bool,
}

impl TestRoute {
    pub fn new(name: &str, matchers: &[&str], to: &[&str]) -> Self {
        TestRoute {
            name: name.to_string(),
            matchers: matchers.iter().map(ToString::to_string).collect(),
            to: to.iter().map(ToString::to_string).collect(),
            template: None,
            send_resolved: None,
            max_segments: None,
            active_time_intervals: Vec::new(),
            mute_time_intervals: Vec::new(),
            ignore_quiet_hours: false,
        }
    }
}

impl TestConfig {
    /// The phone book and routes the tests share; Sipgate is the fake at `api_url`. Critical
    /// alerts go to alice and bob (two segments), warnings of api/db to alice (compact, no
    /// resolved).
    pub fn new(api_url: &str) -> Self {
        TestConfig {
            sipgate: TestSipgate {
                api_url: format!("{api_url}/v2"),
                token_id: Some(TOKEN_ID.to_string()),
                token: Some(TOKEN.to_string()),
                sms_id: "s0".to_string(),
                timeout: "5s".to_string(),
                check_credentials: false,
            },
            recipients: BTreeMap::from([
                ("alice".to_string(), ALICE.into()),
                ("bob".to_string(), BOB.into()),
            ]),
            groups: BTreeMap::from([(
                "oncall".to_string(),
                vec!["alice".to_string(), "bob".to_string()],
            )]),
            schedules: BTreeMap::new(),
            time_intervals: Vec::new(),
            routes: vec![
                TestRoute {
                    max_segments: Some(2),
                    ..TestRoute::new("critical", &["severity=\"critical\""], &["oncall"])
                },
                TestRoute {
                    template: Some("compact".to_string()),
                    send_resolved: Some(false),
                    ..TestRoute::new(
                        "warnings",
                        &["severity=\"warning\"", "service=~\"api|db\""],
                        &["alice"],
                    )
                },
            ],
            templates: None,
            delivery: serde_json::Map::new(),
            server: None,
            state: None,
            watchdog: None,
        }
    }

    /// As `new`, with a 1 s response deadline, so that fault tests run in seconds.
    pub fn faults(api_url: &str) -> Self {
        TestConfig::new(api_url).delivery("response_deadline", "1s")
    }

    /// Sets one `delivery:` field.
    pub fn delivery(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.delivery.insert(field.to_string(), value.into());
        self
    }

    pub fn server(mut self, server: Value) -> Self {
        self.server = Some(server);
        self
    }

    /// The `state:` section, e.g. `{"redis": {"url": ...}}`.
    pub fn state(mut self, state: Value) -> Self {
        self.state = Some(state);
        self
    }

    /// The state on `redis`, shared by every service started on this config.
    pub fn on_redis(self, redis: &Redis) -> Self {
        self.on_redis_with_timeout(redis, "500ms")
    }

    /// As `on_redis`, with this `state.redis.timeout`.
    pub fn on_redis_with_timeout(self, redis: &Redis, timeout: &str) -> Self {
        self.state(serde_json::json!({"redis": {"url": redis.url(), "timeout": timeout}}))
    }

    /// The route named `name`, to change it.
    pub fn route(&mut self, name: &str) -> &mut TestRoute {
        self.routes
            .iter_mut()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route {name:?} in the test config"))
    }

    pub fn yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap()
    }
}

/// The shared config as YAML.
pub fn config_yaml(api_url: &str) -> String {
    TestConfig::new(api_url).yaml()
}

pub struct TestApp {
    pub url: String,
    pub config_path: std::path::PathBuf,
    pub state: Arc<AppState>,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    /// The service's calendar time (on call, time intervals, quiet hours, texts): now at the
    /// start, and only moved by the test.
    pub clock: Arc<ManualClock>,
    /// The background jobs of this replica, with what they remember; never run by themselves:
    /// tests run their ticks (`tick`).
    jobs: tokio::sync::Mutex<Runner>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start(yaml: &str) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, yaml).unwrap();
        let config = Config::load_with_env(&path, &|_| None).unwrap();
        let metrics = Metrics::new().unwrap();
        let store = alertmanager_sipgate::state::open(
            &config.state,
            Arc::new(alertmanager_sipgate::clock::SystemClock),
            &tokio::runtime::Handle::current(),
            metrics.clone(),
        )
        .unwrap();
        let deliverer = Deliverer::new(
            store,
            config.delivery.max_concurrency,
            config.delivery.max_pending,
            tokio::runtime::Handle::current(),
            metrics.clone(),
        );
        let live = Live::new(config, false).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let clock = Arc::new(ManualClock::default());
        clock.set(chrono::Utc::now());
        let state = Arc::new(AppState::new(
            live,
            deliverer,
            metrics.clone(),
            false,
            clock.clone(),
        ));
        let jobs = Runner::new(
            state.deliverer.clone(),
            metrics.clone(),
            state.clock.clone(),
        )
        .with(ShiftJob::default())
        .with(WatchdogJob::new(state.heartbeats.clone()));
        let server = http::build(state.clone(), listener, Duration::from_secs(5)).unwrap();
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
            clock,
            jobs: tokio::sync::Mutex::new(jobs),
            _dir: dir,
        }
    }

    pub async fn with_fake(fake: &MockServer) -> TestApp {
        TestApp::start(&config_yaml(&fake.uri())).await
    }

    /// Runs one tick of the background job named `job` at `now`, as the service's runner does
    /// (claimed in the state store); when that job looks again.
    pub async fn tick(
        &self,
        job: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        let live = self.state.current();
        let mut jobs = self.jobs.lock().await;
        jobs.tick(job, &live, now).await.expect("no such job")
    }

    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        post_alerts(&self.http, &self.url, body).await
    }

    /// Posts a Healthchecks.io webhook body to `/healthchecks`; its status and JSON answer.
    pub async fn post_healthchecks(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        post_notification(&self.http, &self.url, "/healthchecks", body).await
    }
}

/// Each SMS of a notification's answer as `recipient outcome [reason]`.
pub fn outcomes(answer: &serde_json::Value) -> Vec<String> {
    answer["sms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|sms| {
            let reason = sms["reason"]
                .as_str()
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            format!(
                "{} {}{reason}",
                sms["recipient"].as_str().unwrap(),
                sms["outcome"].as_str().unwrap()
            )
        })
        .collect()
}

/// An Alertmanager config in `dir` that sends every alert to the service at `url` a second
/// after it arrives, again after `group_interval`, and repeats it after `repeat_interval`.
pub fn quick_alertmanager_config(
    dir: &Path,
    url: &str,
    group_interval: &str,
    repeat_interval: &str,
) -> PathBuf {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sms\n  group_by: [alertname]\n  group_wait: 1s\n  \
             group_interval: {group_interval}\n  repeat_interval: {repeat_interval}\n\
             receivers:\n  - name: sms\n    webhook_configs:\n      - url: {url}/alerts\n        \
             send_resolved: true\n"
        ),
    )
    .unwrap();
    config
}

/// Posts a notification to the service at `url`; its status and JSON answer.
pub async fn post_alerts(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    post_notification(http, url, "/alerts", body).await
}

/// Posts a notification to `path` (`/alerts`, `/healthchecks`) of the service at `url`; its
/// status and JSON answer.
pub async fn post_notification(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let response = http
        .post(format!("{url}{path}"))
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

/// `firing-diskfull.json` with its fingerprint and instance made unique by `n`: a new alert
/// each time, as in a storm.
pub fn diskfull(n: usize) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("firing-diskfull.json")).unwrap();
    for alert in body["alerts"].as_array_mut().unwrap() {
        alert["fingerprint"] = format!("{n:016x}").into();
        alert["labels"]["instance"] = format!("db{n}:9100").into();
    }
    body["groupKey"] = format!("{{}}:{{alertname=\"DiskFull\",n=\"{n}\"}}").into();
    serde_json::to_vec(&body).unwrap()
}

/// `payload` (an Alertmanager notification) with NUL, BEL, ESC, DEL, a tab, CR LF and the C1
/// characters NEL (U+0085) and CSI (U+009B) in its first alert's alertname, instance and summary,
/// as exporters may put them there.
pub fn with_control_characters(payload: &[u8]) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let alert = &mut body["alerts"][0];
    alert["labels"]["alertname"] = "Disk\u{0}Full".into();
    alert["labels"]["instance"] = "db1\u{7}:9100".into();
    alert["annotations"]["summary"] =
        "Disk\u{1b}[31m on db1\u{85} is\u{9b} 95%\tfull\r\nnow\u{7f}".into();
    serde_json::to_vec(&body).unwrap()
}

/// The summary of `with_control_characters` as it is sent.
pub const SUMMARY_WITHOUT_CONTROL_CHARACTERS: &str = "Disk[31m on db1 is 95% full\nnow";

/// What the fake Sipgate received on `POST /v2/sessions/sms`, as (recipient, message) in order of
/// recipient, after checking method, path, headers and the exact body shape of every request.
pub async fn sent_sms(fake: &MockServer) -> Vec<(String, String)> {
    let mut sent: Vec<(String, String)> = fake
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        // The credential check's requests are the only GETs; the rest must be SMS.
        .filter(|r| r.method.as_str() != "GET")
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

/// The shared config with a 1 s response deadline, as YAML.
pub fn fault_config(api_url: &str) -> String {
    TestConfig::faults(api_url).yaml()
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

/// The one way tests make a fake Sipgate: a real HTTP server on loopback that accepts every SMS
/// (`POST /v2/sessions/sms` with the test token) at once, unless told otherwise.
pub struct FakeSipgate {
    answer: ResponseTemplate,
    first: Option<(u64, ResponseTemplate)>,
    credential_check: bool,
    login_page: bool,
}

/// Where a captive portal or a wrong `api_url` sends the client, and what it finds there.
pub const LOGIN_PATH: &str = "/login";
const LOGIN_PAGE: &str = "<html><body><form>Login</form></body></html>";

/// `302` to the login page.
pub fn redirect_to_login() -> ResponseTemplate {
    ResponseTemplate::new(302).insert_header("Location", LOGIN_PATH)
}

/// A login page that answers `200` to any method, as a captive portal does.
pub async fn mount_login_page(fake: &MockServer) {
    Mock::given(path(LOGIN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(LOGIN_PAGE, "text/html"))
        .mount(fake)
        .await;
}

/// How many requests the fake Sipgate has received at `path` so far.
pub async fn requests_to(fake: &MockServer, path: &str) -> usize {
    fake.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}

impl FakeSipgate {
    pub fn new() -> Self {
        FakeSipgate {
            answer: ResponseTemplate::new(204),
            first: None,
            credential_check: false,
            login_page: false,
        }
    }

    /// Every SMS is redirected (`302`) to a login page that answers `200`, as a captive portal
    /// or a wrong `api_url` behind a web server does.
    pub fn redirecting_to_login(mut self) -> Self {
        self.answer = redirect_to_login();
        self.login_page = true;
        self
    }

    /// Every SMS (after any `failing_first`) gets this answer.
    pub fn answering(mut self, answer: ResponseTemplate) -> Self {
        self.answer = answer;
        self
    }

    /// The first `times` SMS get `answer`.
    pub fn failing_first(mut self, times: u64, answer: ResponseTemplate) -> Self {
        self.first = Some((times, answer));
        self
    }

    /// Answers the credential check too: the token belongs to account w0, which has `s0`.
    pub fn with_credential_check(mut self) -> Self {
        self.credential_check = true;
        self
    }

    pub async fn start(self) -> MockServer {
        let fake = MockServer::start().await;
        let sms = || {
            Mock::given(method("POST"))
                .and(path("/v2/sessions/sms"))
                .and(header("authorization", AUTHORIZATION))
        };
        if let Some((times, answer)) = self.first
            && times > 0
        {
            sms()
                .respond_with(answer)
                .up_to_n_times(times)
                .with_priority(1)
                .mount(&fake)
                .await;
        }
        sms()
            .respond_with(self.answer)
            .with_priority(2)
            .mount(&fake)
            .await;
        if self.login_page {
            mount_login_page(&fake).await;
        }
        if self.credential_check {
            Mock::given(method("GET"))
                .and(path("/v2/authorization/userinfo"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({"sub": "w0"})),
                )
                .mount(&fake)
                .await;
            Mock::given(method("GET"))
                .and(path("/v2/w0/sms"))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(
                        serde_json::json!({"items": [{"id": "s0", "alias": "SMS"}]}),
                    ),
                )
                .mount(&fake)
                .await;
        }
        fake
    }
}

/// From now on, the next `times` credential checks at a fake made `with_credential_check` (all
/// when `None`) get `answer` on their first request, as when Sipgate fails during a reload.
pub async fn credential_check_answers(
    fake: &MockServer,
    times: Option<u64>,
    answer: ResponseTemplate,
) {
    let mock = Mock::given(method("GET"))
        .and(path("/v2/authorization/userinfo"))
        .respond_with(answer)
        .with_priority(1);
    match times {
        Some(times) => mock.up_to_n_times(times),
        None => mock,
    }
    .mount(fake)
    .await;
}

/// How many credential checks the fake Sipgate has received so far.
/// Where the service checks its Sipgate credentials (`GET`), apart from the SMS it sends.
pub const CREDENTIAL_CHECK_PATH: &str = "/v2/authorization/userinfo";

pub async fn credential_checks(fake: &MockServer) -> usize {
    requests_to(fake, CREDENTIAL_CHECK_PATH).await
}

/// Answers `status` (or `template`) to the first `times` SMS, then 204.
pub async fn failing_then_ok(
    status: u16,
    times: u64,
    template: Option<ResponseTemplate>,
) -> MockServer {
    FakeSipgate::new()
        .failing_first(
            times,
            template.unwrap_or_else(|| ResponseTemplate::new(status)),
        )
        .start()
        .await
}

/// For tests marked `#[ignore = "needs PROGRAM (apt-get install PACKAGE); run with: ..."]`: they
/// run only when asked for (`cargo test -- --include-ignored`, as CI does), and then a missing
/// program is a failure, never a silent pass.
pub fn require(program: &str, package: &str) {
    // `--version`, or `version` as openssl has it.
    let answers = |arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let found = answers("--version") || answers("version");
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

/// The log lines, in logfmt as the binary writes them, of the service code that runs on this
/// thread while it lives: for in-process tests (`TestApp`, a `#[tokio::test]` on one thread) that
/// assert what an operator reads.
pub struct CapturedLog {
    lines: Arc<std::sync::Mutex<Vec<u8>>>,
    _on_this_thread: tracing::subscriber::DefaultGuard,
}

impl CapturedLog {
    pub fn start() -> CapturedLog {
        use tracing_subscriber::prelude::*;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                "alertmanager_sipgate=info",
            ))
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
                    .with_writer(move || LogSink(sink.clone())),
            );
        CapturedLog {
            lines,
            _on_this_thread: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }
}

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        let child = &mut self.0;
        eventually(limit, "the process exits", || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asks `probe` every 20 ms until it has an answer, and returns that; fails the test with
/// `what` when there is none within `limit`. The one way tests wait for something to happen.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(answer) = probe().await {
            return answer;
        }
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `url` answers 200.
pub async fn wait_until_ok(url: &str, limit: Duration, what: &str) {
    eventually(limit, &format!("{what} answers 200 at {url}"), || async {
        let response = reqwest::get(url).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await
}

/// The service's metrics page at `url`, now.
pub async fn metrics(url: &str) -> String {
    metrics_as(url, None).await
}

/// As `metrics`, with these Basic credentials, for a service with `protect_metrics`.
pub async fn metrics_as(url: &str, basic: Option<(&str, &str)>) -> String {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "/metrics");
    response.text().await.unwrap()
}

/// The service's metrics page at `url` once `line` is on it.
pub async fn metrics_with(url: &str, line: &str) -> String {
    eventually(Duration::from_secs(10), line, || async {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains(line).then_some(text)
    })
    .await
}

/// Waits until the fake Sipgate has received `count` requests.
pub async fn requests_received(fake: &MockServer, count: usize) {
    eventually(
        Duration::from_secs(10),
        &format!("{count} requests at the fake Sipgate"),
        || async { (fake.received_requests().await?.len() >= count).then_some(()) },
    )
    .await
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
        Service::start_with_flags(yaml, &[]).await
    }

    /// As `start`, with these extra flags (e.g. `--log.format=json`).
    pub async fn start_with_flags(yaml: &str, args: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yaml).unwrap();
        let mut service = Service::start_with(&config, args, &[]).await;
        service._dir = Some(dir);
        service
    }

    /// Stops it as a service manager does (SIGTERM), and returns everything it logged.
    pub async fn stop_and_read_log(&mut self) -> String {
        self.child.terminate();
        self.child.wait_for_exit(Duration::from_secs(15)).await;
        self.log()
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
        Service::start_at(host, free_port(), config, args, env).await
    }

    /// As `start_on`, on a `port` chosen before (for peers configured before it starts).
    pub async fn start_at(
        host: &str,
        port: u16,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Service {
        let log = config.with_extension("log");
        let child = ChildGuard::spawn(&mut Service::command(host, port, config, args, env, &log));
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

    /// Runs the service on `config`, which it must refuse: how it exited, and what it wrote to
    /// standard error.
    pub async fn refusing(config: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
        let log = config.with_extension("log");
        let mut child = ChildGuard::spawn(&mut Service::command(
            "127.0.0.1",
            free_port(),
            config,
            args,
            &[],
            &log,
        ));
        let status = child.wait_for_exit(Duration::from_secs(10)).await;
        (status, std::fs::read_to_string(&log).unwrap())
    }

    /// The binary with these flags and environment variables (the Sipgate variables are
    /// otherwise removed), its standard error to `log`.
    fn command(
        host: &str,
        port: u16,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_alertmanager-sipgate"));
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={host}:{port}"))
            .args(args)
            .env_remove("SIPGATE_TOKEN")
            .env_remove("SIPGATE_TOKEN_ID")
            .env_remove("SIPGATE_API_URL")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        command
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Reloads its config file (`POST /-/reload`), which must succeed.
    pub async fn reload(&self) {
        let response = reqwest::Client::new()
            .post(format!("{}/-/reload", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    pub async fn post_alerts(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        post_alerts(&reqwest::Client::new(), &self.url, body).await
    }
}

/// Debian's `prometheus-alertmanager` on a loopback port, without clustering, logging at debug
/// level to a file.
pub struct Alertmanager {
    pub url: String,
    log: PathBuf,
    command: Vec<String>,
    child: Option<ChildGuard>,
}

pub const ALERTMANAGER: &str = "prometheus-alertmanager";

impl Alertmanager {
    /// Runs Alertmanager on `config`, with its data in `data`.
    pub async fn start(config: &Path, data: &Path) -> Alertmanager {
        Alertmanager::start_in_cluster(config, data, "", &[]).await
    }

    /// As `start`, as a member of a gossip cluster: listening for peers on `cluster` and
    /// joining `peers`, as an HA pair or trio runs.
    pub async fn start_in_cluster(
        config: &Path,
        data: &Path,
        cluster: &str,
        peers: &[&str],
    ) -> Alertmanager {
        require(ALERTMANAGER, "prometheus-alertmanager");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        std::fs::create_dir_all(data).unwrap();
        let mut command = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--cluster.listen-address={cluster}"),
        ];
        command.extend(peers.iter().map(|p| format!("--cluster.peer={p}")));
        command.extend([
            "--cluster.peer-timeout=2s".to_string(),
            "--cluster.gossip-interval=50ms".to_string(),
            "--cluster.pushpull-interval=1s".to_string(),
            format!("--web.external-url={url}"),
            "--log.level=debug".to_string(),
        ]);
        let mut am = Alertmanager {
            url,
            log: data.join("alertmanager.log"),
            command,
            child: None,
        };
        am.start_again().await;
        am
    }

    /// Starts it again after `kill`, with the same flags and port.
    pub async fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(ChildGuard::spawn(
            Command::new(ALERTMANAGER)
                .args(&self.command)
                .stdout(Stdio::null())
                .stderr(log),
        ));
        wait_until_ok(
            &format!("{}/-/ready", self.url),
            Duration::from_secs(15),
            "Alertmanager",
        )
        .await;
    }

    /// SIGKILL: Alertmanager is gone, as when its node dies.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// How often Alertmanager has flushed an alert group so far: once per group_interval, also
    /// when it has nothing new to send. Waiting for flushes waits for Alertmanager's own time.
    pub fn flushes(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("msg=flushing"))
            .count()
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

/// Debian's `redis-server` on a loopback port, in a folder of its own, without persistence: the
/// state store of replicas in the tests. Stopped and started again on the same port to test an
/// outage.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// What redis-cli needs to talk to it (TLS).
    cli_args: Vec<String>,
    child: Option<ChildGuard>,
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// A replica of the Redis on `master`.
    pub async fn replica_of(master: &Redis) -> Redis {
        Redis::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]).await
    }

    /// With these extra `redis-server` arguments (e.g. `--maxmemory`).
    pub async fn start_with(args: &[&str]) -> Redis {
        Redis::start_for_cli(args, &[]).await
    }

    /// One that takes only clients that give `password`.
    pub async fn start_with_password(password: &str) -> Redis {
        Redis::start_for_cli(
            &["--requirepass", password],
            &["-a", password, "--no-auth-warning"],
        )
        .await
    }

    async fn start_for_cli(args: &[&str], cli_args: &[&str]) -> Redis {
        require("redis-server", "redis-server");
        let port = free_port();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            args: ["--port", &port.to_string()]
                .iter()
                .chain(args)
                .map(ToString::to_string)
                .collect(),
            cli_args: cli_args.iter().map(ToString::to_string).collect(),
            child: None,
        };
        redis.start_again().await;
        redis
    }

    /// A Redis that speaks only TLS, with a certificate for `localhost` from a CA of its own
    /// (`ca_file`), made with openssl.
    pub async fn start_tls() -> Redis {
        require("redis-server", "redis-server");
        require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.path().join("san"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san",
        ]);
        let port = free_port();
        let file = |name: &str| dir.path().join(name).display().to_string();
        let mut redis = Redis {
            port,
            args: vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                file("server.pem"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            cli_args: vec!["--tls".into(), "--cacert".into(), file("ca.pem")],
            dir,
            child: None,
        };
        redis.start_again().await;
        redis
    }

    /// The CA that signed a TLS Redis's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again after `kill`, on the same port, empty.
    pub async fn start_again(&mut self) {
        let log = self.dir.path().join("redis.log");
        self.child = Some(ChildGuard::spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .args(&self.args)
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(Stdio::null()),
        ));
        eventually(
            Duration::from_secs(10),
            "redis-server answers PING",
            || async { (self.cli(&["PING"]) == "PONG").then_some(()) },
        )
        .await;
    }

    /// SIGKILL, as a crash or a lost node.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGSTOP: the connections stay open and nothing answers, as on a stalled host.
    pub fn pause(&self) {
        self.child.as_ref().unwrap().signal("STOP");
    }

    /// SIGCONT after `pause`: it answers what it was asked meanwhile.
    pub fn resume(&self) {
        self.child.as_ref().unwrap().signal("CONT");
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let cli_args: Vec<&str> = self.cli_args.iter().map(String::as_str).collect();
        redis_cli(self.port, &[cli_args.as_slice(), args].concat())
    }

    /// How often the server ran `command` (lower case) since it started: `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

/// `redis-cli -p PORT ARGS...`, its answer trimmed; empty when the server does not answer.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Debian's `redis-sentinel` watching `master` (quorum 1), on a loopback port.
pub struct Sentinel {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: ChildGuard,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl Sentinel {
    pub async fn start(master: &Redis) -> Sentinel {
        require("redis-sentinel", "redis-sentinel");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        // Sentinel rewrites its config file as the topology changes.
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                dir.path().display(),
                master.port
            ),
        )
        .unwrap();
        let child = ChildGuard::spawn(
            Command::new("redis-sentinel")
                .arg(&config)
                .stdout(std::fs::File::create(dir.path().join("sentinel.log")).unwrap())
                .stderr(Stdio::null()),
        );
        let sentinel = Sentinel {
            port,
            _dir: dir,
            _child: child,
        };
        sentinel.wait_for_master(master).await;
        sentinel
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until the sentinel names `master` as the master.
    pub async fn wait_for_master(&self, master: &Redis) {
        let expected = master.port;
        eventually(
            Duration::from_secs(30),
            &format!("the sentinel names 127.0.0.1:{expected} the master"),
            || {
                let known = self.master_port();
                async move { (known == Some(expected)).then_some(()) }
            },
        )
        .await;
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let answer = redis_cli(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }
}

/// Debian's `prometheus` on a loopback port with `config` (YAML) written to a folder of its own,
/// evaluating rules and sending alerts as fast as its flags allow.
pub struct Prometheus {
    pub url: String,
    _dir: tempfile::TempDir,
    _child: ChildGuard,
}

impl Prometheus {
    /// `files` are written beside the config (rule files it names).
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let port = free_port();
        let child = ChildGuard::spawn(
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--rules.alert.resend-delay=1s")
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap()),
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ok(
            &format!("{url}/-/ready"),
            Duration::from_secs(30),
            "Prometheus",
        )
        .await;
        Prometheus {
            url,
            _dir: dir,
            _child: child,
        }
    }
}

/// For tests marked `#[ignore = "needs root for mount (...); run with: ..."]`: fails, never passes silently,
/// when the tests do not run as root.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a tmpfs: run it as root (CI does)"
    );
}

/// A tmpfs of its own size on a folder of its own, unmounted when dropped: a disk that fills up
/// or turns read-only when a test says so. Needs root.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `4m`).
    pub fn mount(size: &str) -> Tmpfs {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let tmpfs = Tmpfs { dir };
        tmpfs.run_mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]);
        tmpfs
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Mounts it again with `options` (`ro`, `rw`), keeping what it holds.
    pub fn remount(&self, options: &str) {
        self.run_mount(&["-o", &format!("remount,{options}")]);
    }

    fn run_mount(&self, args: &[&str]) {
        let status = Command::new("mount")
            .args(args)
            .arg(self.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount {args:?} {} failed",
            self.path().display()
        );
    }

    /// Writes a file `name` until the tmpfs has no room left, and returns its path.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0xa5u8; 4096];
        loop {
            match file.write_all(&block).and_then(|()| file.flush()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => return path,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child still holding a file in it must not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
