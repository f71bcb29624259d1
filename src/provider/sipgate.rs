//! The Sipgate REST API client: one `POST /sessions/sms` per SMS, and what its answers mean.

use secrecy::ExposeSecret;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER,
};
use serde::{Deserialize, Serialize};

use futures_util::future::{BoxFuture, FutureExt};

use super::{CredentialCheck, SendError, SmsProvider};
use crate::config::{Credentials, SipgateConfig};
use crate::model::outcome::FailureReason;
use crate::model::phone::PhoneNumber;

/// How Sipgate is named in messages.
pub const NAME: &str = "Sipgate";

/// What Sipgate's HTTP status means for an SMS.
fn reason_for_status(status: u16) -> FailureReason {
    match status {
        401 => FailureReason::Auth,
        402 => FailureReason::Payment,
        403 => FailureReason::Forbidden,
        408 => FailureReason::Timeout,
        429 => FailureReason::RateLimited,
        300..=399 => FailureReason::Redirect,
        500.. => FailureReason::ServerError,
        _ => FailureReason::ClientError,
    }
}

/// What the operator has to do about a failure, in Sipgate's terms.
pub fn operator_hint(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::Auth => {
            "Sipgate rejected the credentials: check sipgate.token_id and the token (personal access token, not the account password)"
        }
        FailureReason::Payment => "the Sipgate account balance is too low: top it up",
        FailureReason::Forbidden => {
            "Sipgate refused the SMS extension: check sipgate.sms_id, that the SMS feature is booked, and that the token has the scope sessions:sms:write"
        }
        FailureReason::ClientError => {
            "Sipgate rejected the request: check sipgate.api_url (or SIPGATE_API_URL); the message may be empty or the number invalid"
        }
        FailureReason::Redirect => {
            "the address answered with a redirect, not as Sipgate's API does: check sipgate.api_url or SIPGATE_API_URL (https, ending in /v2) and any proxy or captive portal on the way"
        }
        FailureReason::ServerError => "Sipgate had a server error; the caller will retry",
        FailureReason::RateLimited => "Sipgate is rate limiting; the caller will retry",
        FailureReason::Timeout => {
            "no answer from Sipgate within sipgate.timeout; the caller will retry"
        }
        FailureReason::Network => {
            "cannot reach Sipgate: check sipgate.api_url (or SIPGATE_API_URL), DNS and outbound network; the caller will retry"
        }
        FailureReason::Overloaded => {
            "more SMS are waiting than delivery.max_pending allows; the caller will retry"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SmsRequest<'a> {
    sms_id: &'a str,
    recipient: &'a str,
    message: &'a str,
}

#[derive(Debug, Clone)]
pub struct SipgateClient {
    http: reqwest::Client,
    api_url: String,
    /// Parsed once: the client would otherwise parse the text for every SMS.
    sms_url: reqwest::Url,
    sms_id: String,
}

#[derive(Deserialize)]
struct Userinfo {
    sub: String,
}

#[derive(Deserialize)]
struct SmsExtensions {
    items: Vec<SmsExtension>,
}

#[derive(Deserialize)]
struct SmsExtension {
    id: String,
}

const BODY_EXCERPT: usize = 300;
/// At most this much of an error answer is read.
const BODY_READ_LIMIT: usize = 4096;
/// A longer `Retry-After` is taken as this; it ends the retries either way.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl SipgateClient {
    pub fn new(config: &SipgateConfig, credentials: &Credentials) -> Result<Self, ClientError> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.token_id,
            credentials.token.expose_secret()
        ));
        let mut authorization = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|e| ClientError::Build(format!("invalid token: {e}")))?;
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("alertmanager-sipgate/", env!("CARGO_PKG_VERSION")))
            // A redirect is never Sipgate's answer: followed, a login page's 200 would count as a
            // sent SMS. It is a failure that names api_url instead.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let sms_url = reqwest::Url::parse(&format!("{}/sessions/sms", config.api_url))
            .map_err(|e| ClientError::Build(format!("sipgate.api_url: {e}")))?;
        Ok(SipgateClient {
            http,
            api_url: config.api_url.clone(),
            sms_url,
            sms_id: config.sms_id.clone(),
        })
    }

    /// Sends one SMS now (no `sendAt`). Any 2xx is success: Sipgate answers 204 without a body.
    pub async fn send_sms(&self, to: &PhoneNumber, message: &str) -> Result<(), SendError> {
        let body = serde_json::to_vec(&SmsRequest {
            sms_id: &self.sms_id,
            recipient: to.e164(),
            message,
        })
        .map_err(|e| SendError::Network {
            provider: NAME,
            detail: format!("cannot encode request: {e}"),
        })?;
        let response = self
            .http
            .post(self.sms_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(classify_transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let location = redirect_target(&response);
        let body = excerpt(&read_start(response).await);
        let body = match location {
            Some(location) => format!("redirect{location}; {body}"),
            None => body,
        };
        let reason = reason_for_status(status.as_u16());
        Err(SendError::Rejected {
            provider: NAME,
            status: status.as_u16(),
            reason,
            hint: operator_hint(reason),
            retry_after,
            // Token (401), balance (402), extension or scope (403), wrong api_url (404). A
            // redirect (3xx) concerns the address, not this SMS: every SMS would get it, and
            // retrying cannot help until someone fixes api_url or the proxy. The hold-off keeps
            // us from sending the token to that address again meanwhile; the caller keeps the
            // notification (502) and /-/ready says why.
            account_wide: (401..=404).contains(&status.as_u16())
                || reason == FailureReason::Redirect,
            body,
        })
    }
}

impl SipgateClient {
    /// Asks Sipgate who the token belongs to (`GET /authorization/userinfo`), then whether that
    /// account has the configured SMS extension (`GET /{sub}/sms`). The answer is logged and
    /// shown by `/-/ready`, and carries what Sipgate said: numbers in it are masked, and it
    /// stays on one line.
    pub async fn verify_credentials(&self) -> CredentialCheck {
        self.ask_about_credentials()
            .await
            .map_text(|text| masked_line(&text))
    }

    async fn ask_about_credentials(&self) -> CredentialCheck {
        let userinfo = match self
            .get_json::<Userinfo>(&format!("{}/authorization/userinfo", self.api_url))
            .await
        {
            Ok(u) => u,
            Err(check) => return check,
        };
        let extensions = match self
            .get_json::<SmsExtensions>(&format!("{}/{}/sms", self.api_url, userinfo.sub))
            .await
        {
            Ok(e) => e,
            Err(CredentialCheck::Unverifiable(_)) => {
                return CredentialCheck::Unverifiable(
                    "the token may not list SMS extensions (scope sms:read), so sipgate.sms_id is unchecked; sending only needs sessions:sms:write".to_string(),
                );
            }
            Err(check) => return check,
        };
        if extensions.items.iter().any(|e| e.id == self.sms_id) {
            CredentialCheck::Valid
        } else {
            let known: Vec<&str> = extensions.items.iter().map(|e| e.id.as_str()).collect();
            CredentialCheck::Rejected(format!(
                "the token's Sipgate account has no SMS extension {:?} (sipgate.sms_id); it has: {}",
                self.sms_id,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, CredentialCheck> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| CredentialCheck::Unknown(classify_transport_error(e).to_string()))?;
        match response.status().as_u16() {
            200..=299 => response.json::<T>().await.map_err(|e| {
                CredentialCheck::Unknown(format!("unexpected answer from {url}: {e}"))
            }),
            status @ 300..=399 => Err(CredentialCheck::Rejected(format!(
                "{url} answered HTTP {status}, a redirect{}: check sipgate.api_url (or SIPGATE_API_URL) and any proxy on the way; Sipgate's API does not redirect",
                redirect_target(&response).unwrap_or_default()
            ))),
            401 => Err(CredentialCheck::Rejected(
                operator_hint(FailureReason::Auth).to_string(),
            )),
            403 => Err(CredentialCheck::Unverifiable(format!(
                "the token may not read {url}; sending only needs sessions:sms:write"
            ))),
            404 => Err(CredentialCheck::Rejected(format!(
                "{url} does not exist: check sipgate.api_url (or SIPGATE_API_URL)"
            ))),
            status => Err(CredentialCheck::Unknown(format!(
                "Sipgate answered HTTP {status} to {url}"
            ))),
        }
    }
}

fn classify_transport_error(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        SendError::Timeout { provider: NAME }
    } else {
        // The URL is the configured api_url, not a secret; keep the whole chain for diagnosis.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        SendError::Network {
            provider: NAME,
            // The chain may quote what the other end said.
            detail: masked_line(&message),
        }
    }
}

impl SmsProvider for SipgateClient {
    fn send<'a>(
        &'a self,
        to: &'a PhoneNumber,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        self.send_sms(to, text).boxed()
    }

    fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck> {
        self.verify_credentials().boxed()
    }
}

/// ` to LOCATION` for a redirect that names where it leads, bounded and on one line.
fn redirect_target(response: &reqwest::Response) -> Option<String> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?;
    Some(format!(
        " to {}",
        excerpt(&String::from_utf8_lossy(location.as_bytes()))
    ))
}

/// The first few KiB of a body, however much the server sends.
async fn read_start(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_READ_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(BODY_READ_LIMIT);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The start of something Sipgate (or whatever answered) sent, as plain text on one line, with
/// any phone number in it masked: error bodies are undocumented and may echo the recipient in any
/// form. Not escaped: the log format escapes what it writes, and `/-/ready` answers plain text.
fn excerpt(body: &str) -> String {
    let text = masked_line(body);
    match text.char_indices().nth(BODY_EXCERPT) {
        None => text,
        Some(_) => {
            let keep = text
                .char_indices()
                .nth(BODY_EXCERPT - "...".len())
                .map_or(text.len(), |(i, _)| i);
            format!("{}...", &text[..keep])
        }
    }
}

/// `text` on one line with its phone numbers masked. The line first, so that a number broken
/// across lines is masked as one.
fn masked_line(text: &str) -> String {
    crate::redact::phone_numbers(&one_line(text)).into_owned()
}

/// `text` on one line: each run of control characters (line breaks, tabs, escape sequences'
/// ESC, C1) becomes one space, and none is left at either end.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c.is_control() {
            in_run = true;
        } else {
            if in_run && !line.is_empty() {
                line.push(' ');
            }
            in_run = false;
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_bounded_reasons() {
        assert_eq!(reason_for_status(401), FailureReason::Auth);
        assert_eq!(reason_for_status(402), FailureReason::Payment);
        assert_eq!(reason_for_status(403), FailureReason::Forbidden);
        assert_eq!(reason_for_status(404), FailureReason::ClientError);
        assert_eq!(reason_for_status(415), FailureReason::ClientError);
        for redirect in [301, 302, 303, 307, 308] {
            assert_eq!(reason_for_status(redirect), FailureReason::Redirect);
        }
        assert_eq!(reason_for_status(408), FailureReason::Timeout);
        assert_eq!(reason_for_status(429), FailureReason::RateLimited);
        assert_eq!(reason_for_status(500), FailureReason::ServerError);
        assert_eq!(reason_for_status(503), FailureReason::ServerError);
        assert!(FailureReason::Auth.is_permanent());
        assert!(FailureReason::Redirect.is_permanent());
        assert!(!FailureReason::RateLimited.is_permanent());
        assert!(!FailureReason::ServerError.is_permanent());
    }

    #[test]
    fn request_body_has_exactly_the_three_fields_in_order() {
        let body = serde_json::to_string(&SmsRequest {
            sms_id: "s0",
            recipient: "+4915228817386",
            message: "a & \"b\"",
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"smsId":"s0","recipient":"+4915228817386","message":"a & \"b\""}"#
        );
    }

    /// The plain text: the log format escapes it, once.
    #[test]
    fn excerpts_are_plain_text_on_one_line_masked_and_bounded() {
        assert_eq!(
            excerpt("{\"to\":\"0151 12345678\"}\r\n"),
            r#"{"to":"01** ******78"}"#
        );
        assert_eq!(excerpt("a\nb"), "a b");
        assert_eq!(
            excerpt("\tinvalid\r\n\r\n  recipient\u{1b}[31m\u{85}\u{0}"),
            "invalid   recipient [31m"
        );
        assert_eq!(excerpt("Empfänger ungültig"), "Empfänger ungültig");
        // A number broken across lines is still one number.
        assert_eq!(excerpt("to 0152\r\n28817386"), "to 01** ******86");
        let long = excerpt(&"é".repeat(1000));
        assert_eq!(long.chars().count(), BODY_EXCERPT);
        assert!(long.ends_with("é..."), "{long}");
        assert_eq!(excerpt(&"é".repeat(BODY_EXCERPT)), "é".repeat(BODY_EXCERPT));
    }
}
