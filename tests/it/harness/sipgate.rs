//! The one fake Sipgate (a real HTTP server on loopback), and what it received.

use std::time::Duration;

use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::config::{ALICE, AUTHORIZATION, BOB};
use super::wait::eventually;

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

/// Where the service checks its Sipgate credentials (`GET`), apart from the SMS it sends.
pub const CREDENTIAL_CHECK_PATH: &str = "/v2/authorization/userinfo";

/// How many credential checks the fake Sipgate has received so far.
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

/// A page's text up to its acknowledgement code, and the code, which is random: checked to have
/// a code's shape (and to be the text's end).
pub fn split_at_ack_code(text: &str) -> (&str, &str) {
    let at = text
        .rfind("/a/")
        .unwrap_or_else(|| panic!("no acknowledgement link in {text:?}"))
        + "/a/".len();
    let (before, code) = text.split_at(at);
    assert!(
        alertmanager_sipgate::escalation::code::incident_of(code).is_some(),
        "not an acknowledgement code: {code:?}"
    );
    (before, code)
}

/// The texts the fake Sipgate took for `number`, in the order they came.
pub async fn texts_to(fake: &MockServer, number: &str) -> Vec<String> {
    fake.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .filter_map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            (body["recipient"] == number).then(|| body["message"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Waits until `number` got `count` texts; returns them.
pub async fn wait_for_texts(fake: &MockServer, number: &str, count: usize) -> Vec<String> {
    eventually(
        Duration::from_secs(40),
        &format!("{count} SMS to {number}"),
        || async {
            let texts = texts_to(fake, number).await;
            (texts.len() >= count).then_some(texts)
        },
    )
    .await
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

/// `n` requests for each of alice and bob, as `requests_per_recipient` counts them.
pub fn alice_and_bob(n: usize) -> std::collections::BTreeMap<String, usize> {
    [(ALICE.to_string(), n), (BOB.to_string(), n)].into()
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
