//! Debian's `redis-server` and `redis-sentinel`: the shared state store of replicas.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::programs::{ChildGuard, free_port, require};
use super::wait::eventually;

/// Debian's `redis-server` on a loopback port, in a folder of its own, without persistence: the
/// state store of replicas in the tests. Stopped and started again on the same port to test an
/// outage.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// What redis-cli needs to talk to it (TLS).
    cli_args: Vec<String>,
    child: Option<ChildGuard>,
}

impl Redis {
    pub async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// A replica of the Redis on `master`.
    pub async fn replica_of(master: &Redis) -> Redis {
        Redis::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]).await
    }

    /// With these extra `redis-server` arguments (e.g. `--maxmemory`).
    pub async fn start_with(args: &[&str]) -> Redis {
        Redis::start_for_cli(args, &[]).await
    }

    /// One that takes only clients that give `password`.
    pub async fn start_with_password(password: &str) -> Redis {
        Redis::start_for_cli(
            &["--requirepass", password],
            &["-a", password, "--no-auth-warning"],
        )
        .await
    }

    async fn start_for_cli(args: &[&str], cli_args: &[&str]) -> Redis {
        require("redis-server", "redis-server");
        let port = free_port();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            args: ["--port", &port.to_string()]
                .iter()
                .chain(args)
                .map(ToString::to_string)
                .collect(),
            cli_args: cli_args.iter().map(ToString::to_string).collect(),
            child: None,
        };
        redis.start_again().await;
        redis
    }

    /// A Redis that speaks only TLS, with a certificate for `localhost` from a CA of its own
    /// (`ca_file`), made with openssl.
    pub async fn start_tls() -> Redis {
        require("redis-server", "redis-server");
        require("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.path().join("san"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san",
        ]);
        let port = free_port();
        let file = |name: &str| dir.path().join(name).display().to_string();
        let mut redis = Redis {
            port,
            args: vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                file("server.pem"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            cli_args: vec!["--tls".into(), "--cacert".into(), file("ca.pem")],
            dir,
            child: None,
        };
        redis.start_again().await;
        redis
    }

    /// The CA that signed a TLS Redis's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again after `kill`, on the same port, empty.
    pub async fn start_again(&mut self) {
        let log = self.dir.path().join("redis.log");
        self.child = Some(ChildGuard::spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .args(&self.args)
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(Stdio::null()),
        ));
        eventually(
            Duration::from_secs(10),
            "redis-server answers PING",
            || async { (self.cli(&["PING"]) == "PONG").then_some(()) },
        )
        .await;
    }

    /// SIGKILL, as a crash or a lost node.
    pub fn kill(&mut self) {
        self.child = None;
    }

    /// SIGSTOP: the connections stay open and nothing answers, as on a stalled host.
    pub fn pause(&self) {
        self.child.as_ref().unwrap().signal("STOP");
    }

    /// SIGCONT after `pause`: it answers what it was asked meanwhile.
    pub fn resume(&self) {
        self.child.as_ref().unwrap().signal("CONT");
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let cli_args: Vec<&str> = self.cli_args.iter().map(String::as_str).collect();
        redis_cli(self.port, &[cli_args.as_slice(), args].concat())
    }

    /// How often the server ran `command` (lower case) since it started: `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

/// `redis-cli -p PORT ARGS...`, its answer trimmed; empty when the server does not answer.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Debian's `redis-sentinel` watching `master` (quorum 1), on a loopback port.
pub struct Sentinel {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: ChildGuard,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl Sentinel {
    pub async fn start(master: &Redis) -> Sentinel {
        require("redis-sentinel", "redis-sentinel");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        // Sentinel rewrites its config file as the topology changes.
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 5000\n",
                dir.path().display(),
                master.port
            ),
        )
        .unwrap();
        let child = ChildGuard::spawn(
            Command::new("redis-sentinel")
                .arg(&config)
                .stdout(std::fs::File::create(dir.path().join("sentinel.log")).unwrap())
                .stderr(Stdio::null()),
        );
        let sentinel = Sentinel {
            port,
            _dir: dir,
            _child: child,
        };
        sentinel.wait_for_master(master).await;
        sentinel
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until the sentinel names `master` as the master.
    pub async fn wait_for_master(&self, master: &Redis) {
        let expected = master.port;
        eventually(
            Duration::from_secs(30),
            &format!("the sentinel names 127.0.0.1:{expected} the master"),
            || {
                let known = self.master_port();
                async move { (known == Some(expected)).then_some(()) }
            },
        )
        .await;
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> Option<u16> {
        let answer = redis_cli(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
        );
        answer.lines().nth(1)?.trim().parse().ok()
    }
}
