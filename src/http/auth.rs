//! Inbound authentication as Alertmanager's `http_config` sends it: HTTP Basic or a bearer token.

use base64::Engine;
use secrecy::ExposeSecret;

use std::time::Duration;

use crate::config::InboundAuth;
use crate::log_sampler::LogSampler;

/// Whether the `Authorization` header value carries credentials that `auth` accepts.
pub fn accepts(auth: &InboundAuth, header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let Some((user, password)) = &auth.basic else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
            return false;
        };
        let expected = format!("{user}:{}", password.expose_secret());
        constant_time_eq(&decoded, expected.as_bytes())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        auth.bearer.as_ref().is_some_and(|token| {
            constant_time_eq(value.as_bytes(), token.expose_secret().as_bytes())
        })
    } else {
        false
    }
}

/// The scheme a refused caller tried, for the log: bounded words, never the credentials. Takes
/// the raw header, which need not be text.
pub fn scheme_tried(header: Option<&[u8]>) -> &'static str {
    let Some(header) = header.map(<[u8]>::trim_ascii).filter(|h| !h.is_empty()) else {
        return "none";
    };
    let scheme = header.split(|b| *b == b' ').next().unwrap_or(header);
    if scheme.eq_ignore_ascii_case(b"basic") {
        "basic"
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        "bearer"
    } else {
        "other"
    }
}

/// Grafana's webhook signature: hex(HMAC-SHA256(secret, [timestamp ":"] body)), compared in
/// constant time.
pub fn grafana_signature_ok(
    secret: &str,
    timestamp: Option<&str>,
    body: &[u8],
    signature_hex: &str,
) -> bool {
    use hmac::{Hmac, Mac};
    let Some(signature) = decode_hex(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    if let Some(ts) = timestamp {
        mac.update(ts.as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

/// The `WWW-Authenticate` challenges to send with a 401, one per accepted scheme.
pub fn challenges(auth: &InboundAuth) -> Vec<&'static str> {
    let mut out = Vec::new();
    if auth.basic.is_some() {
        out.push(r#"Basic realm="alertmanager-sipgate", charset="UTF-8""#);
    }
    if auth.bearer.is_some() {
        out.push(r#"Bearer realm="alertmanager-sipgate""#);
    }
    out
}

/// Compares so that the time taken tells an attacker neither how much of a guess was right nor
/// how long the secret is: both sides are hashed to the same length first, then compared in
/// constant time.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

/// How often a flood of refused requests may write a log line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a request behind `server.auth` was for. Only a refused notification loses a page, so
/// each kind says what its refusal means and is logged on its own: a scraper with old
/// credentials must not crowd the line about a lost notification out of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// A webhook that goes through the pipeline (`/alerts`, `/healthchecks`).
    Notification,
    Reload,
    Metrics,
    OnCall,
    Incidents,
    StatusPage,
}

impl Guarded {
    /// The log line of a refusal: what was wrong, and what it means for the caller.
    pub fn refusal_message(self) -> &'static str {
        match self {
            // Alertmanager does not retry a 4xx: this line and requests_total{code="401"} are
            // how an operator learns that pages are being lost.
            Guarded::Notification => {
                "request refused: missing or wrong credentials; Alertmanager does not retry this, the notification is lost"
            }
            Guarded::Reload => {
                "request refused: missing or wrong credentials; the config was not reloaded"
            }
            Guarded::Metrics => {
                "request refused: missing or wrong credentials; the scrape gets no metrics"
            }
            Guarded::OnCall => {
                "request refused: missing or wrong credentials; the on-call query gets no answer"
            }
            Guarded::Incidents => {
                "request refused: missing or wrong credentials; the incidents query gets no answer"
            }
            Guarded::StatusPage => {
                "request refused: missing or wrong credentials; the status page is not shown"
            }
        }
    }
}

/// One log line per interval for each kind of refused request; requests_total counts them all.
#[derive(Debug)]
pub struct RefusalLog {
    notifications: LogSampler,
    reloads: LogSampler,
    metrics: LogSampler,
    oncall: LogSampler,
    incidents: LogSampler,
    status_page: LogSampler,
    pub(crate) grafana_signature: LogSampler,
}

impl RefusalLog {
    /// The sampler of requests of `kind` refused for their credentials.
    pub(crate) fn credentials(&self, kind: Guarded) -> &LogSampler {
        match kind {
            Guarded::Notification => &self.notifications,
            Guarded::Reload => &self.reloads,
            Guarded::Metrics => &self.metrics,
            Guarded::OnCall => &self.oncall,
            Guarded::Incidents => &self.incidents,
            Guarded::StatusPage => &self.status_page,
        }
    }
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog {
            notifications: LogSampler::new(REFUSAL_LOG_INTERVAL),
            reloads: LogSampler::new(REFUSAL_LOG_INTERVAL),
            metrics: LogSampler::new(REFUSAL_LOG_INTERVAL),
            oncall: LogSampler::new(REFUSAL_LOG_INTERVAL),
            incidents: LogSampler::new(REFUSAL_LOG_INTERVAL),
            status_page: LogSampler::new(REFUSAL_LOG_INTERVAL),
            grafana_signature: LogSampler::new(REFUSAL_LOG_INTERVAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn both() -> InboundAuth {
        InboundAuth {
            basic: Some(("alertmanager".into(), Secret::from("s3cret"))),
            bearer: Some(Secret::from("t0ken")),
            protect_metrics: false,
        }
    }

    #[test]
    fn accepts_the_right_basic_and_bearer_credentials() {
        let auth = both();
        // base64("alertmanager:s3cret"), as Alertmanager 0.25 sent it in the captured requests.
        assert!(accepts(&auth, Some("Basic YWxlcnRtYW5hZ2VyOnMzY3JldA==")));
        assert!(accepts(&auth, Some("basic YWxlcnRtYW5hZ2VyOnMzY3JldA==")));
        assert!(accepts(&auth, Some("Bearer t0ken")));
    }

    #[test]
    fn names_the_scheme_tried_and_nothing_else() {
        assert_eq!(scheme_tried(None), "none");
        assert_eq!(scheme_tried(Some(b"  ")), "none");
        assert_eq!(
            scheme_tried(Some(b"Basic YWxlcnRtYW5hZ2VyOnMzY3JldA==")),
            "basic"
        );
        assert_eq!(scheme_tried(Some(b"bearer t0ken")), "bearer");
        assert_eq!(scheme_tried(Some(b"Bearer \xff\xfe")), "bearer");
        assert_eq!(scheme_tried(Some(b"Digest username=x")), "other");
        assert_eq!(scheme_tried(Some(b"t0ken")), "other");
    }

    #[test]
    fn refuses_everything_else() {
        let auth = both();
        for header in [
            None,
            Some(""),
            Some("Basic"),
            Some("Basic !!!"),
            Some("Basic YWxlcnRtYW5hZ2VyOnMzY3JldA"),
            Some("Basic YWxlcnRtYW5hZ2VyOndyb25n"),
            Some("Bearer t0ke"),
            Some("Bearer t0ken2"),
            Some("Token t0ken"),
        ] {
            assert!(!accepts(&auth, header), "{header:?}");
        }
        let basic_only = InboundAuth {
            bearer: None,
            ..both()
        };
        assert!(!accepts(&basic_only, Some("Bearer t0ken")));
        assert_eq!(challenges(&basic_only).len(), 1);
        assert_eq!(challenges(&both()).len(), 2);
    }

    #[test]
    fn grafana_signatures() {
        // HMAC-SHA256("k", "body"), computed with `openssl dgst -sha256 -hmac k`.
        let plain = "c6d811ef3aeb02437cd423f1abe13209041864630bdc4e2c04def5c7b0031a23";
        assert!(grafana_signature_ok("k", None, b"body", plain));
        let good = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
            mac.update(b"1700000000:body");
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert!(grafana_signature_ok(
            "k",
            Some("1700000000"),
            b"body",
            &good
        ));
        assert!(grafana_signature_ok(
            "k",
            Some("1700000000"),
            b"body",
            &good.to_uppercase()
        ));
        assert!(!grafana_signature_ok(
            "k",
            Some("1700000001"),
            b"body",
            &good
        ));
        assert!(!grafana_signature_ok("k", None, b"body", &good));
        assert!(!grafana_signature_ok(
            "other",
            Some("1700000000"),
            b"body",
            &good
        ));
        assert!(!grafana_signature_ok(
            "k",
            Some("1700000000"),
            b"body",
            "zz"
        ));
        assert!(!grafana_signature_ok(
            "k",
            Some("1700000000"),
            b"body",
            "abc"
        ));
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
