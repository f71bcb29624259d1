//! The service in-process: the real server on a free loopback port, with its clock in the test's
//! hand, and the requests tests post to it.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use alertmanager_sipgate::app::AppState;
use alertmanager_sipgate::clock::ManualClock;
use alertmanager_sipgate::config::Config;
use alertmanager_sipgate::jobs::Runner;
use alertmanager_sipgate::metrics::Metrics;
use alertmanager_sipgate::startup::{self, Options};
use wiremock::MockServer;

use super::config::{SERVER_PASSWORD, SERVER_USER, config_yaml};

/// The service in-process, on the config given: its state, metrics and clock at the test's hand,
/// for tests that look inside or move time.
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
        let clock = Arc::new(ManualClock::default());
        clock.set(chrono::Utc::now());
        let options = Options {
            force_dry_run: false,
            clock: clock.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let service = startup::Service::build(config, options).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            service
                .http_server(listener, Duration::from_secs(5))
                .unwrap(),
        );
        // The background jobs are not spawned: tests run their ticks at the instants they pick.
        service.check_credentials();
        let jobs = tokio::sync::Mutex::new(service.jobs());
        let state = service.state;
        let metrics = state.metrics.clone();
        TestApp {
            url,
            config_path: path,
            state,
            metrics,
            http: reqwest::Client::new(),
            clock,
            jobs,
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

    /// Posts like Alertmanager does (`post_like_alertmanager`); the status of each attempt.
    pub async fn post_like_alertmanager(&self, body: &[u8], tries: usize) -> Vec<u16> {
        post_like_alertmanager(&self.http, &self.url, body, tries).await
    }

    /// `GET path`: its status and text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        get_text(&self.http, &self.url, path).await
    }

    /// Asks it to reload its config (`POST /-/reload`): its status and answer.
    pub async fn reload(&self) -> (u16, String) {
        post_reload(&self.http, &self.url).await
    }

    /// Posts `form` (url-encoded) to the acknowledgement page of `code`, as its form does.
    pub async fn post_ack_form(&self, code: &str, form: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/a/{code}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .unwrap()
    }

    /// `method path` with the credentials of `TestConfig::with_basic_auth`.
    pub async fn authorized(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.url))
            .basic_auth(SERVER_USER, Some(SERVER_PASSWORD))
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with the credentials of `TestConfig::with_basic_auth`: its status and text.
    pub async fn get_authorized(&self, path: &str) -> (u16, String) {
        get_authorized(&self.http, &self.url, path).await
    }

    /// Posts a notification with the credentials of `TestConfig::with_basic_auth`; its status
    /// and JSON answer.
    pub async fn post_alerts_authorized(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        post_alerts_authorized(&self.http, &self.url, body).await
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

/// Posts a notification to the service at `url`; its status and JSON answer.
pub async fn post_alerts(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    post_notification(http, url, "/alerts", body).await
}

/// Posts a notification to the service at `url` as Alertmanager does: again after every 5xx,
/// with a short pause, up to `tries` times. Returns the status of each attempt.
pub async fn post_like_alertmanager(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    tries: usize,
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..tries {
        let (status, _) = post_alerts(http, url, body.to_vec()).await;
        statuses.push(status);
        if status < 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    statuses
}

/// Posts a notification to the service at `url` with the credentials of
/// `TestConfig::with_basic_auth`; its status and JSON answer.
pub async fn post_alerts_authorized(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let request = http
        .post(format!("{url}/alerts"))
        .basic_auth(SERVER_USER, Some(SERVER_PASSWORD));
    send_notification(request, body).await
}

/// Posts a notification to `path` (`/alerts`, `/healthchecks`) of the service at `url`; its
/// status and JSON answer.
pub async fn post_notification(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    send_notification(http.post(format!("{url}{path}")), body).await
}

/// Sends `body` as a notification with `request`; its status and JSON answer.
async fn send_notification(
    request: reqwest::RequestBuilder,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let response = request
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

/// `GET path` of the service at `url`: its status and text.
pub(super) async fn get_text(http: &reqwest::Client, url: &str, path: &str) -> (u16, String) {
    let response = http.get(format!("{url}{path}")).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `GET path` of the service at `url` with the credentials of `TestConfig::with_basic_auth`: its
/// status and text.
pub(super) async fn get_authorized(http: &reqwest::Client, url: &str, path: &str) -> (u16, String) {
    let response = http
        .get(format!("{url}{path}"))
        .basic_auth(SERVER_USER, Some(SERVER_PASSWORD))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Asks the service at `url` to reload its config: its status and answer.
pub(super) async fn post_reload(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.post(format!("{url}/-/reload")).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The instant `text` (RFC 3339) names: for the app's `clock` and the ticks of its background
/// jobs.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}
