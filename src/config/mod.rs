//! The YAML config file, validated into a `Config` the service can run on: secrets read, numbers
//! checked, matchers parsed and templates compiled, so that a typo fails at start and not at 3 a.m.
//!
//! One file per section of the YAML, each of which reads and checks its part; here only the
//! order in which they do. `Config` holds what the file says: what it means at an instant (who
//! is on call, what is muted, who is in quiet hours) is decided in `routing` and `oncall`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod alertmanager;
mod calendars;
mod delivery;
mod document;
mod escalation;
mod field;
mod oncall;
mod problem;
mod recipients;
mod routes;
mod secret;
mod server;
mod sipgate;
mod state;
mod templates;
mod watchdog;
mod web;

use crate::routing::Route;
pub use alertmanager::{AlertmanagerAuth, AlertmanagerConfig, AlertmanagerTls, CaFile};
pub use calendars::CalendarFeed;
pub use delivery::{DeliveryConfig, SEND_RESERVE};
pub use field::{parse_duration, parse_size};
pub use problem::Problem;
pub use secret::{EnvLookup, Secret, process_env};
pub use server::{GrafanaHmac, InboundAuth, ServerConfig};
pub use sipgate::{
    Credentials, DEFAULT_API_URL, ENV_API_URL, ENV_TOKEN, ENV_TOKEN_ID, SipgateConfig,
};
pub use state::{ClusterConfig, ENV_REDIS_PASSWORD, RedisConfig, SentinelConfig, StateConfig};
pub use watchdog::Watchdog;
pub use web::WebConfig;

use crate::model::phone::PhoneNumber;
use crate::oncall::Schedule;
use crate::oncall::quiet_hours::QuietHours;
use crate::oncall::timeinterval::NamedIntervals;
use crate::routing::policy::Policy;
use crate::text::template::Templates;
use problem::problem;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {}:{}", path.display(), ProblemList(problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// `summary` as one log line, then one line for each problem: escaped into a single field,
    /// a list of problems is a wall of `\n`.
    pub fn log(&self, summary: &str) {
        match self {
            ConfigError::Invalid { path, problems } => {
                tracing::error!(config = %path.display(), problems = problems.len(), "{summary}");
                for problem in problems {
                    tracing::error!(config = %path.display(), %problem, "config problem");
                }
            }
            ConfigError::Read { .. } => tracing::error!(error = %self, "{summary}"),
        }
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub sipgate: SipgateConfig,
    pub recipients: BTreeMap<String, PhoneNumber>,
    /// Each group's members, phone-book names; routes have them expanded already.
    pub groups: BTreeMap<String, Vec<String>>,
    pub routes: Vec<Route>,
    pub templates: Templates,
    pub delivery: DeliveryConfig,
    pub server: ServerConfig,
    pub state: StateConfig,
    pub schedules: BTreeMap<String, Schedule>,
    pub time_intervals: NamedIntervals,
    /// A person's quiet hours: names of time intervals.
    pub quiet_hours: QuietHours,
    pub watchdog: Option<Watchdog>,
    /// Routes with `escalation:` name one of these.
    pub escalation_policies: BTreeMap<String, Policy>,
    pub web: WebConfig,
    /// The Alertmanagers whose API the service asks about alerts and silences; none when absent.
    pub alertmanager: Option<AlertmanagerConfig>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sipgate: sipgate::RawSipgate,
    #[serde(default)]
    recipients: BTreeMap<String, recipients::RawRecipient>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    schedules: BTreeMap<String, oncall::RawSchedule>,
    #[serde(default)]
    time_intervals: Vec<oncall::RawNamedInterval>,
    #[serde(default)]
    routes: Vec<routes::RawRoute>,
    #[serde(default)]
    templates: templates::RawTemplates,
    #[serde(default)]
    delivery: delivery::RawDelivery,
    #[serde(default)]
    server: server::RawServer,
    #[serde(default)]
    state: state::RawState,
    watchdog: Option<watchdog::RawWatchdog>,
    #[serde(default)]
    escalation_policies: BTreeMap<String, escalation::RawPolicy>,
    #[serde(default)]
    web: web::RawWeb,
    alertmanager: Option<alertmanager::RawAlertmanager>,
}

impl Config {
    /// Reads and validates the file, with `SIPGATE_TOKEN_ID`, `SIPGATE_TOKEN` and `SIPGATE_API_URL`
    /// from the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &process_env)
    }

    pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_yaml(&text, path, base, env).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    pub(crate) fn from_yaml(
        text: &str,
        path: &Path,
        base: &Path,
        env: EnvLookup<'_>,
    ) -> Result<Config, Vec<Problem>> {
        // Structural problems (unknown keys, wrong types) come first and alone: what is built on
        // a broken structure would only repeat them.
        let raw: RawConfig = document::deserialize_all(text)?;
        let mut problems = Vec::new();
        let sipgate = sipgate::sipgate_config(raw.sipgate, base, env, &mut problems);
        let (recipients, quiet_hours) =
            recipients::phone_book(&raw.recipients, text, &mut problems);
        // Names are checked against what was declared, so a bad number is reported once, not
        // again at every group and route that uses the name.
        let names: HashSet<&str> = raw.recipients.keys().map(String::as_str).collect();
        let groups = recipients::groups(&raw.groups, &names, &mut problems);
        let time_intervals = oncall::time_intervals(raw.time_intervals, &mut problems);
        oncall::quiet_hours(&quiet_hours, &time_intervals, &mut problems);
        let taken: HashSet<&str> = names
            .iter()
            .copied()
            .chain(raw.groups.keys().map(String::as_str))
            .collect();
        let schedule_names: HashSet<String> = raw.schedules.keys().cloned().collect();
        let schedules = oncall::schedules(raw.schedules, &names, &taken, &mut problems);
        let templates = templates::templates(&raw.templates, base, &mut problems);
        let targets = routes::Targets {
            names: &names,
            groups: &groups,
            schedule_names: &schedule_names,
            schedules: &schedules,
            time_intervals: &time_intervals,
        };
        let escalation_policies =
            escalation::policies(raw.escalation_policies, &targets, &mut problems);
        let web = web::web_config(raw.web, base, &targets, &mut problems);
        let alertmanager = raw
            .alertmanager
            .map(|raw| alertmanager::alertmanager_config(raw, base, &mut problems));
        let escalation = routes::Escalation {
            policies: &escalation_policies,
            external_url: web.external_url.as_deref(),
        };
        let routes = routes::routes(
            raw.routes,
            &targets,
            &escalation,
            templates.as_ref(),
            &mut problems,
        );
        let watchdog = raw
            .watchdog
            .map(|w| watchdog::watchdog(w, &targets, templates.as_ref(), &mut problems));
        // Alertmanager refuses a config without a route too: a service that texts nobody is a
        // mistake, not a quiet night. A watchdog pages somebody when alerting itself goes silent.
        if routes.is_empty() && watchdog.is_none() {
            problem(
                &mut problems,
                "routes",
                "no route, so no alert would page anybody; add one, e.g. \
                 routes: [{name: all, to: [alice]}] with alice under recipients",
            );
        }
        let delivery = delivery::delivery_config(raw.delivery, &mut problems);
        let server = server::server_config(raw.server, base, &mut problems);
        let state = state::state_config(raw.state, base, env, &delivery, &mut problems);
        document::locate(text, &mut problems);
        match templates {
            Some(templates) if problems.is_empty() => Ok(Config {
                path: path.to_path_buf(),
                sipgate,
                recipients,
                groups,
                routes,
                templates,
                delivery,
                server,
                state,
                schedules,
                time_intervals,
                quiet_hours,
                watchdog,
                escalation_policies,
                web,
                alertmanager,
            }),
            _ => Err(problems),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.sipgate.credentials.is_none()
    }
}

#[cfg(test)]
mod tests {
    //! The config as a whole; each section's own tests are beside it, with these helpers.

    use std::path::Path;
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;

    pub(super) fn no_env(_: &str) -> Option<String> {
        None
    }

    pub(super) fn load(yaml: &str) -> Result<Config, Vec<Problem>> {
        Config::from_yaml(yaml, Path::new("test.yml"), Path::new("."), &no_env)
    }

    /// The fields of the problems of a config that is refused.
    pub(super) fn fields(yaml: &str) -> Vec<String> {
        load(yaml)
            .expect_err("config should be rejected")
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    /// The problems of a config that is refused, as `field: message`.
    pub(super) fn problems(yaml: &str) -> Vec<String> {
        load(yaml)
            .expect_err("config should be rejected")
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    }

    /// A phone book and a route: what a config needs to page somebody, for tests of the rest.
    pub(super) const PAGES_ALICE: &str =
        "recipients: {alice: \"+4915228817386\"}\nroutes: [{name: r, to: [alice]}]\n";

    /// A route to alice, for tests that write their own phone book.
    pub(super) const ROUTE_TO_ALICE: &str = "routes: [{name: r, to: [alice]}]\n";

    pub(super) const GOOD: &str = r#"
sipgate: {token_id: token-AB12CD, token: secret-token, sms_id: s1, timeout: 10s}
recipients: {alice: "+49 152 2881 7386", bob: "+4915254599371"}
groups: {oncall: [alice, bob]}
routes:
  - name: critical
    matchers: ['severity="critical"']
    to: [oncall, alice]
    max_segments: 3
  - name: rest
    to: [bob]
    send_resolved: false
    continue: true
"#;

    #[test]
    fn loads_a_complete_config() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.sipgate.api_url, DEFAULT_API_URL);
        assert_eq!(c.sipgate.sms_id, "s1");
        assert_eq!(c.sipgate.timeout, Duration::from_secs(10));
        let creds = c.sipgate.credentials.as_ref().unwrap();
        assert_eq!(creds.token_id, "token-AB12CD");
        assert_eq!(creds.token.expose_secret(), "secret-token");
        assert_eq!(c.recipients["alice"].e164(), "+4915228817386");
        assert_eq!(c.routes[0].recipients, vec!["alice", "bob"]);
        assert_eq!(c.routes[0].max_segments, 3);
        assert_eq!(c.routes[0].template, "default");
        assert!(c.routes[0].send_resolved);
        assert!(!c.routes[1].send_resolved);
        assert!(c.routes[1].continue_matching);
        assert!(c.routes[1].matchers.is_empty());
        assert!(!c.dry_run());
    }

    #[test]
    fn a_phone_book_and_a_route_are_a_dry_run_with_defaults() {
        let c = load(PAGES_ALICE).unwrap();
        assert!(c.dry_run());
        assert_eq!(c.delivery.response_deadline, Duration::from_secs(5));
        assert_eq!(c.server.max_body_size, 1 << 20);
    }

    #[test]
    fn a_config_that_pages_nobody_is_refused() {
        let no_route = "routes: no route, so no alert would page anybody; add one, e.g. routes: \
                        [{name: all, to: [alice]}] with alice under recipients";
        let listed = |yaml: &str| -> Vec<String> {
            load(yaml)
                .expect_err("config should be rejected")
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(listed(""), [no_route]);
        assert_eq!(listed("# nothing yet\n"), [no_route]);
        assert_eq!(
            listed("recipients: {alice: \"+4915228817386\"}\nroutes: []\n"),
            [format!("line 2: {no_route}")]
        );
        // The watchdog pages somebody when the alerting pipeline goes silent.
        let watchdog = load(
            "recipients: {alice: \"+4915228817386\"}\n\
             watchdog: {matchers: ['alertname=\"Watchdog\"'], to: [alice]}\n",
        )
        .unwrap();
        assert!(watchdog.routes.is_empty());
        assert_eq!(watchdog.watchdog.unwrap().route.recipients, ["alice"]);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_place() {
        let p = load("routes:\n  - name: a\n    to: []\n    matcher: ['a=b']\n").unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "routes[0].matcher");
        assert_eq!(p[0].line, Some(4));
        assert!(
            p[0].message
                .starts_with("unknown field `matcher`, expected one of `name`"),
            "{}",
            p[0].message
        );
        assert_eq!(fields("sipgat: {}"), vec!["sipgat"]);
    }

    #[test]
    fn every_structural_problem_is_reported_once_with_its_line() {
        let yaml = "\
sipgate:
  sms_id: s0
  tokn: x
recipients:
  alice: [1, 2]
routes:
  - name: a
    to: [alice]
    max_segment: 2
  - just a string
  - name: c
    to: {alice: 1}
    continue: maybe
delivery:
  dedup_windw: 5m
";
        let p = load(yaml).unwrap_err();
        let got: Vec<(String, Option<usize>)> =
            p.iter().map(|p| (p.field.clone(), p.line)).collect();
        assert_eq!(
            got,
            vec![
                ("sipgate.tokn".to_string(), Some(3)),
                ("recipients.alice".to_string(), Some(5)),
                ("routes[0].max_segment".to_string(), Some(9)),
                ("routes[1]".to_string(), Some(10)),
                ("routes[2].to".to_string(), Some(12)),
                ("routes[2].continue".to_string(), Some(13)),
                ("delivery.dedup_windw".to_string(), Some(15)),
            ]
        );
        for problem in &p {
            let text = problem.to_string();
            assert_eq!(text.matches(&problem.field).count(), 1, "{text}");
            assert!(!text.contains(" at line "), "{text}");
        }
        assert_eq!(
            p[0].to_string(),
            "line 3: sipgate.tokn: unknown field `tokn`, expected one of `api_url`, `token_id`, \
             `token`, `token_file`, `sms_id`, `timeout`, `check_credentials`"
        );
    }

    #[test]
    fn plain_scalars_are_strings_where_the_field_is_one() {
        let c = load(
            "recipients: {alice: +4915228817386}\nsipgate: {token_id: 12345678, token: 87654321, sms_id: s0}\nroutes: [{name: r, to: [alice]}]\n",
        )
        .unwrap();
        assert_eq!(c.recipients["alice"].e164(), "+4915228817386");
        assert_eq!(
            c.sipgate.credentials.unwrap().token.expose_secret(),
            "87654321"
        );
    }

    #[test]
    fn structural_problems_do_not_echo_values() {
        let p = load(
            "sipgate: {token: [s3cret-token]}\nroutes:\n  - name: a\n    to: [x]\n    max_segments: s3cret\n",
        )
        .unwrap_err();
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "line 1: sipgate.token: invalid type: sequence, expected a string",
                "line 5: routes[0].max_segments: invalid type: string, expected usize",
            ]
        );
    }

    #[test]
    fn a_yaml_syntax_error_is_one_problem_at_its_line() {
        let p = load("routes:\n  - name: a\n   to: [x]\n").unwrap_err();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            p[0].to_string(),
            "line 3: (document): did not find expected '-' indicator at line 3 column 4, while \
             parsing a block collection at line 2 column 3"
        );
    }

    #[test]
    fn problems_are_listed_in_the_order_of_the_file() {
        let yaml = "\
routes:
  - name: a
    to: [oncall, carol]
    max_segments: 0
groups:
  oncall: [alice, dave]
recipients:
  alice: \"0151 7654329\"
sipgate:
  timeout: soon
";
        let env = |name: &str| (name == ENV_TOKEN).then(|| "t0ken".to_string());
        let p = Config::from_yaml(yaml, Path::new("t.yml"), Path::new("."), &env).unwrap_err();
        let got: Vec<(&str, Option<usize>)> =
            p.iter().map(|p| (p.field.as_str(), p.line)).collect();
        assert_eq!(
            got,
            [
                ("routes[0].to[1]", Some(3)),
                ("routes[0].max_segments", Some(4)),
                ("groups.oncall[1]", Some(6)),
                ("recipients.alice", Some(8)),
                ("sipgate.token_id", Some(9)),
                ("sipgate.timeout", Some(10)),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let yaml = r#"
sipgate: {token_id: token-AB12CD, sms_id: x0, timeout: soon}
recipients: {alice: "015228817386", bob: "+4915254599371"}
groups: {oncall: [alice, carol]}
routes:
  - name: a
    matchers: ['severity=~"("']
    to: [dave]
    template: nope
    max_segments: 0
  - name: a
    to: []
delivery: {response_deadline: 0s, dedup_window: 30d, max_concurrency: 0}
server: {max_body_size: lots}
"#;
        assert_eq!(
            fields(yaml),
            vec![
                "sipgate.sms_id",
                "sipgate.timeout",
                "sipgate.token",
                "recipients.alice",
                "groups.oncall[1]",
                "routes[0].matchers[0]",
                "routes[0].to[0]",
                "routes[0].template",
                "routes[0].max_segments",
                "routes[1].name",
                "routes[1].to",
                "delivery.response_deadline",
                "delivery.dedup_window",
                "delivery.max_concurrency",
                "server.max_body_size",
            ]
        );
    }
}
