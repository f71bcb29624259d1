//! The `state:` section: where the ledger, the rate limits and the held-back counts live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{EnvLookup, Problem, Secret, parse_duration, parse_field, problem, secret_value};

/// Overrides `state.redis.password` and `password_file`.
pub const ENV_REDIS_PASSWORD: &str = "ALERTMANAGER_SIPGATE_REDIS_PASSWORD";

#[derive(Debug, Clone)]
pub enum StateConfig {
    /// This process only; forgotten on restart.
    Memory,
    /// An embedded database file, for one instance that remembers across restarts.
    File(PathBuf),
    /// A Redis or Valkey that several replicas share.
    Redis(RedisConfig),
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` (TLS); with `sentinel`, only its database, TLS and user count.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Put before every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    pub sentinel: Option<SentinelConfig>,
    /// The longest one state operation may take before the SMS goes out without it.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    pub master: String,
    pub urls: Vec<String>,
}

impl StateConfig {
    /// The backend's name, as `/-/ready` and the logs say it.
    pub fn backend(&self) -> &'static str {
        match self {
            StateConfig::Memory => "memory",
            StateConfig::File(_) => "file",
            StateConfig::Redis(_) => "redis",
        }
    }

    /// Whether a reload may keep the running store: the store is opened once, at start.
    pub fn same_as(&self, other: &StateConfig) -> bool {
        match (self, other) {
            (StateConfig::Memory, StateConfig::Memory) => true,
            (StateConfig::File(a), StateConfig::File(b)) => a == b,
            (StateConfig::Redis(a), StateConfig::Redis(b)) => {
                let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose_secret().to_string());
                (&a.url, &a.username, &a.key_prefix, &a.sentinel, a.timeout)
                    == (&b.url, &b.username, &b.key_prefix, &b.sentinel, b.timeout)
                    && secret(&a.password) == secret(&b.password)
            }
            _ => false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    memory: Option<RawMemory>,
    file: Option<PathBuf>,
    redis: Option<RawRedis>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMemory {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    key_prefix: Option<String>,
    sentinel: Option<RawSentinel>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSentinel {
    #[serde(default)]
    master: String,
    #[serde(default)]
    urls: Vec<String>,
}

pub(super) fn state_config(
    raw: RawState,
    base: &Path,
    env: EnvLookup<'_>,
    problems: &mut Vec<Problem>,
) -> StateConfig {
    let chosen = [
        raw.memory.is_some(),
        raw.file.is_some(),
        raw.redis.is_some(),
    ];
    match chosen.iter().filter(|set| **set).count() {
        0 => return StateConfig::Memory,
        1 => {}
        _ => {
            problem(
                problems,
                "state",
                "set exactly one of memory, file and redis",
            );
            return StateConfig::Memory;
        }
    }
    if let Some(path) = raw.file {
        let path = base.join(path);
        if path.file_name().is_none() || path.is_dir() {
            problem(
                problems,
                "state.file",
                "must be the path of a file, not a directory",
            );
        } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            problem(
                problems,
                "state.file",
                format!("the directory {} does not exist", dir.display()),
            );
        }
        return StateConfig::File(path);
    }
    match raw.redis {
        Some(redis) => StateConfig::Redis(redis_config(redis, base, env, problems)),
        None => StateConfig::Memory,
    }
}

fn redis_config(
    raw: RawRedis,
    base: &Path,
    env: EnvLookup<'_>,
    problems: &mut Vec<Problem>,
) -> RedisConfig {
    if let Some(url) = &raw.url {
        check_url(url, "state.redis.url", problems);
    }
    let sentinel = raw.sentinel.map(|s| {
        if s.master.trim().is_empty() {
            problem(
                problems,
                "state.redis.sentinel.master",
                "missing: the name the sentinels know the master by",
            );
        }
        if s.urls.is_empty() {
            problem(
                problems,
                "state.redis.sentinel.urls",
                "missing: at least one sentinel, e.g. redis://sentinel-1:26379",
            );
        }
        for (i, url) in s.urls.iter().enumerate() {
            check_url(url, &format!("state.redis.sentinel.urls[{i}]"), problems);
        }
        SentinelConfig {
            master: s.master,
            urls: s.urls,
        }
    });
    if raw.url.is_none() && sentinel.is_none() {
        problem(
            problems,
            "state.redis.url",
            "missing: set url (e.g. redis://redis:6379/0) or sentinel",
        );
    }
    let password = match env(ENV_REDIS_PASSWORD) {
        Some(password) => Some(Secret::from(password)),
        None if raw.password.is_some() || raw.password_file.is_some() => secret_value(
            raw.password,
            raw.password_file,
            base,
            "state.redis.password",
            problems,
        ),
        None => None,
    };
    let timeout = parse_field(
        raw.timeout.as_deref(),
        parse_duration,
        Duration::from_millis(500),
        "state.redis.timeout",
        problems,
    );
    if timeout > Duration::from_secs(10) {
        problem(
            problems,
            "state.redis.timeout",
            "must be at most 10s: an SMS waits this long for the store before it goes out without it",
        );
    }
    RedisConfig {
        url: raw.url,
        username: raw.username.filter(|u| !u.is_empty()),
        password,
        key_prefix: raw
            .key_prefix
            .unwrap_or_else(|| "alertmanager-sipgate:".to_string()),
        sentinel,
        timeout,
    }
}

/// The URL must be one the Redis client takes, and carry no password: that belongs in
/// `password_file` or the environment, where it is not echoed with the URL.
fn check_url(url: &str, field: &str, problems: &mut Vec<Problem>) {
    match ::redis::parse_redis_url(url) {
        None => problem(
            problems,
            field,
            "must be a redis://, rediss:// (TLS), valkey:// or unix:// URL",
        ),
        Some(parsed) if parsed.password().is_some() => problem(
            problems,
            field,
            "must not contain a password; use state.redis.password_file or \
             ALERTMANAGER_SIPGATE_REDIS_PASSWORD",
        ),
        Some(_) => {}
    }
}
