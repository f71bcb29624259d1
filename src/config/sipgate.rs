//! The `sipgate:` section: where SMS go and with which credentials; none means dry-run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::field::{base_url, duration_at_most};
use super::problem::{Problem, problem};
use super::secret::{EnvLookup, Secret, optional_secret};

pub const DEFAULT_API_URL: &str = "https://api.sipgate.com/v2";
pub const ENV_TOKEN_ID: &str = "SIPGATE_TOKEN_ID";
pub const ENV_TOKEN: &str = "SIPGATE_TOKEN";
/// Points the service at another Sipgate URL (a fake, a proxy) without editing the config.
pub const ENV_API_URL: &str = "SIPGATE_API_URL";

#[derive(Debug, Clone)]
pub struct Credentials {
    pub token_id: String,
    pub token: Secret,
}

#[derive(Debug, Clone)]
pub struct SipgateConfig {
    pub api_url: String,
    /// `None` means dry-run: nothing can be sent without them.
    pub credentials: Option<Credentials>,
    pub sms_id: String,
    pub timeout: Duration,
    /// Verify the token and `sms_id` with Sipgate at start and reload, for `/-/ready`.
    pub check_credentials: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSipgate {
    api_url: Option<String>,
    token_id: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    sms_id: Option<String>,
    timeout: Option<String>,
    check_credentials: Option<bool>,
}

pub(super) fn sipgate_config(
    raw: RawSipgate,
    base: &Path,
    env: EnvLookup<'_>,
    problems: &mut Vec<Problem>,
) -> SipgateConfig {
    let api_url = api_url(raw.api_url, env, problems);
    let sms_id = raw.sms_id.unwrap_or_else(|| "s0".to_string());
    let valid_sms_id = sms_id
        .strip_prefix('s')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if !valid_sms_id {
        problem(
            problems,
            "sipgate.sms_id",
            format!(
                "must be the Web-SMS extension id, \"s\" and a number such as \"s0\", got {sms_id:?}"
            ),
        );
    }
    let timeout = duration_at_most(
        raw.timeout.as_deref(),
        Duration::from_secs(30),
        Duration::from_secs(300),
        "sipgate.timeout",
        problems,
    );
    let credentials =
        sipgate_credentials(raw.token_id, raw.token, raw.token_file, base, env, problems);
    SipgateConfig {
        api_url,
        credentials,
        sms_id,
        timeout,
        check_credentials: raw.check_credentials.unwrap_or(true),
    }
}

/// The API's base URL, without a trailing slash: `$SIPGATE_API_URL`, the file's, or Sipgate's.
fn api_url(written: Option<String>, env: EnvLookup<'_>, problems: &mut Vec<Problem>) -> String {
    // The environment wins over the file, as for the token; a problem names where the URL came from.
    let (api_url, field) = match env(ENV_API_URL).filter(|url| !url.trim().is_empty()) {
        Some(url) => (url, format!("${ENV_API_URL}")),
        None => (
            written.unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            "sipgate.api_url".to_string(),
        ),
    };
    base_url(
        &api_url,
        "the Sipgate token goes in sipgate.token_id and sipgate.token",
    )
    .unwrap_or_else(|message| {
        problem(problems, &field, message);
        api_url.trim().trim_end_matches('/').to_string()
    })
}

/// Token id and token from the environment or the file; none for dry-run.
fn sipgate_credentials(
    token_id: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    base: &Path,
    env: EnvLookup<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Credentials> {
    // A token that is configured but unreadable has been reported already; the missing pair
    // below would only repeat that.
    let token_configured = token.is_some() || token_file.is_some();
    let token = optional_secret(
        env(ENV_TOKEN),
        token,
        token_file,
        base,
        "sipgate.token",
        problems,
    );
    let token_id = env(ENV_TOKEN_ID).or(token_id);
    match (token_id, token) {
        (Some(token_id), Some(token)) => Some(Credentials { token_id, token }),
        (None, None) => None,
        (Some(_), None) if token_configured => None,
        (Some(_), None) => {
            problem(
                problems,
                "sipgate.token",
                format!("token_id is set but no token: set token, token_file or ${ENV_TOKEN}"),
            );
            None
        }
        (None, Some(_)) => {
            problem(
                problems,
                "sipgate.token_id",
                format!("a token is set but no token_id: set token_id or ${ENV_TOKEN_ID}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::tests::{GOOD, PAGES_ALICE, load, no_env};
    use crate::config::{Config, EnvLookup};

    #[test]
    fn env_overrides_token_and_id() {
        let env = |k: &str| match k {
            ENV_TOKEN => Some("from-env".to_string()),
            ENV_TOKEN_ID => Some("token-ENV123".to_string()),
            _ => None,
        };
        let c = Config::from_yaml(GOOD, Path::new("t.yml"), Path::new("."), &env).unwrap();
        let creds = c.sipgate.credentials.unwrap();
        assert_eq!(creds.token.expose_secret(), "from-env");
        assert_eq!(creds.token_id, "token-ENV123");
    }

    #[test]
    fn a_token_and_its_file_are_refused_also_when_the_environment_sets_it() {
        let yaml =
            format!("sipgate: {{token_id: token-AB12CD, token: a, token_file: b}}\n{PAGES_ALICE}");
        let env = |k: &str| (k == ENV_TOKEN).then(|| "from-env".to_string());
        let listed = |env: EnvLookup<'_>| -> Vec<String> {
            Config::from_yaml(&yaml, Path::new("t.yml"), Path::new("."), env)
                .expect_err("config should be rejected")
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let expected = ["line 1: sipgate.token: set it or its _file variant, not both"];
        assert_eq!(listed(&env), expected);
        assert_eq!(listed(&no_env), expected);
    }

    #[test]
    fn env_points_at_another_sipgate_url() {
        let fake = |url: &'static str| move |k: &str| (k == ENV_API_URL).then(|| url.to_string());
        let yaml = "sipgate: {api_url: \"https://proxy.example/v2\"}";
        let from = |env: &dyn Fn(&str) -> Option<String>, yaml: &str| {
            let yaml = format!("{yaml}\n{PAGES_ALICE}");
            Config::from_yaml(&yaml, Path::new("t.yml"), Path::new("."), env)
        };
        let c = from(&fake("http://127.0.0.1:8080/v2/"), yaml).unwrap();
        assert_eq!(c.sipgate.api_url, "http://127.0.0.1:8080/v2");
        assert_eq!(
            from(&no_env, yaml).unwrap().sipgate.api_url,
            "https://proxy.example/v2"
        );
        assert_eq!(
            from(&fake(""), yaml).unwrap().sipgate.api_url,
            "https://proxy.example/v2"
        );
        assert_eq!(
            from(&fake("http://127.0.0.1:8080"), "")
                .unwrap()
                .sipgate
                .api_url,
            "http://127.0.0.1:8080"
        );
        let leaked = from(
            &fake("http://proxy-user:proxy-secret@127.0.0.1:8080/v2"),
            yaml,
        );
        let problem = &leaked.unwrap_err()[0];
        assert_eq!(
            (problem.field.as_str(), problem.message.as_str()),
            (
                "$SIPGATE_API_URL",
                "must not carry credentials (user:password@); the Sipgate token goes in \
                 sipgate.token_id and sipgate.token"
            )
        );
        let problems = from(&fake("127.0.0.1:8080"), yaml).unwrap_err();
        assert_eq!(
            problems,
            [Problem {
                field: "$SIPGATE_API_URL".to_string(),
                message: "must be an http:// or https:// URL, got \"127.0.0.1:8080\"".to_string(),
                line: None,
            }]
        );
    }

    #[test]
    fn token_file_is_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "file-token\n").unwrap();
        let c = Config::from_yaml(
            &format!("sipgate: {{token_id: token-AB12CD, token_file: tok}}\n{PAGES_ALICE}"),
            Path::new("x.yml"),
            dir.path(),
            &no_env,
        )
        .unwrap();
        assert_eq!(
            c.sipgate.credentials.unwrap().token.expose_secret(),
            "file-token"
        );
    }

    #[test]
    fn an_unreadable_token_file_is_one_problem() {
        let p = load(&format!(
            "sipgate: {{token_id: token-AB12CD, token_file: /nonexistent/token}}\n{PAGES_ALICE}"
        ))
        .unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "sipgate.token_file");
        assert_eq!(p[0].line, Some(1));
        assert!(
            p[0].message.starts_with("cannot read /nonexistent/token"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn the_api_url_must_parse() {
        for url in [
            "ftp://api.sipgate.com/v2",
            "https://exa mple.com/v2",
            "http://:80/v2",
            "https://api.sipgate.com/v2?x=1",
            "https://api.sipgate.com/v2#v",
        ] {
            let p = load(&format!("sipgate: {{api_url: \"{url}\"}}\n{PAGES_ALICE}")).unwrap_err();
            assert_eq!(p.len(), 1, "{url}: {p:?}");
            assert_eq!(p[0].field, "sipgate.api_url", "{url}");
        }
        let c = load(&format!(
            "sipgate: {{api_url: \"http://127.0.0.1:8080/v2/\"}}\n{PAGES_ALICE}"
        ))
        .unwrap();
        assert_eq!(c.sipgate.api_url, "http://127.0.0.1:8080/v2");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = load(GOOD).unwrap();
        assert!(!format!("{:?}", c.sipgate).contains("secret-token"));
    }
}
