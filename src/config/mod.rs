//! The YAML config file, validated into a `Config` the service can run on: secrets read, numbers
//! checked, matchers parsed and templates compiled, so that a typo fails at start and not at 3 a.m.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::model::phone::PhoneNumber;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

mod document;
mod oncall;
mod state;
mod watchdog;

pub use state::{ENV_REDIS_PASSWORD, RedisConfig, SentinelConfig, StateConfig};
pub use watchdog::Watchdog;

use crate::ratelimit::{Limits, Rate};
use crate::routing::matcher::{Matcher, parse_matchers};
use crate::text::sms::MAX_SEGMENTS_CAP;
use crate::text::template::Templates;

pub const DEFAULT_API_URL: &str = "https://api.sipgate.com/v2";
pub const ENV_TOKEN_ID: &str = "SIPGATE_TOKEN_ID";
pub const ENV_TOKEN: &str = "SIPGATE_TOKEN";
/// Points the service at another Sipgate URL (a fake, a proxy) without editing the config.
pub const ENV_API_URL: &str = "SIPGATE_API_URL";

/// A config problem and where it is, e.g. `routes[1].matchers[0]`, line 12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    /// The line of `field` in the file, from 1; none when the field is not written there.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

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

/// A secret: never in `Debug` output or logs, zeroed when dropped. `expose_secret()` only where
/// it is used.
pub type Secret = secrecy::SecretString;

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

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matchers: Vec<Matcher>,
    /// Phone-book names, groups expanded, each once, in the order written.
    pub recipients: Vec<String>,
    pub template: String,
    pub send_resolved: bool,
    pub max_segments: usize,
    /// Replace characters that would force UCS-2 (half the capacity) by GSM-7 look-alikes.
    pub gsm_only: bool,
    pub continue_matching: bool,
    /// Schedules in `to:`: whoever is on call when the SMS is planned.
    pub schedules: Vec<String>,
    /// Everyone the route can page: `recipients` and every person of its schedules.
    pub may_page: Vec<String>,
    /// When set, the route sends only inside one of these intervals.
    pub active_time_intervals: Vec<String>,
    /// The route sends nothing inside these intervals.
    pub mute_time_intervals: Vec<String>,
    /// Pages through the recipients' quiet hours.
    pub ignore_quiet_hours: bool,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub response_deadline: Duration,
    pub dedup_window: Duration,
    pub max_concurrency: usize,
    pub max_pending: usize,
    pub rate_limit: Limits,
}

/// The part of the response deadline kept for the send itself: the state store may use the rest
/// before an SMS goes out without it.
pub const SEND_RESERVE: Duration = Duration::from_secs(1);

impl DeliveryConfig {
    /// How long an SMS waits for the state store's word before it goes out without it: the
    /// response deadline less the time kept for the send (`SEND_RESERVE`, or half of a shorter
    /// deadline), so that a stalled store never makes the answer late.
    pub fn state_budget(&self) -> Duration {
        self.response_deadline - SEND_RESERVE.min(self.response_deadline / 2)
    }
}

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
    pub schedules: BTreeMap<String, crate::oncall::Schedule>,
    pub time_intervals: BTreeMap<String, Vec<crate::oncall::timeinterval::TimeInterval>>,
    /// A person's quiet hours: names of time intervals.
    pub quiet_hours: BTreeMap<String, Vec<String>>,
    pub watchdog: Option<Watchdog>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sipgate: RawSipgate,
    #[serde(default)]
    recipients: BTreeMap<String, oncall::RawRecipient>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    schedules: BTreeMap<String, oncall::RawSchedule>,
    #[serde(default)]
    time_intervals: Vec<oncall::RawNamedInterval>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    templates: RawTemplates,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    state: state::RawState,
    watchdog: Option<watchdog::RawWatchdog>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSipgate {
    api_url: Option<String>,
    token_id: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    sms_id: Option<String>,
    timeout: Option<String>,
    check_credentials: Option<bool>,
}

// Every field has a default (see `document::deserialize_all`); what is required is checked
// when the config is validated.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[serde(default)]
    name: String,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    to: Vec<String>,
    template: Option<String>,
    send_resolved: Option<bool>,
    max_segments: Option<usize>,
    #[serde(default)]
    gsm_only: bool,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    active_time_intervals: Vec<String>,
    #[serde(default)]
    mute_time_intervals: Vec<String>,
    #[serde(default)]
    ignore_quiet_hours: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTemplates {
    dir: Option<PathBuf>,
    time_zone: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    response_deadline: Option<String>,
    dedup_window: Option<String>,
    max_concurrency: Option<usize>,
    max_pending: Option<usize>,
    #[serde(default)]
    rate_limit: RawRateLimit,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_recipient: Option<String>,
    total: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
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
struct RawBasicAuth {
    #[serde(default)]
    username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBearerAuth {
    token: Option<String>,
    token_file: Option<PathBuf>,
}

/// Where environment overrides come from; tests pass their own instead of touching the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
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
        let sipgate = sipgate_config(raw.sipgate, base, env, &mut problems);
        let (numbers, quiet_hours) = oncall::phone_book_entries(&raw.recipients, text);
        let recipients = phone_book(&numbers, &mut problems);
        // Names are checked against what was declared, so a bad number is reported once, not
        // again at every group and route that uses the name.
        let names: HashSet<&str> = raw.recipients.keys().map(String::as_str).collect();
        let groups = groups(&raw.groups, &names, &mut problems);
        let time_intervals = oncall::time_intervals(raw.time_intervals, &mut problems);
        for (name, intervals) in &quiet_hours {
            let field = format!("recipients.{name}.quiet_hours");
            oncall::known_intervals(intervals, &field, &time_intervals, &mut problems);
        }
        let taken: HashSet<&str> = names
            .iter()
            .copied()
            .chain(raw.groups.keys().map(String::as_str))
            .collect();
        let schedule_names: HashSet<String> = raw.schedules.keys().cloned().collect();
        let schedules = oncall::schedules(raw.schedules, &names, &taken, &mut problems);
        let templates = templates(&raw.templates, base, &mut problems);
        let targets = Targets {
            names: &names,
            groups: &groups,
            schedule_names: &schedule_names,
            schedules: &schedules,
            time_intervals: &time_intervals,
        };
        let routes = routes(raw.routes, &targets, templates.as_ref(), &mut problems);
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
        let delivery = delivery_config(raw.delivery, &mut problems);
        let server = server_config(raw.server, base, &mut problems);
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
            }),
            _ => Err(problems),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.sipgate.credentials.is_none()
    }

    /// Who `route` texts at `at`: its recipients and whoever is on call in its schedules, each
    /// once.
    pub fn recipients_at<'a>(&'a self, route: &'a Route, at: DateTime<Utc>) -> Vec<&'a str> {
        let mut out: Vec<&str> = route.recipients.iter().map(String::as_str).collect();
        for schedule in route.schedules.iter().filter_map(|s| self.schedules.get(s)) {
            let who = schedule.who(at);
            if !out.contains(&who) {
                out.push(who);
            }
        }
        out
    }

    /// Whether `route` holds its SMS back at `at`: outside all of its active intervals (when it
    /// has any), or inside one of its mute intervals, as in Alertmanager.
    pub fn muted_at(&self, route: &Route, at: DateTime<Utc>) -> bool {
        let inside = |name: &String| {
            self.time_intervals
                .get(name)
                .is_some_and(|i| crate::oncall::timeinterval::any_contains(i, at))
        };
        (!route.active_time_intervals.is_empty() && !route.active_time_intervals.iter().any(inside))
            || route.mute_time_intervals.iter().any(inside)
    }

    /// Whether `recipient` is in their quiet hours at `at`.
    pub fn in_quiet_hours(&self, recipient: &str, at: DateTime<Utc>) -> bool {
        self.quiet_hours.get(recipient).is_some_and(|names| {
            names.iter().any(|name| {
                self.time_intervals
                    .get(name)
                    .is_some_and(|i| crate::oncall::timeinterval::any_contains(i, at))
            })
        })
    }
}

fn problem(problems: &mut Vec<Problem>, field: impl Into<String>, message: impl Into<String>) {
    problems.push(Problem {
        field: field.into(),
        message: message.into(),
        line: None,
    });
}

/// An optional text field: its default when absent, a problem (and the default) when invalid.
fn parse_field<T>(
    value: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
    default: T,
    field: &str,
    problems: &mut Vec<Problem>,
) -> T {
    match value.map(parse) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            problem(problems, field, e);
            default
        }
    }
}

fn at_most(value: Duration, max: Duration, field: &str, problems: &mut Vec<Problem>) {
    if value > max {
        problem(
            problems,
            field,
            format!(
                "must be at most {}, got {}",
                humantime::format_duration(max),
                humantime::format_duration(value)
            ),
        );
    }
}

/// Prometheus-style durations: `30s`, `5m`, `1h30m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); use e.g. \"5s\", \"10m\", \"1h\"")
    })?;
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(d)
}

/// Sizes such as `1MiB`, `512KiB`, `1MB` or plain bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {text:?}; use e.g. \"1MiB\", \"512KiB\""
            ));
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?}; use e.g. \"1MiB\", \"512KiB\""))
}

fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(trimmed.to_string())
}

fn sipgate_config(
    raw: RawSipgate,
    base: &Path,
    env: EnvLookup<'_>,
    problems: &mut Vec<Problem>,
) -> SipgateConfig {
    // The environment wins over the file, as for the token; a problem names where the URL came from.
    let (api_url, field) = match env(ENV_API_URL).filter(|url| !url.trim().is_empty()) {
        Some(url) => (url, format!("${ENV_API_URL}")),
        None => (
            raw.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            "sipgate.api_url".to_string(),
        ),
    };
    let api_url = api_url.trim().trim_end_matches('/').to_string();
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        problem(
            problems,
            &field,
            format!("must be an http:// or https:// URL, got {api_url:?}"),
        );
    } else {
        match reqwest::Url::parse(&api_url) {
            Err(e) => problem(
                problems,
                &field,
                format!("is not a valid URL ({e}), got {api_url:?}"),
            ),
            // Not echoed: what it carries would end up in logs.
            Ok(url) if !url.username().is_empty() || url.password().is_some() => problem(
                problems,
                &field,
                "must not carry credentials (user:password@); the Sipgate token goes in \
                 sipgate.token_id and sipgate.token",
            ),
            // The paths of the API are appended to it.
            Ok(url) if url.query().is_some() || url.fragment().is_some() => problem(
                problems,
                &field,
                format!("must not have a query or fragment, got {api_url:?}"),
            ),
            Ok(_) => {}
        }
    }
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
    let timeout = parse_field(
        raw.timeout.as_deref(),
        parse_duration,
        Duration::from_secs(30),
        "sipgate.timeout",
        problems,
    );
    at_most(
        timeout,
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
    let token = match env(ENV_TOKEN) {
        Some(t) => {
            if token.is_some() && token_file.is_some() {
                problem(
                    problems,
                    "sipgate.token",
                    "set either token or token_file, not both",
                );
            }
            Some(Secret::from(t))
        }
        None if token_configured => {
            secret_value(token, token_file, base, "sipgate.token", problems)
        }
        None => None,
    };
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

const NAME_RULE: &str = "names may use letters, digits, '_', '-' and '.'";

fn phone_book(
    raw: &BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, PhoneNumber> {
    let mut book = BTreeMap::new();
    for (name, number) in raw {
        let field = format!("recipients.{name}");
        if !valid_name(name) {
            problem(problems, &field, format!("invalid name; {NAME_RULE}"));
            continue;
        }
        match PhoneNumber::parse(number) {
            Ok(n) => {
                book.insert(name.clone(), n);
            }
            // The number itself stays out of the message: config errors end up in logs.
            Err(e) => problem(problems, &field, format!("invalid phone number: {e}")),
        }
    }
    book
}

fn groups(
    raw: &BTreeMap<String, Vec<String>>,
    names: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, members) in raw {
        if !valid_name(name) {
            problem(
                problems,
                format!("groups.{name}"),
                format!("invalid name; {NAME_RULE}"),
            );
            continue;
        }
        if names.contains(name.as_str()) {
            problem(
                problems,
                format!("groups.{name}"),
                "a recipient has the same name; use distinct names for groups and recipients",
            );
        }
        if members.is_empty() {
            problem(problems, format!("groups.{name}"), "a group needs members");
        }
        for (i, member) in members.iter().enumerate() {
            if !names.contains(member.as_str()) {
                problem(
                    problems,
                    format!("groups.{name}[{i}]"),
                    format!("unknown recipient {member:?}; groups list names from recipients"),
                );
            }
        }
        out.insert(name.clone(), members.clone());
    }
    out
}

fn templates(raw: &RawTemplates, base: &Path, problems: &mut Vec<Problem>) -> Option<Templates> {
    let time_zone = match raw.time_zone.as_deref() {
        None => chrono_tz::UTC,
        Some(name) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                problem(
                    problems,
                    "templates.time_zone",
                    format!(
                        "unknown time zone {name:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\""
                    ),
                );
                chrono_tz::UTC
            }
        },
    };
    let dir = raw.dir.as_ref().map(|d| base.join(d));
    match Templates::load(dir.as_deref(), time_zone) {
        Ok(t) => Some(t),
        Err(errors) => {
            for e in errors {
                problem(problems, "templates.dir", e.to_string());
            }
            None
        }
    }
}

/// What a route's `to:` and its time intervals may name.
struct Targets<'a> {
    names: &'a HashSet<&'a str>,
    groups: &'a BTreeMap<String, Vec<String>>,
    /// Every schedule declared, also those with problems: a route that names one is not blamed
    /// for them a second time.
    schedule_names: &'a HashSet<String>,
    /// The schedules without problems.
    schedules: &'a BTreeMap<String, crate::oncall::Schedule>,
    time_intervals: &'a BTreeMap<String, Vec<crate::oncall::timeinterval::TimeInterval>>,
}

fn routes(
    raw: Vec<RawRoute>,
    targets: &Targets<'_>,
    templates: Option<&Templates>,
    problems: &mut Vec<Problem>,
) -> Vec<Route> {
    let mut seen_names = HashSet::new();
    let mut checked_templates = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        if r.name.is_empty() {
            problem(
                problems,
                format!("{at}.name"),
                "missing: every route needs a name",
            );
        } else if !valid_name(&r.name) {
            problem(
                problems,
                format!("{at}.name"),
                format!("invalid route name {:?}; {NAME_RULE}", r.name),
            );
        } else if !seen_names.insert(r.name.clone()) {
            problem(
                problems,
                format!("{at}.name"),
                format!("route name {:?} is used twice", r.name),
            );
        }
        let mut matchers = Vec::new();
        for (j, entry) in r.matchers.iter().enumerate() {
            match parse_matchers(entry) {
                Ok(ms) => matchers.extend(ms),
                Err(e) => problem(problems, format!("{at}.matchers[{j}]"), e.to_string()),
            }
        }
        let (recipients, schedules) = route_recipients(&at, &r.to, targets, problems);
        let mut may_page = recipients.clone();
        for person in schedules
            .iter()
            .filter_map(|s| targets.schedules.get(s))
            .flat_map(|s| s.people())
        {
            if !may_page.iter().any(|p| p == person) {
                may_page.push(person.to_string());
            }
        }
        for (field, names) in [
            ("active_time_intervals", &r.active_time_intervals),
            ("mute_time_intervals", &r.mute_time_intervals),
        ] {
            let field = format!("{at}.{field}");
            oncall::known_intervals(names, &field, targets.time_intervals, problems);
        }
        let template = r.template.unwrap_or_else(|| "default".to_string());
        if let Some(templates) = templates
            && let Err(e) = check_template(templates, &template, &mut checked_templates)
        {
            problem(problems, format!("{at}.template"), e);
        }
        let max_segments = r.max_segments.unwrap_or(1);
        if !(1..=MAX_SEGMENTS_CAP).contains(&max_segments) {
            problem(
                problems,
                format!("{at}.max_segments"),
                format!("must be between 1 and {MAX_SEGMENTS_CAP}, got {max_segments}"),
            );
        }
        out.push(Route {
            name: r.name,
            matchers,
            recipients,
            template,
            send_resolved: r.send_resolved.unwrap_or(true),
            max_segments,
            gsm_only: r.gsm_only,
            continue_matching: r.continue_matching,
            schedules,
            may_page,
            active_time_intervals: r.active_time_intervals,
            mute_time_intervals: r.mute_time_intervals,
            ignore_quiet_hours: r.ignore_quiet_hours,
        });
    }
    out
}

/// A route's `to:`: phone-book names, groups expanded, each once, in the order written; and the
/// schedules, resolved when an SMS is planned.
fn route_recipients(
    at: &str,
    to: &[String],
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> (Vec<String>, Vec<String>) {
    if to.is_empty() {
        problem(
            problems,
            format!("{at}.to"),
            "a route needs at least one recipient, group or schedule",
        );
    }
    let mut recipients: Vec<String> = Vec::new();
    let mut schedules: Vec<String> = Vec::new();
    for (j, name) in to.iter().enumerate() {
        let members: Vec<String> = if targets.names.contains(name.as_str()) {
            vec![name.clone()]
        } else if let Some(members) = targets.groups.get(name) {
            members.clone()
        } else if targets.schedule_names.contains(name) {
            if !schedules.contains(name) {
                schedules.push(name.clone());
            }
            continue;
        } else {
            problem(
                problems,
                format!("{at}.to[{j}]"),
                format!("unknown recipient, group or schedule {name:?}"),
            );
            continue;
        };
        for m in members {
            if !recipients.contains(&m) {
                recipients.push(m);
            }
        }
    }
    (recipients, schedules)
}

/// A template name is known, and the template renders the sample notification (tried once per
/// template, however many routes use it).
fn check_template(
    templates: &Templates,
    name: &str,
    rendered: &mut HashSet<String>,
) -> Result<(), String> {
    if !templates.has(name) {
        return Err(format!(
            "unknown template {name:?}; known: {}",
            templates.names().join(", ")
        ));
    }
    if rendered.insert(name.to_string()) {
        templates.test_render(name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn delivery_config(raw: RawDelivery, problems: &mut Vec<Problem>) -> DeliveryConfig {
    let response_deadline = parse_field(
        raw.response_deadline.as_deref(),
        parse_duration,
        Duration::from_secs(5),
        "delivery.response_deadline",
        problems,
    );
    // Alertmanager gives up after 10 s and Healthchecks.io after 30 s; longer only loses answers.
    at_most(
        response_deadline,
        Duration::from_secs(60),
        "delivery.response_deadline",
        problems,
    );
    let dedup_window = parse_field(
        raw.dedup_window.as_deref(),
        parse_duration,
        Duration::from_secs(600),
        "delivery.dedup_window",
        problems,
    );
    at_most(
        dedup_window,
        Duration::from_secs(7 * 86_400),
        "delivery.dedup_window",
        problems,
    );
    let rate = |value: Option<String>, field: &str, problems: &mut Vec<Problem>| {
        parse_field(
            value.as_deref(),
            |v| Rate::parse(v).map(Some),
            None,
            field,
            problems,
        )
    };
    let rate_limit = Limits {
        per_recipient: rate(
            raw.rate_limit.per_recipient,
            "delivery.rate_limit.per_recipient",
            problems,
        ),
        total: rate(raw.rate_limit.total, "delivery.rate_limit.total", problems),
    };
    let mut count = |value: Option<usize>, default: usize, max: usize, field: &str| {
        let v = value.unwrap_or(default);
        if !(1..=max).contains(&v) {
            problem(
                problems,
                field,
                format!("must be between 1 and {max}, got {v}"),
            );
        }
        v.clamp(1, max)
    };
    let max_concurrency = count(raw.max_concurrency, 8, 1000, "delivery.max_concurrency");
    let max_pending = count(raw.max_pending, 1000, 1_000_000, "delivery.max_pending");
    DeliveryConfig {
        response_deadline,
        dedup_window,
        max_concurrency,
        max_pending,
        rate_limit,
    }
}

fn server_config(raw: RawServer, base: &Path, problems: &mut Vec<Problem>) -> ServerConfig {
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
    let max_alerts = raw.max_alerts.unwrap_or(1000);
    if !(1..=100_000).contains(&max_alerts) {
        problem(
            problems,
            "server.max_alerts",
            format!("must be between 1 and 100000, got {max_alerts}"),
        );
    }
    let grafana_hmac =
        if raw.grafana_hmac_secret.is_some() || raw.grafana_hmac_secret_file.is_some() {
            secret_value(
                raw.grafana_hmac_secret,
                raw.grafana_hmac_secret_file,
                base,
                "server.grafana_hmac_secret",
                problems,
            )
            .map(|secret| GrafanaHmac {
                secret,
                timestamp_header: raw.grafana_hmac_timestamp_header,
            })
        } else {
            if raw.grafana_hmac_timestamp_header.is_some() {
                problem(
                    problems,
                    "server.grafana_hmac_timestamp_header",
                    "needs server.grafana_hmac_secret or grafana_hmac_secret_file",
                );
            }
            None
        };
    ServerConfig {
        max_body_size,
        max_alerts,
        auth,
        grafana_hmac,
    }
}

/// A secret given inline or, better, in a file (relative to the config); exactly one of the two.
fn secret_value(
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problem(problems, field, "set it or its _file variant, not both");
            None
        }
        (Some(value), None) if !value.is_empty() => Some(Secret::from(value)),
        (None, Some(file)) => match read_secret_file(&base.join(file)) {
            Ok(value) => Some(Secret::from(value)),
            Err(e) => {
                problem(problems, format!("{field}_file"), e);
                None
            }
        },
        _ => {
            problem(problems, field, "missing: set it or its _file variant");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(yaml: &str) -> Result<Config, Vec<Problem>> {
        Config::from_yaml(yaml, Path::new("test.yml"), Path::new("."), &no_env)
    }

    /// A phone book and a route: what a config needs to page somebody, for tests of the rest.
    const PAGES_ALICE: &str =
        "recipients: {alice: \"+4915228817386\"}\nroutes: [{name: r, to: [alice]}]\n";

    fn fields(yaml: &str) -> Vec<String> {
        load(yaml)
            .expect_err("config should be rejected")
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    const GOOD: &str = r#"
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
    fn a_route_without_name_or_recipients_says_so_at_the_route() {
        let p = load("routes:\n  - matchers: ['a=\"b\"']\n").unwrap_err();
        let got: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "line 2: routes[0].name: missing: every route needs a name",
                "line 2: routes[0].to: a route needs at least one recipient, group or schedule",
            ]
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

    #[test]
    fn number_errors_do_not_echo_the_number() {
        let p = load("recipients: {alice: \"015112345678\"}").unwrap_err();
        assert!(!p[0].message.contains("015112345678"));
    }

    #[test]
    fn phone_numbers_are_masked_when_shown() {
        let n = PhoneNumber::parse("+4915228817386").unwrap();
        assert_eq!(n.to_string(), "+49152******86");
        assert_eq!(format!("{n:?}"), "PhoneNumber(+49152******86)");
        assert!(PhoneNumber::parse("+49").is_err());
        assert!(PhoneNumber::parse("+0049151").is_err());
        assert!(PhoneNumber::parse("+49151abc45678").is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let c = load(GOOD).unwrap();
        assert!(!format!("{:?}", c.sipgate).contains("secret-token"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2000"), Ok(2000));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
    }
}
