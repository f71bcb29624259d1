//! Talking to the members of one Alertmanager cluster: each request to one member after the
//! other, from the one that answered last, until one answers; bounded in time and size.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;

use super::{AlertmanagerError, Failure, FailureCause};
use crate::config::{AlertmanagerAuth, AlertmanagerConfig};

/// A request, the same for every member; its `name` is what messages say.
pub(super) struct Request {
    pub(super) name: &'static str,
    method: Method,
    path: &'static str,
    segment: Option<String>,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    /// A 5xx that is nevertheless this request's answer, not a member's failure.
    answered_by: fn(StatusCode, &[u8]) -> bool,
}

impl Request {
    pub(super) fn new(method: Method, name: &'static str, path: &'static str) -> Self {
        Request {
            name,
            method,
            path,
            segment: None,
            query: Vec::new(),
            body: None,
            answered_by: |_, _| false,
        }
    }

    /// Appends one path segment, percent-encoded.
    pub(super) fn path_segment(mut self, segment: &str) -> Self {
        self.segment = Some(segment.to_string());
        self
    }

    pub(super) fn query(mut self, name: &'static str, value: String) -> Self {
        self.query.push((name, value));
        self
    }

    /// A JSON body.
    pub(super) fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    pub(super) fn answered_by(mut self, answered_by: fn(StatusCode, &[u8]) -> bool) -> Self {
        self.answered_by = answered_by;
        self
    }
}

/// What one member answered.
pub(super) struct Reply {
    /// `host:port` of the member.
    pub(super) host: String,
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

/// Answers larger than this are refused, not buffered: a list of every alert of a large
/// installation is a few MiB.
pub(super) const MAX_ANSWER: usize = 16 << 20;

#[derive(Clone)]
pub(super) struct Transport {
    http: reqwest::Client,
    members: Arc<[Member]>,
    /// The index of the member that answered last, where the next request starts.
    last: Arc<AtomicUsize>,
}

struct Member {
    url: String,
    /// `host:port`, as messages name it.
    host: String,
}

/// Why one member did not answer: the next is asked, or the request failed for good.
enum Attempt {
    NextMember(FailureCause),
    Final(AlertmanagerError),
}

impl Transport {
    pub(super) fn new(config: &AlertmanagerConfig) -> Result<Self, AlertmanagerError> {
        let members: Vec<Member> = config
            .urls
            .iter()
            .map(|url| {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| AlertmanagerError::Build(format!("alertmanager.urls: {e}")))?;
                let host = match (parsed.host_str(), parsed.port_or_known_default()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (Some(host), None) => host.to_string(),
                    (None, _) => {
                        return Err(AlertmanagerError::Build(
                            "alertmanager.urls: a URL without a host".to_string(),
                        ));
                    }
                };
                Ok(Member {
                    url: url.trim_end_matches('/').to_string(),
                    host,
                })
            })
            .collect::<Result<_, _>>()?;
        if members.is_empty() {
            return Err(AlertmanagerError::Build(
                "alertmanager.urls is empty".to_string(),
            ));
        }
        Ok(Transport {
            http: http_client(config)?,
            members: members.into(),
            last: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub(super) fn urls(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.url.as_str()).collect()
    }

    /// The first answer of a member, from the one that answered last on; a connect error, a
    /// timeout or a 5xx moves on to the next.
    pub(super) async fn exchange(&self, request: &Request) -> Result<Reply, AlertmanagerError> {
        let count = self.members.len();
        let first = self.last.load(Ordering::Relaxed) % count;
        let mut failures = Vec::new();
        for index in (first..count).chain(0..first) {
            let member = &self.members[index];
            match self.ask(member, request).await {
                Ok(reply) => {
                    self.last.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(Attempt::NextMember(cause)) => failures.push(Failure {
                    host: member.host.clone(),
                    cause,
                }),
                Err(Attempt::Final(error)) => return Err(error),
            }
        }
        Err(AlertmanagerError::Unavailable { failures })
    }

    async fn ask(&self, member: &Member, request: &Request) -> Result<Reply, Attempt> {
        let url = url(member, request).map_err(Attempt::Final)?;
        let mut builder = self.http.request(request.method.clone(), url);
        if let Some(body) = &request.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut response = builder.send().await.map_err(transport_failure)?;
        let status = response.status();
        let too_large = || {
            Attempt::Final(AlertmanagerError::TooLarge {
                host: member.host.clone(),
                request: request.name,
                limit: MAX_ANSWER,
            })
        };
        if response
            .content_length()
            .is_some_and(|length| length > MAX_ANSWER as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_failure)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_server_error() && !(request.answered_by)(status, &body) {
            return Err(Attempt::NextMember(FailureCause::Status(status.as_u16())));
        }
        Ok(Reply {
            host: member.host.clone(),
            status,
            body,
        })
    }
}

/// The member's URL with the request's path, segment and query.
fn url(member: &Member, request: &Request) -> Result<reqwest::Url, AlertmanagerError> {
    let mut url = reqwest::Url::parse(&format!("{}{}", member.url, request.path))
        .map_err(|e| AlertmanagerError::Build(format!("alertmanager.urls: {e}")))?;
    if let Some(segment) = &request.segment {
        url.path_segments_mut()
            .map_err(|()| {
                AlertmanagerError::Build("alertmanager.urls: not a base URL".to_string())
            })?
            .pop_if_empty()
            .push(segment);
    }
    if !request.query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(request.query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    Ok(url)
}

/// A timeout, or what kept the request from an answer: without the URL, whose query may carry
/// label values.
fn transport_failure(error: reqwest::Error) -> Attempt {
    if error.is_timeout() {
        return Attempt::NextMember(FailureCause::Timeout);
    }
    let error = error.without_url();
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    Attempt::NextMember(FailureCause::Unreachable(cause))
}

fn http_client(config: &AlertmanagerConfig) -> Result<reqwest::Client, AlertmanagerError> {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(auth) = &config.auth {
        headers.insert(AUTHORIZATION, authorization(auth)?);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .user_agent(concat!("alertmanager-sipgate/", env!("CARGO_PKG_VERSION")))
        // Alertmanager's API does not redirect; followed, a redirect could carry the
        // credentials elsewhere or turn a login page into an answer.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout);
    if let Some(ca) = &config.tls.ca {
        let certificates = reqwest::Certificate::from_pem_bundle(&ca.pem)
            .map_err(|e| AlertmanagerError::Build(format!("{}: {e}", ca.path.display())))?;
        // As Alertmanager's own ca_file: these CAs and no others.
        builder = builder.tls_certs_only(certificates);
    }
    builder
        .tls_danger_accept_invalid_certs(config.tls.insecure_skip_verify)
        .build()
        .map_err(|e| AlertmanagerError::Build(e.to_string()))
}

/// The `Authorization` header, marked sensitive so that no debug output shows it.
fn authorization(auth: &AlertmanagerAuth) -> Result<HeaderValue, AlertmanagerError> {
    let text = match auth {
        AlertmanagerAuth::Basic { username, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose_secret()))
        ),
        AlertmanagerAuth::Authorization { kind, credentials } => {
            format!("{kind} {}", credentials.expose_secret())
        }
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        AlertmanagerError::Build("the credentials cannot be sent in an HTTP header".to_string())
    })?;
    value.set_sensitive(true);
    Ok(value)
}
