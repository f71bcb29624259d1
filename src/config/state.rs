//! The `state:` section: where the ledger, the rate limits and the held-back counts live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::delivery::DeliveryConfig;
use super::field::{parse_duration, parse_field};
use super::problem::{Problem, problem};
use super::secret::{EnvLookup, Secret, optional_secret};

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
    /// `redis://` or `rediss://` (TLS); with `sentinel`, only its database, TLS and user count;
    /// unset with `cluster`.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Put before every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    pub sentinel: Option<SentinelConfig>,
    pub cluster: Option<ClusterConfig>,
    /// The longest one state operation may take before the SMS goes out without it.
    pub timeout: Duration,
}

/// A Redis Cluster (or a cluster-mode managed Redis or Valkey): the nodes to learn the
/// cluster's layout from, any of which will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub urls: Vec<String>,
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

    /// What differs from `other`, by field name; `None` when a reload may keep the running
    /// store (it is opened once, at start).
    pub fn changed_from(&self, other: &StateConfig) -> Option<&'static str> {
        match (self, other) {
            (StateConfig::Memory, StateConfig::Memory) => None,
            (StateConfig::File(a), StateConfig::File(b)) => (a != b).then_some("state.file"),
            (StateConfig::Redis(a), StateConfig::Redis(b)) => {
                let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose_secret().to_string());
                [
                    ("state.redis.url", a.url != b.url),
                    ("state.redis.username", a.username != b.username),
                    (
                        "state.redis.password",
                        secret(&a.password) != secret(&b.password),
                    ),
                    ("state.redis.key_prefix", a.key_prefix != b.key_prefix),
                    ("state.redis.sentinel", a.sentinel != b.sentinel),
                    ("state.redis.cluster", a.cluster != b.cluster),
                    ("state.redis.timeout", a.timeout != b.timeout),
                ]
                .into_iter()
                .find_map(|(field, changed)| changed.then_some(field))
            }
            _ => Some("state"),
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
    cluster: Option<RawCluster>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default)]
    urls: Vec<String>,
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
    delivery: &DeliveryConfig,
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
        Some(redis) => StateConfig::Redis(redis_config(redis, base, env, delivery, problems)),
        None => StateConfig::Memory,
    }
}

fn redis_config(
    raw: RawRedis,
    base: &Path,
    env: EnvLookup<'_>,
    delivery: &DeliveryConfig,
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
    let cluster = raw.cluster.map(|c| {
        if c.urls.is_empty() {
            problem(
                problems,
                "state.redis.cluster.urls",
                "missing: at least one node of the cluster, e.g. redis://redis-1:6379",
            );
        }
        for (i, url) in c.urls.iter().enumerate() {
            let field = format!("state.redis.cluster.urls[{i}]");
            if url.starts_with("unix:") {
                problem(
                    problems,
                    &field,
                    "must be a redis://, rediss:// (TLS) or valkey:// URL: cluster nodes are \
                     reached by host and port",
                );
            } else {
                check_url(url, &field, problems);
            }
        }
        ClusterConfig { urls: c.urls }
    });
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| "alertmanager-sipgate:".to_string());
    match (&raw.url, &sentinel, &cluster) {
        (None, None, None) => problem(
            problems,
            "state.redis.url",
            "missing: set url (e.g. redis://redis:6379/0), sentinel or cluster",
        ),
        (Some(_), _, Some(_)) => problem(
            problems,
            "state.redis.cluster",
            "set either url or cluster: a cluster is reached through its nodes' urls",
        ),
        (_, Some(_), Some(_)) => problem(
            problems,
            "state.redis.cluster",
            "set either sentinel or cluster: a cluster fails over by itself",
        ),
        _ => {}
    }
    // The prefix is the hash tag that keeps every key in one slot: Redis takes what is between
    // the first `{` and the next `}`, and hashes the whole key when that is empty.
    if cluster.is_some() && (key_prefix.is_empty() || key_prefix.contains(['{', '}'])) {
        problem(
            problems,
            "state.redis.key_prefix",
            "with cluster, must be non-empty and without { or }: it becomes the hash tag that \
             keeps all keys in one slot",
        );
    }
    let password = optional_secret(
        env(ENV_REDIS_PASSWORD),
        raw.password,
        raw.password_file,
        base,
        "state.redis.password",
        problems,
    );
    let timeout = parse_field(
        raw.timeout.as_deref(),
        parse_duration,
        Duration::from_millis(500),
        "state.redis.timeout",
        problems,
    );
    let budget = delivery.state_budget();
    if timeout > Duration::from_secs(10) && budget >= Duration::from_secs(10) {
        problem(
            problems,
            "state.redis.timeout",
            "must be at most 10s: an SMS waits this long for the store before it goes out without it",
        );
    } else if timeout > budget {
        problem(
            problems,
            "state.redis.timeout",
            format!(
                "must be at most {budget:?}: an SMS waits this long for the store before it goes \
                 out without it, and the send needs the rest of delivery.response_deadline \
                 ({:?}): 1s of it, or half of a deadline shorter than 2s",
                delivery.response_deadline
            ),
        );
    }
    RedisConfig {
        url: raw.url,
        username: raw.username.filter(|u| !u.is_empty()),
        password,
        key_prefix,
        sentinel,
        cluster,
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
        Some(parsed)
            if parsed.password().is_some()
                || parsed
                    .query_pairs()
                    .any(|(name, _)| name == "pass" || name == "password") =>
        {
            problem(
                problems,
                field,
                "must not contain a password; use state.redis.password_file or \
                 ALERTMANAGER_SIPGATE_REDIS_PASSWORD",
            )
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// `yaml` with a phone book and a route, so that the config pages somebody and only its
    /// other sections are under test.
    fn load(yaml: &str, env: EnvLookup<'_>) -> Result<Config, Vec<Problem>> {
        let base = std::env::temp_dir();
        let yaml = format!(
            "{yaml}\nrecipients: {{alice: \"+4915228817386\"}}\nroutes: [{{name: r, to: [alice]}}]\n"
        );
        Config::from_yaml(&yaml, &base.join("test.yml"), &base, env)
    }

    fn problems(yaml: &str) -> Vec<String> {
        load(yaml, &|_| None)
            .expect_err("config should be rejected")
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect()
    }

    fn state(yaml: &str) -> StateConfig {
        load(yaml, &|_| None).unwrap().state
    }

    #[test]
    fn memory_is_the_default_and_a_file_is_relative_to_the_config() {
        assert!(matches!(state(""), StateConfig::Memory));
        assert!(matches!(state("state: {memory: {}}"), StateConfig::Memory));
        match state("state: {file: state.redb}") {
            StateConfig::File(path) => assert_eq!(path, std::env::temp_dir().join("state.redb")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redis_takes_its_defaults_and_the_password_from_the_environment() {
        let yaml = "state: {redis: {url: \"rediss://redis.example:6380/2\", username: sms}}";
        let env = |name: &str| (name == ENV_REDIS_PASSWORD).then(|| "from-env".to_string());
        let StateConfig::Redis(redis) = load(yaml, &env).unwrap().state else {
            panic!("redis expected")
        };
        assert_eq!(redis.url.as_deref(), Some("rediss://redis.example:6380/2"));
        assert_eq!(redis.username.as_deref(), Some("sms"));
        assert_eq!(
            redis
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_string()),
            Some("from-env".to_string())
        );
        assert_eq!(redis.key_prefix, "alertmanager-sipgate:");
        assert_eq!(redis.timeout, Duration::from_millis(500));
        assert!(redis.sentinel.is_none());
        assert!(redis.cluster.is_none());
    }

    #[test]
    fn a_cluster_is_found_through_any_of_its_nodes() {
        let yaml = "state: {redis: {cluster: {urls: [\"redis://r1:6379\", \"rediss://r2:6380\"]}}}";
        let StateConfig::Redis(redis) = load(yaml, &|_| None).unwrap().state else {
            panic!("redis expected")
        };
        let urls = ["redis://r1:6379", "rediss://r2:6380"].map(String::from);
        assert_eq!(
            redis.cluster,
            Some(ClusterConfig {
                urls: urls.to_vec()
            })
        );
        assert_eq!(redis.url, None);
        assert_eq!(redis.key_prefix, "alertmanager-sipgate:");
    }

    #[test]
    fn a_password_and_its_file_are_refused_also_when_the_environment_sets_it() {
        let yaml = "state: {redis: {url: \"redis://r:6379/0\", password: a, password_file: b}}";
        let env = |name: &str| (name == ENV_REDIS_PASSWORD).then(|| "from-env".to_string());
        let refused: Vec<String> = load(yaml, &env)
            .expect_err("config should be rejected")
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        assert_eq!(
            refused,
            ["state.redis.password: set it or its _file variant, not both"]
        );
        assert_eq!(problems(yaml), refused);
    }

    #[test]
    fn each_mistake_names_its_field() {
        assert_eq!(
            problems("state: {memory: {}, file: x.redb}"),
            ["state: set exactly one of memory, file and redis"]
        );
        assert_eq!(
            problems("state: {redis: {}}"),
            ["state.redis.url: missing: set url (e.g. redis://redis:6379/0), sentinel or cluster"]
        );
        assert_eq!(
            problems("state: {redis: {url: \"http://redis:6379\"}}"),
            ["state.redis.url: must be a redis://, rediss:// (TLS), valkey:// or unix:// URL"]
        );
        assert_eq!(
            problems("state: {redis: {sentinel: {urls: []}, timeout: 1m}}"),
            [
                "state.redis.sentinel.master: missing: the name the sentinels know the master by",
                "state.redis.sentinel.urls: missing: at least one sentinel, e.g. redis://sentinel-1:26379",
                "state.redis.timeout: must be at most 4s: an SMS waits this long for the store \
                 before it goes out without it, and the send needs the rest of \
                 delivery.response_deadline (5s): 1s of it, or half of a deadline shorter than 2s",
            ]
        );
        assert_eq!(
            problems("state: {redis: {cluster: {urls: [\"http://r:1\"]}, key_prefix: \"{x}\"}}"),
            [
                "state.redis.cluster.urls[0]: must be a redis://, rediss:// (TLS), valkey:// or \
                 unix:// URL",
                "state.redis.key_prefix: with cluster, must be non-empty and without { or }: it \
                 becomes the hash tag that keeps all keys in one slot",
            ]
        );
        assert_eq!(
            problems("state: {redis: {url: \"redis://r:1\", cluster: {urls: []}}}"),
            [
                "state.redis.cluster.urls: missing: at least one node of the cluster, e.g. \
                 redis://redis-1:6379",
                "state.redis.cluster: set either url or cluster: a cluster is reached through \
                 its nodes' urls",
            ]
        );
        assert_eq!(
            problems("state: {file: no-such-dir/state.redb}"),
            [format!(
                "state.file: the directory {} does not exist",
                std::env::temp_dir().join("no-such-dir").display()
            )]
        );
    }

    #[test]
    fn the_timeout_leaves_time_to_send_inside_the_response_deadline() {
        let yaml = |timeout: &str, deadline: &str| {
            format!(
                "delivery: {{response_deadline: {deadline}}}\n\
                 state: {{redis: {{url: \"redis://r:6379/0\", timeout: {timeout}}}}}"
            )
        };
        let accepted =
            |timeout: &str, deadline: &str| load(&yaml(timeout, deadline), &|_| None).is_ok();
        assert!(
            accepted("4s", "5s"),
            "the largest with the default deadline"
        );
        assert!(accepted("3s", "5s"));
        assert!(accepted("500ms", "1s"), "half of a short deadline");
        assert_eq!(
            problems(&yaml("4001ms", "5s")),
            [
                "state.redis.timeout: must be at most 4s: an SMS waits this long for the store \
                 before it goes out without it, and the send needs the rest of \
                 delivery.response_deadline (5s): 1s of it, or half of a deadline shorter than 2s"
            ]
        );
        assert_eq!(problems(&yaml("600ms", "1s")).len(), 1);
        assert_eq!(
            problems(&yaml("11s", "60s")),
            [
                "state.redis.timeout: must be at most 10s: an SMS waits this long for the store \
                 before it goes out without it"
            ],
            "a long deadline leaves the store no more than 10s"
        );
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        let found = problems("state: {redis: {url: \"redis://user:hunter2@redis:6379\"}}");
        assert_eq!(
            found,
            [
                "state.redis.url: must not contain a password; use state.redis.password_file or \
              ALERTMANAGER_SIPGATE_REDIS_PASSWORD"
            ]
        );
        assert!(!found[0].contains("hunter2"));
        assert_eq!(
            problems("state: {redis: {url: \"unix:///run/redis.sock?pass=hunter2\"}}"),
            found
        );
    }

    #[test]
    fn a_reload_may_keep_the_store_only_when_nothing_in_it_changed() {
        let redis = |timeout: &str| {
            state(&format!(
                "state: {{redis: {{url: \"redis://r:6379/0\", timeout: {timeout}}}}}"
            ))
        };
        assert_eq!(redis("500ms").changed_from(&redis("500ms")), None);
        assert_eq!(
            redis("500ms").changed_from(&redis("1s")),
            Some("state.redis.timeout")
        );
        assert_eq!(
            redis("500ms").changed_from(&StateConfig::Memory),
            Some("state")
        );
        assert_eq!(StateConfig::Memory.changed_from(&StateConfig::Memory), None);
        assert_eq!(redis("1s").backend(), "redis");
    }
}
