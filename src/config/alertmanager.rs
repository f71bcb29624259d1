//! The `alertmanager:` section: the Alertmanagers whose API v2 the service asks about alerts and
//! silences (acknowledgements, resolution), with the credentials and TLS that Alertmanager's own
//! `http_config` would use.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::field::{base_url, duration_at_most};
use super::problem::{Problem, problem};
use super::secret::{RawBasicAuth, Secret, secret_value};

#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Members of one cluster (they share silences by gossip), each an absolute http(s) URL
    /// without a trailing slash; asked in turn until one answers.
    pub urls: Vec<String>,
    /// The longest one request may take, answer included.
    pub timeout: Duration,
    /// How long an incident's alerts, once seen in Alertmanager, must be missing from it before
    /// they count as resolved: longer than Prometheus takes to send them again to an
    /// Alertmanager that restarted (which keeps no alerts), so that a restart is no resolution.
    pub resolved_after: Duration,
    pub auth: Option<AlertmanagerAuth>,
    pub tls: AlertmanagerTls,
}

/// How the service proves itself to Alertmanager (or the proxy in front of it).
#[derive(Debug, Clone)]
pub enum AlertmanagerAuth {
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: <kind> <credentials>`, `Bearer` unless the config says otherwise.
    Authorization {
        kind: String,
        credentials: Secret,
    },
}

#[derive(Debug, Clone, Default)]
pub struct AlertmanagerTls {
    /// The only CAs trusted for Alertmanager's certificate, as with Alertmanager's `ca_file`.
    pub ca: Option<CaFile>,
    pub insecure_skip_verify: bool,
}

/// A CA file, read and checked with the config so that a wrong path fails at start.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile").field("path", &self.path).finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlertmanager {
    #[serde(default)]
    urls: Vec<String>,
    timeout: Option<String>,
    resolved_after: Option<String>,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    tls_config: Option<RawTls>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(rename = "type")]
    kind: Option<String>,
    credentials: Option<String>,
    credentials_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

pub(super) fn alertmanager_config(
    raw: RawAlertmanager,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> AlertmanagerConfig {
    let urls = urls(raw.urls, problems);
    let timeout = duration_at_most(
        raw.timeout.as_deref(),
        Duration::from_secs(10),
        Duration::from_secs(300),
        "alertmanager.timeout",
        problems,
    );
    // Prometheus sends firing alerts again every minute (--rules.alert.resend-delay).
    let resolved_after = duration_at_most(
        raw.resolved_after.as_deref(),
        Duration::from_secs(180),
        Duration::from_secs(86_400),
        "alertmanager.resolved_after",
        problems,
    );
    if raw.basic_auth.is_some() && raw.authorization.is_some() {
        problem(
            problems,
            "alertmanager.basic_auth",
            "set basic_auth or authorization, not both (alertmanager.authorization is set too)",
        );
    }
    let basic = raw.basic_auth.and_then(|b| basic_auth(b, base, problems));
    let authorization = raw
        .authorization
        .and_then(|a| authorization(a, base, problems));
    let tls = raw
        .tls_config
        .map(|t| AlertmanagerTls {
            ca: t
                .ca_file
                .and_then(|path| ca_file(&base.join(path), problems)),
            insecure_skip_verify: t.insecure_skip_verify,
        })
        .unwrap_or_default();
    AlertmanagerConfig {
        urls,
        timeout,
        resolved_after,
        auth: basic.or(authorization),
        tls,
    }
}

/// At least one, each a base URL, none twice.
fn urls(written: Vec<String>, problems: &mut Vec<Problem>) -> Vec<String> {
    if written.is_empty() {
        problem(
            problems,
            "alertmanager.urls",
            "missing: at least one, e.g. urls: [http://alertmanager:9093]",
        );
    }
    let mut urls: Vec<String> = Vec::with_capacity(written.len());
    for (i, url) in written.iter().enumerate() {
        let field = format!("alertmanager.urls[{i}]");
        match base_url(
            url,
            "they go in alertmanager.basic_auth or alertmanager.authorization",
        ) {
            Ok(url) if urls.contains(&url) => {
                problem(problems, field, format!("{url:?} is listed twice"));
            }
            Ok(url) => urls.push(url),
            Err(message) => problem(problems, field, message),
        }
    }
    urls
}

fn basic_auth(
    raw: RawBasicAuth,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<AlertmanagerAuth> {
    if raw.username.is_empty() || raw.username.contains(':') {
        problem(
            problems,
            "alertmanager.basic_auth.username",
            "must be non-empty and must not contain ':'",
        );
    }
    let password = secret_value(
        raw.password,
        raw.password_file,
        base,
        "alertmanager.basic_auth.password",
        problems,
    )?;
    Some(AlertmanagerAuth::Basic {
        username: raw.username,
        password,
    })
}

fn authorization(
    raw: RawAuthorization,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<AlertmanagerAuth> {
    let kind = raw.kind.unwrap_or_else(|| "Bearer".to_string());
    let is_token = !kind.is_empty()
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !is_token {
        problem(
            problems,
            "alertmanager.authorization.type",
            "must be one word of letters, digits, '-' or '_', such as Bearer",
        );
    } else if kind.eq_ignore_ascii_case("basic") {
        // As Prometheus' http_config refuses it: basic_auth encodes the pair as Basic needs.
        problem(
            problems,
            "alertmanager.authorization.type",
            "must not be Basic: use alertmanager.basic_auth",
        );
    }
    let credentials = secret_value(
        raw.credentials,
        raw.credentials_file,
        base,
        "alertmanager.authorization.credentials",
        problems,
    )?;
    // It goes into a header as it is; not echoed, it is a secret.
    if credentials
        .expose_secret()
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        problem(
            problems,
            "alertmanager.authorization.credentials",
            "must not contain spaces or control characters",
        );
    }
    Some(AlertmanagerAuth::Authorization { kind, credentials })
}

/// The file's certificates, checked now: a typo in the path must not wait for the first
/// acknowledgement to show.
fn ca_file(path: &Path, problems: &mut Vec<Problem>) -> Option<CaFile> {
    const FIELD: &str = "alertmanager.tls_config.ca_file";
    let pem = std::fs::read(path)
        .map_err(|e| {
            problem(
                problems,
                FIELD,
                format!("cannot read {}: {e}", path.display()),
            )
        })
        .ok()?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Some(CaFile {
            path: path.to_path_buf(),
            pem,
        }),
        _ => {
            problem(
                problems,
                FIELD,
                format!("{} holds no PEM certificate", path.display()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::Config;
    use crate::config::tests::{PAGES_ALICE, load, no_env, problems};

    fn section(yaml: &str) -> String {
        format!("alertmanager: {yaml}\n{PAGES_ALICE}")
    }

    fn config(yaml: &str) -> AlertmanagerConfig {
        load(&section(yaml)).unwrap().alertmanager.unwrap()
    }

    #[test]
    fn no_section_is_no_alertmanager() {
        assert!(load(PAGES_ALICE).unwrap().alertmanager.is_none());
    }

    #[test]
    fn urls_are_normalised_and_the_timeout_defaults_to_ten_seconds() {
        let c =
            config("{urls: [\"http://alertmanager-0:9093/\", \" https://am.example/prefix// \"]}");
        assert_eq!(
            c.urls,
            ["http://alertmanager-0:9093", "https://am.example/prefix"]
        );
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.resolved_after, Duration::from_secs(180));
        assert!(c.auth.is_none());
        assert!(c.tls.ca.is_none());
        assert!(!c.tls.insecure_skip_verify);
        assert_eq!(
            config("{urls: [\"http://am:9093\"], timeout: 250ms}").timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn basic_auth_and_authorization_read_their_secrets_from_the_config_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am-password"), "pass-from-file\n").unwrap();
        std::fs::write(dir.path().join("am-token"), "token-from-file\n").unwrap();
        let from_dir = |yaml: &str| {
            Config::from_yaml(&section(yaml), Path::new("x.yml"), dir.path(), &no_env)
                .unwrap()
                .alertmanager
                .unwrap()
        };
        let basic = from_dir(
            "{urls: [\"http://am:9093\"], basic_auth: {username: sms, password_file: am-password}}",
        );
        match basic.auth {
            Some(AlertmanagerAuth::Basic { username, password }) => {
                assert_eq!(username, "sms");
                assert_eq!(password.expose_secret(), "pass-from-file");
            }
            other => panic!("{other:?}"),
        }
        let bearer =
            from_dir("{urls: [\"http://am:9093\"], authorization: {credentials_file: am-token}}");
        match bearer.auth {
            Some(AlertmanagerAuth::Authorization { kind, credentials }) => {
                assert_eq!(kind, "Bearer");
                assert_eq!(credentials.expose_secret(), "token-from-file");
            }
            other => panic!("{other:?}"),
        }
        let custom = config(
            "{urls: [\"http://am:9093\"], authorization: {type: Token, credentials: t0k3n}}",
        );
        match custom.auth {
            Some(AlertmanagerAuth::Authorization { kind, credentials }) => {
                assert_eq!(kind, "Token");
                assert_eq!(credentials.expose_secret(), "t0k3n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let basic = config(
            "{urls: [\"http://am:9093\"], basic_auth: {username: sms, password: pa55-secret}}",
        );
        let bearer =
            config("{urls: [\"http://am:9093\"], authorization: {credentials: t0k3n-secret}}");
        for shown in [format!("{basic:?}"), format!("{bearer:?}")] {
            assert!(!shown.contains("secret"), "{shown}");
        }
    }

    #[test]
    fn the_ca_file_is_read_and_checked_with_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), TEST_CA).unwrap();
        std::fs::write(dir.path().join("not-a-ca.pem"), "hello\n").unwrap();
        let load_in_dir =
            |yaml: &str| Config::from_yaml(&section(yaml), Path::new("x.yml"), dir.path(), &no_env);
        let c = load_in_dir("{urls: [\"https://am:9093\"], tls_config: {ca_file: ca.pem, insecure_skip_verify: false}}")
            .unwrap()
            .alertmanager
            .unwrap();
        let ca = c.tls.ca.unwrap();
        assert_eq!(ca.path, dir.path().join("ca.pem"));
        assert_eq!(ca.pem, TEST_CA.as_bytes());
        let refused = |yaml: &str| -> Vec<String> {
            load_in_dir(yaml)
                .unwrap_err()
                .into_iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect()
        };
        let not_a_ca = dir.path().join("not-a-ca.pem");
        assert_eq!(
            refused("{urls: [\"https://am:9093\"], tls_config: {ca_file: not-a-ca.pem}}"),
            [format!(
                "alertmanager.tls_config.ca_file: {} holds no PEM certificate",
                not_a_ca.display()
            )]
        );
        let missing = refused("{urls: [\"https://am:9093\"], tls_config: {ca_file: nope.pem}}");
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0].starts_with(&format!(
                "alertmanager.tls_config.ca_file: cannot read {}",
                dir.path().join("nope.pem").display()
            )),
            "{missing:?}"
        );
        assert!(
            config("{urls: [\"https://am:9093\"], tls_config: {insecure_skip_verify: true}}")
                .tls
                .insecure_skip_verify
        );
    }

    #[test]
    fn each_problem_names_its_field() {
        for (yaml, expected) in [
            (
                "{}",
                "alertmanager.urls: missing: at least one, e.g. urls: [http://alertmanager:9093]",
            ),
            (
                "{urls: []}",
                "alertmanager.urls: missing: at least one, e.g. urls: [http://alertmanager:9093]",
            ),
            (
                "{urls: [\"http://am:9093\", \"alertmanager-1:9093\"]}",
                "alertmanager.urls[1]: must be an http:// or https:// URL, got \"alertmanager-1:9093\"",
            ),
            (
                "{urls: [\"http://admin:s3cret@am:9093\"]}",
                "alertmanager.urls[0]: must not carry credentials (user:password@); \
                 they go in alertmanager.basic_auth or alertmanager.authorization",
            ),
            (
                "{urls: [\"http://am:9093\", \"http://am:9093/\"]}",
                "alertmanager.urls[1]: \"http://am:9093\" is listed twice",
            ),
            (
                "{urls: [\"http://am:9093\"], timeout: soon}",
                "alertmanager.timeout: invalid duration \"soon\" (expected number at 0); \
                 use e.g. \"5s\", \"10m\", \"1h\"",
            ),
            (
                "{urls: [\"http://am:9093\"], timeout: 1h}",
                "alertmanager.timeout: must be at most 5m, got 1h",
            ),
            (
                "{urls: [\"http://am:9093\"], resolved_after: 2d}",
                "alertmanager.resolved_after: must be at most 1day, got 2days",
            ),
            (
                "{urls: [\"http://am:9093\"], basic_auth: {username: sms}}",
                "alertmanager.basic_auth.password: missing: set it or its _file variant",
            ),
            (
                "{urls: [\"http://am:9093\"], basic_auth: {password: pa55}}",
                "alertmanager.basic_auth.username: must be non-empty and must not contain ':'",
            ),
            (
                "{urls: [\"http://am:9093\"], basic_auth: {username: sms, password: a, password_file: b}}",
                "alertmanager.basic_auth.password: set it or its _file variant, not both",
            ),
            (
                "{urls: [\"http://am:9093\"], authorization: {type: Bearer}}",
                "alertmanager.authorization.credentials: missing: set it or its _file variant",
            ),
            (
                "{urls: [\"http://am:9093\"], authorization: {type: Basic, credentials: x}}",
                "alertmanager.authorization.type: must not be Basic: use alertmanager.basic_auth",
            ),
            (
                "{urls: [\"http://am:9093\"], authorization: {type: \"Be arer\", credentials: x}}",
                "alertmanager.authorization.type: must be one word of letters, digits, '-' or '_', \
                 such as Bearer",
            ),
            (
                "{urls: [\"http://am:9093\"], authorization: {credentials: \"two words\"}}",
                "alertmanager.authorization.credentials: must not contain spaces or control \
                 characters",
            ),
            (
                "{urls: [\"http://am:9093\"], basic_auth: {username: sms, password: pa55}, \
                 authorization: {credentials: t0k3n}}",
                "alertmanager.basic_auth: set basic_auth or authorization, not both \
                 (alertmanager.authorization is set too)",
            ),
            (
                "{urls: [\"http://am:9093\"], bearer_token: t0k3n}",
                "alertmanager.bearer_token: unknown field `bearer_token`, expected one of `urls`, \
                 `timeout`, `resolved_after`, `basic_auth`, `authorization`, `tls_config`",
            ),
            (
                "{urls: [\"http://am:9093\"], tls_config: {cert_file: c.pem}}",
                "alertmanager.tls_config.cert_file: unknown field `cert_file`, expected `ca_file` \
                 or `insecure_skip_verify`",
            ),
        ] {
            assert_eq!(problems(&section(yaml)), [expected], "{yaml}");
        }
    }

    /// A self-signed CA certificate (not used to connect anywhere).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBezCCASGgAwIBAgIUK3/oTRmpgywkP+qsXhF6AY2N6/IwCgYIKoZIzj0EAwIw
EjEQMA4GA1UEAwwHdGVzdC1jYTAgFw0yNjEyMDMyMjEzMjlaGA8yMTI2MTEwOTIy
MTMyOVowEjEQMA4GA1UEAwwHdGVzdC1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABNf7ueSiXq/7izOJugexSGRvgpuEVRllDPYrmgmrWQphCpg/fLTA5O4TcyEw
GKr2J277cKowQGI+q/095o4uUbWjUzBRMB0GA1UdDgQWBBRk8xOPgMXa8EbcRRUN
3zjTiuU/AzAfBgNVHSMEGDAWgBRk8xOPgMXa8EbcRRUN3zjTiuU/AzAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQD4mucF7Y8YXXPp5EBSOCvl8qEf
1+RWGezpwyeVrCbK4wIgU/19iqb1A+mDVs4Xbg15nV9L+xHJsCe2zwmv6ys3Zbs=
-----END CERTIFICATE-----
";
}
