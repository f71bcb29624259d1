//! The service's config as the tests write it (typed, serialised to YAML), the token and phone
//! numbers in it, and the example configs of the repository as an operator installs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::redis::{Redis, RedisCluster};

pub const TOKEN_ID: &str = "token-AB12CD";
pub const TOKEN: &str = "00000000-1111-4222-8333-444444444444";
/// `Basic base64("token-AB12CD:00000000-1111-4222-8333-444444444444")`, computed outside the code.
pub const AUTHORIZATION: &str =
    "Basic dG9rZW4tQUIxMkNEOjAwMDAwMDAwLTExMTEtNDIyMi04MzMzLTQ0NDQ0NDQ0NDQ0NA==";
/// The `server.auth` Basic credentials of `TestConfig::with_basic_auth`.
pub const SERVER_USER: &str = "am";
pub const SERVER_PASSWORD: &str = "pw";
pub const ALICE: &str = "+4915228817386";
pub const BOB: &str = "+4915254599371";
/// Not in the shared phone book: tests that need a third person add her.
pub const CAROL: &str = "+4915799912345";

/// The service's config as the tests write it: typed, and serialised to YAML, so that a test
/// changes a field instead of editing YAML text.
#[derive(Debug, Clone, Serialize)]
pub struct TestConfig {
    pub sipgate: TestSipgate,
    /// A number, or `{number, quiet_hours}`.
    pub recipients: BTreeMap<String, Value>,
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub schedules: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub time_intervals: Vec<Value>,
    pub routes: Vec<TestRoute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<Value>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub delivery: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub escalation_policies: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<Value>,
}

/// The `sipgate:` section.
#[derive(Debug, Clone, Serialize)]
pub struct TestSipgate {
    pub api_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub sms_id: String,
    pub timeout: String,
    pub check_credentials: bool,
}

/// One of `routes:`.
#[derive(Debug, Clone, Serialize)]
pub struct TestRoute {
    pub name: String,
    pub matchers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_segments: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_quiet_hours: bool,
}

impl TestRoute {
    pub fn new(name: &str, matchers: &[&str], to: &[&str]) -> Self {
        TestRoute {
            name: name.to_string(),
            matchers: matchers.iter().map(ToString::to_string).collect(),
            to: to.iter().map(ToString::to_string).collect(),
            escalation: None,
            template: None,
            send_resolved: None,
            max_segments: None,
            active_time_intervals: Vec::new(),
            mute_time_intervals: Vec::new(),
            ignore_quiet_hours: false,
        }
    }
}

impl TestConfig {
    /// The phone book and routes the tests share; Sipgate is the fake at `api_url`. Critical
    /// alerts go to alice and bob (two segments), warnings of api/db to alice (compact, no
    /// resolved).
    pub fn new(api_url: &str) -> Self {
        TestConfig {
            sipgate: TestSipgate {
                api_url: format!("{api_url}/v2"),
                token_id: Some(TOKEN_ID.to_string()),
                token: Some(TOKEN.to_string()),
                sms_id: "s0".to_string(),
                timeout: "5s".to_string(),
                check_credentials: false,
            },
            recipients: BTreeMap::from([
                ("alice".to_string(), ALICE.into()),
                ("bob".to_string(), BOB.into()),
            ]),
            groups: BTreeMap::from([(
                "oncall".to_string(),
                vec!["alice".to_string(), "bob".to_string()],
            )]),
            schedules: BTreeMap::new(),
            time_intervals: Vec::new(),
            routes: vec![
                TestRoute {
                    max_segments: Some(2),
                    ..TestRoute::new("critical", &["severity=\"critical\""], &["oncall"])
                },
                TestRoute {
                    template: Some("compact".to_string()),
                    send_resolved: Some(false),
                    ..TestRoute::new(
                        "warnings",
                        &["severity=\"warning\"", "service=~\"api|db\""],
                        &["alice"],
                    )
                },
            ],
            templates: None,
            delivery: serde_json::Map::new(),
            server: None,
            state: None,
            watchdog: None,
            web: None,
            escalation_policies: BTreeMap::new(),
            alertmanager: None,
        }
    }

    /// As `new`, with a 1 s response deadline, so that fault tests run in seconds.
    pub fn faults(api_url: &str) -> Self {
        TestConfig::new(api_url).delivery("response_deadline", "1s")
    }

    /// Sets one `delivery:` field.
    pub fn delivery(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.delivery.insert(field.to_string(), value.into());
        self
    }

    pub fn server(mut self, server: Value) -> Self {
        self.server = Some(server);
        self
    }

    /// Everything behind `server.auth` Basic credentials (`SERVER_USER`, `SERVER_PASSWORD`).
    pub fn with_basic_auth(self) -> Self {
        self.server(serde_json::json!({"auth": {"basic": {
            "username": SERVER_USER, "password": SERVER_PASSWORD
        }}}))
    }

    /// The `state:` section, e.g. `{"redis": {"url": ...}}`.
    pub fn state(mut self, state: Value) -> Self {
        self.state = Some(state);
        self
    }

    /// The state on `redis`, shared by every service started on this config.
    pub fn on_redis(self, redis: &Redis) -> Self {
        self.on_redis_with_timeout(redis, "500ms")
    }

    /// As `on_redis`, with this `state.redis.timeout`.
    pub fn on_redis_with_timeout(self, redis: &Redis, timeout: &str) -> Self {
        self.state(serde_json::json!({"redis": {"url": redis.url(), "timeout": timeout}}))
    }

    /// The state on `cluster`, found through any of its nodes, shared by every service started
    /// on this config.
    pub fn on_redis_cluster(self, cluster: &RedisCluster) -> Self {
        self.state(serde_json::json!({"redis": {
            "cluster": {"urls": cluster.urls()},
            "timeout": "500ms",
        }}))
    }

    /// The route named `name`, to change it.
    pub fn route(&mut self, name: &str) -> &mut TestRoute {
        self.routes
            .iter_mut()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no route {name:?} in the test config"))
    }

    pub fn yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap()
    }
}

/// Writes `yaml` as `config.yml` into `dir`; its path.
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let config = dir.join("config.yml");
    std::fs::write(&config, yaml).unwrap();
    config
}

/// The shared config as YAML.
pub fn config_yaml(api_url: &str) -> String {
    TestConfig::new(api_url).yaml()
}

/// The shared config with a 1 s response deadline, as YAML.
pub fn fault_config(api_url: &str) -> String {
    TestConfig::faults(api_url).yaml()
}

/// Replaces the one place where `from` stands in `text`; a config edit that misses (or hits
/// twice) fails the test instead of silently testing another config.
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must stand exactly once in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The shared secret the example configs read from `sms-password`, in the tests.
pub const EXAMPLE_SECRET: &str = "Zm9yLXRoZS1leGFtcGxlLXRlc3Q=";

/// A file of the repository's `examples/` folder.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `examples/config.yml` with its templates in a folder of its own, as an operator installs it,
/// with the shared secret in `sms-password` beside it. `edit` changes the parsed config; without
/// it the file is copied byte for byte.
pub fn example_service_dir(edit: Option<&dyn Fn(&mut yaml_serde::Value)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example("config.yml")).unwrap();
    let text = match edit {
        None => text,
        Some(edit) => {
            let mut config: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
            edit(&mut config);
            yaml_serde::to_string(&config).unwrap()
        }
    };
    std::fs::write(dir.path().join("config.yml"), text).unwrap();
    std::fs::create_dir(dir.path().join("templates")).unwrap();
    for entry in std::fs::read_dir(example("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            dir.path().join("templates").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("sms-password"),
        format!("{EXAMPLE_SECRET}\n"),
    )
    .unwrap();
    dir
}
