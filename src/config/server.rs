//! The `server:` section: how large a request may be, who may call, and the check of Grafana's
//! signature.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::field::{count_in_range, parse_field, parse_size};
use super::problem::{Problem, problem};
use super::secret::{RawBasicAuth, Secret, optional_secret, secret_value};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_body_size: usize,
    /// Alerts kept per notification; the rest show as `+N more`.
    pub max_alerts: usize,
    /// Credentials callers must present on `/alerts`, `/healthchecks`, `/api/v1/oncall`,
    /// `/-/reload` and, if asked for, `/metrics`; none when absent.
    pub auth: Option<InboundAuth>,
    /// When set, Grafana notifications must carry a valid `X-Grafana-Alerting-Signature`.
    pub grafana_hmac: Option<GrafanaHmac>,
}

#[derive(Debug, Clone)]
pub struct GrafanaHmac {
    pub secret: Secret,
    /// The header in which Grafana sends the timestamp that is part of the signed text, if set
    /// in Grafana's contact point.
    pub timestamp_header: Option<String>,
}

/// What Alertmanager's `http_config` can send: HTTP Basic, a bearer token, or either.
#[derive(Debug, Clone)]
pub struct InboundAuth {
    pub basic: Option<(String, Secret)>,
    pub bearer: Option<Secret>,
    /// `/metrics` needs the credentials too: it names who is on call. Off by default, so that
    /// existing scrapes keep working; the health endpoints stay open for probes either way.
    pub protect_metrics: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    max_body_size: Option<String>,
    max_alerts: Option<usize>,
    auth: Option<RawAuth>,
    grafana_hmac_secret: Option<String>,
    grafana_hmac_secret_file: Option<PathBuf>,
    grafana_hmac_timestamp_header: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    basic: Option<RawBasicAuth>,
    bearer: Option<RawBearerAuth>,
    #[serde(default)]
    protect_metrics: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBearerAuth {
    token: Option<String>,
    token_file: Option<PathBuf>,
}

pub(super) fn server_config(
    raw: RawServer,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> ServerConfig {
    let max_body_size = parse_field(
        raw.max_body_size.as_deref(),
        parse_size,
        1 << 20,
        "server.max_body_size",
        problems,
    );
    let auth = raw.auth.map(|auth| {
        if auth.basic.is_none() && auth.bearer.is_none() {
            problem(problems, "server.auth", "set basic, bearer or both");
        }
        InboundAuth {
            basic: auth.basic.and_then(|b| {
                let password = secret_value(
                    b.password,
                    b.password_file,
                    base,
                    "server.auth.basic.password",
                    problems,
                )?;
                if b.username.is_empty() || b.username.contains(':') {
                    problem(
                        problems,
                        "server.auth.basic.username",
                        "must be non-empty and must not contain ':'",
                    );
                }
                Some((b.username, password))
            }),
            bearer: auth.bearer.and_then(|b| {
                secret_value(
                    b.token,
                    b.token_file,
                    base,
                    "server.auth.bearer.token",
                    problems,
                )
            }),
            protect_metrics: auth.protect_metrics,
        }
    });
    let max_alerts = count_in_range(
        raw.max_alerts.unwrap_or(1000),
        100_000,
        "server.max_alerts",
        problems,
    );
    if raw.grafana_hmac_timestamp_header.is_some()
        && raw.grafana_hmac_secret.is_none()
        && raw.grafana_hmac_secret_file.is_none()
    {
        problem(
            problems,
            "server.grafana_hmac_timestamp_header",
            "needs server.grafana_hmac_secret or grafana_hmac_secret_file",
        );
    }
    let grafana_hmac = optional_secret(
        None,
        raw.grafana_hmac_secret,
        raw.grafana_hmac_secret_file,
        base,
        "server.grafana_hmac_secret",
        problems,
    )
    .map(|secret| GrafanaHmac {
        secret,
        timestamp_header: raw.grafana_hmac_timestamp_header,
    });
    ServerConfig {
        max_body_size,
        max_alerts,
        auth,
        grafana_hmac,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{PAGES_ALICE, fields, load};

    #[test]
    fn metrics_are_protected_only_when_asked_for_and_only_with_credentials() {
        let server = |auth: &str| format!("server: {{auth: {auth}}}\n{PAGES_ALICE}");
        let open = load(&server("{bearer: {token: t0ken}}")).unwrap();
        assert!(!open.server.auth.unwrap().protect_metrics);
        let protected = load(&server("{bearer: {token: t0ken}, protect_metrics: true}")).unwrap();
        assert!(protected.server.auth.unwrap().protect_metrics);
        assert_eq!(fields(&server("{protect_metrics: true}")), ["server.auth"]);
        assert_eq!(
            fields(&server(
                "{bearer: {token: t0ken}, protect_metrics: yes please}"
            )),
            ["server.auth.protect_metrics"]
        );
    }
}
