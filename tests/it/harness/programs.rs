//! Child processes under one guard, and Debian's programs the tests run: Alertmanager and
//! Prometheus, each on a free loopback port; a missing program fails the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait::{eventually, wait_until_ok};

/// Every child process a test starts: killed and reaped when the test ends, also on a panic.
pub struct ChildGuard {
    child: Child,
    /// The child leads a process group of its own, and the whole group is killed with it.
    group: bool,
}

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard::spawn_as(command, false)
    }

    /// As `spawn`, for a program that starts programs of its own (chromedriver starts chromium,
    /// which outlives a killed chromedriver): the guard kills its whole process group, so that
    /// a failed test leaves no grandchild behind.
    pub fn spawn_with_its_children(command: &mut Command) -> ChildGuard {
        use std::os::unix::process::CommandExt;
        ChildGuard::spawn_as(command.process_group(0), true)
    }

    fn spawn_as(command: &mut Command, group: bool) -> ChildGuard {
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        ChildGuard { child, group }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager does.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal named `name` (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    pub async fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        eventually(limit, "the process exits", || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.group {
            // Before the child is reaped, so that its group id cannot have been reused.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.id())])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// For tests marked `#[ignore = "needs PROGRAM (apt-get install PACKAGE); run with: ..."]`: they
/// run only when asked for (`cargo test -- --include-ignored`, as CI does), and then a missing
/// program is a failure, never a silent pass.
pub fn require(program: &str, package: &str) {
    // `--version`, or `version` as openssl has it.
    let answers = |arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let found = answers("--version") || answers("version");
    assert!(
        found,
        "{program} is not installed: apt-get install {package} (.ci/run does)"
    );
}

/// A loopback port that was free a moment ago, for programs that take a port and not a socket.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's `prometheus-alertmanager` on a loopback port, without clustering, logging at debug
/// level to a file.
pub struct Alertmanager {
    pub url: String,
    log: PathBuf,
    command: Vec<String>,
    child: Option<ChildGuard>,
}

pub const ALERTMANAGER: &str = "prometheus-alertmanager";

impl Alertmanager {
    /// Runs Alertmanager on `config`, with its data in `data`.
    pub async fn start(config: &Path, data: &Path) -> Alertmanager {
        Alertmanager::start_in_cluster(config, data, "", &[]).await
    }

    /// As `start`, as a member of a gossip cluster: listening for peers on `cluster` and
    /// joining `peers`, as an HA pair or trio runs.
    pub async fn start_in_cluster(
        config: &Path,
        data: &Path,
        cluster: &str,
        peers: &[&str],
    ) -> Alertmanager {
        require(ALERTMANAGER, "prometheus-alertmanager");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        std::fs::create_dir_all(data).unwrap();
        let mut command = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--cluster.listen-address={cluster}"),
        ];
        command.extend(peers.iter().map(|p| format!("--cluster.peer={p}")));
        command.extend([
            "--cluster.peer-timeout=2s".to_string(),
            "--cluster.gossip-interval=50ms".to_string(),
            "--cluster.pushpull-interval=1s".to_string(),
            format!("--web.external-url={url}"),
            "--log.level=debug".to_string(),
        ]);
        let mut am = Alertmanager {
            url,
            log: data.join("alertmanager.log"),
            command,
            child: None,
        };
        am.start_again().await;
        am
    }

    /// An HA pair in one gossip cluster, the first on `configs[0]` with its data in `dirs[0]`,
    /// the second on `configs[1]`; returns once each sees the other.
    pub async fn start_pair(configs: [&Path; 2], dirs: [&Path; 2]) -> [Alertmanager; 2] {
        let gossip = format!("127.0.0.1:{}", free_port());
        let first = Alertmanager::start_in_cluster(configs[0], dirs[0], &gossip, &[]).await;
        let second = Alertmanager::start_in_cluster(
            configs[1],
            dirs[1],
            &format!("127.0.0.1:{}", free_port()),
            &[&gossip],
        )
        .await;
        eventually(
            Duration::from_secs(20),
            "the peers see each other",
            || async {
                let status: serde_json::Value =
                    reqwest::get(format!("{}/api/v2/status", first.url))
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                (status["cluster"]["peers"].as_array()?.len() == 2).then_some(())
            },
        )
        .await;
        [first, second]
    }

    /// Starts it again after `kill`, with the same flags and port.
    pub async fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(ChildGuard::spawn(
            Command::new(ALERTMANAGER)
                .args(&self.command)
                .stdout(Stdio::null())
                .stderr(log),
        ));
        wait_until_ok(
            &format!("{}/-/ready", self.url),
            Duration::from_secs(15),
            "Alertmanager",
        )
        .await;
    }

    /// SIGKILL: Alertmanager is gone, as when its node dies.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// How often Alertmanager has flushed an alert group so far: once per group_interval, also
    /// when it has nothing new to send. Waiting for flushes waits for Alertmanager's own time.
    pub fn flushes(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("msg=flushing"))
            .count()
    }

    /// Posts alerts to Alertmanager's API, as Prometheus does.
    pub async fn post_alerts(&self, alerts: serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(&alerts)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }
}

/// An Alertmanager config in `dir` that sends every alert to the service at `url` a second
/// after it arrives, again after `group_interval`, and repeats it after `repeat_interval`.
pub fn quick_alertmanager_config(
    dir: &Path,
    url: &str,
    group_interval: &str,
    repeat_interval: &str,
) -> PathBuf {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: sms\n  group_by: [alertname]\n  group_wait: 1s\n  \
             group_interval: {group_interval}\n  repeat_interval: {repeat_interval}\n\
             receivers:\n  - name: sms\n    webhook_configs:\n      - url: {url}/alerts\n        \
             send_resolved: true\n"
        ),
    )
    .unwrap();
    config
}

/// An Alertmanager config in `dir` that notifies nobody: for tests of its API alone.
pub fn silent_alertmanager_config(dir: &Path) -> PathBuf {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    config
}

/// Debian's `prometheus` on a loopback port with `config` (YAML) written to a folder of its own,
/// evaluating rules and sending alerts as fast as its flags allow.
pub struct Prometheus {
    pub url: String,
    _dir: tempfile::TempDir,
    _child: ChildGuard,
}

impl Prometheus {
    /// `files` are written beside the config (rule files it names).
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let port = free_port();
        let child = ChildGuard::spawn(
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--rules.alert.resend-delay=1s")
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap()),
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_until_ok(
            &format!("{url}/-/ready"),
            Duration::from_secs(30),
            "Prometheus",
        )
        .await;
        Prometheus {
            url,
            _dir: dir,
            _child: child,
        }
    }
}
