//! Debian's `redis-server`, `redis-sentinel` and `redis-cli --cluster`: the shared state store of
//! replicas, alone, behind Sentinel or as a Redis Cluster.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;

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

    /// Whether it runs: not killed, or started again since.
    fn is_running(&self) -> bool {
        self.child.is_some()
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
}

/// What a Redis ran since it started or `reset_stats`, from `INFO commandstats`: for tests that
/// count the service's round trips. Commands a script runs count too, and so do those a replica
/// applies from its master (a script's writes, between `multi` and `exec`) and the `replconf`
/// acknowledgements a master gets from its replicas.
pub trait CommandStats {
    /// `CONFIG RESETSTAT`: the counts start again from now.
    fn reset_stats(&self);

    /// How often `command` (lower case, e.g. `evalsha`) ran.
    fn calls(&self, command: &str) -> u64;

    /// The commands that ran, lower case, a subcommand as `config|resetstat`.
    fn commands(&self) -> Vec<String>;

    /// `INFO commandstats`, for a failure's message.
    fn stats(&self) -> String;

    /// Fails on any command but the store's scripts, what they run inside, the health check's
    /// `set` and `info`, the test's own `config|resetstat`, and `also`.
    fn assert_only_the_stores_commands(&self, also: &[&str]) {
        const EXPECTED: [&str; 9] = [
            "evalsha",
            "get",
            "set",
            "zremrangebyscore",
            "zcard",
            "zadd",
            "pexpire",
            "config|resetstat",
            "info",
        ];
        let stats = self.stats();
        for command in self.commands() {
            assert!(
                EXPECTED.contains(&command.as_str()) || also.contains(&command.as_str()),
                "unexpected {command}:\n{stats}"
            );
        }
    }
}

impl CommandStats for Redis {
    fn reset_stats(&self) {
        self.cli(&["CONFIG", "RESETSTAT"]);
    }

    fn calls(&self, command: &str) -> u64 {
        let prefix = format!("cmdstat_{command}:calls=");
        self.stats()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }

    fn commands(&self) -> Vec<String> {
        self.stats()
            .lines()
            .filter_map(|l| Some(l.strip_prefix("cmdstat_")?.split(':').next()?.to_string()))
            .collect()
    }

    fn stats(&self) -> String {
        self.cli(&["INFO", "commandstats"])
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

/// A Redis Cluster of Debian's `redis-server` on loopback: three masters with a replica each,
/// made by `redis-cli --cluster create` as an operator makes one. A lost master is replaced by
/// its replica within seconds, so that tests can fail one over under traffic. Every node is
/// killed when the test ends.
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

/// Three masters and a replica of each: the smallest cluster that fails over by itself.
const NODES_IN_CLUSTER: usize = 6;
const MASTERS_IN_CLUSTER: usize = 3;

/// Every key of a Redis Cluster hashes to one of these slots.
const CLUSTER_SLOTS: usize = 16384;

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        require("redis-server", "redis-server");
        require("redis-cli", "redis-tools");
        let nodes = join_all((0..NODES_IN_CLUSTER).map(|_| RedisCluster::start_node())).await;
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "redis-cli --cluster create:\n{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes };
        eventually(
            Duration::from_secs(30),
            "every node sees all slots served by 3 masters with a replica each, replicas in sync",
            || async { cluster.is_whole().then_some(()) },
        )
        .await;
        cluster
    }

    /// A node that fails over fast: it gives a master up after a second without an answer, and
    /// as a replica takes over however long ago it last heard from its master (validity factor
    /// 0); as a master it syncs a new replica at once instead of waiting for more to come.
    async fn start_node() -> Redis {
        // The bus is on port + 10000 unless told otherwise: past 65535 for a high free port.
        let bus = free_port().to_string();
        Redis::start_with(&[
            "--cluster-enabled",
            "yes",
            // Relative: in the node's own folder (`--dir`).
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &bus,
            "--cluster-node-timeout",
            "1000",
            "--cluster-replica-validity-factor",
            "0",
            "--repl-diskless-sync-delay",
            "0",
        ])
        .await
    }

    /// `redis://127.0.0.1:PORT` of every node, as `state.redis.cluster.urls` takes them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port))
            .collect()
    }

    /// `redis-cli ARGS...` against node `node`, its answer trimmed; empty when it does not
    /// answer.
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        self.nodes[node].cli(args)
    }

    /// SIGKILL of node `node`, as a crash or a lost host.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
    }

    /// The slot `key` hashes to (its hash tag's, when it has one).
    pub fn slot_of(&self, key: &str) -> u16 {
        let first = self.running().next().expect("no node of the cluster runs");
        let answer = self.cli(first, &["CLUSTER", "KEYSLOT", key]);
        answer
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {answer:?}"))
    }

    /// The node that serves the slot of `key` now, as every running node names it; fails the
    /// test while they disagree (during a failover: see `wait_for_new_master`).
    pub fn master_of(&self, key: &str) -> usize {
        let slot = self.slot_of(key);
        self.agreed_master(slot).unwrap_or_else(|| {
            let views: Vec<String> = self
                .running()
                .map(|i| self.cli(i, &["CLUSTER", "NODES"]))
                .collect();
            panic!("the nodes do not agree on the master of slot {slot}:\n{views:#?}")
        })
    }

    /// Waits until a replica has taken the slot of `key` over from `killed`, and every running
    /// node says the cluster is ok and names that replica: from then on a client finds the slot
    /// served whichever node it asks. The new master.
    pub async fn wait_for_new_master(&self, key: &str, killed: usize) -> usize {
        let slot = self.slot_of(key);
        eventually(
            Duration::from_secs(30),
            &format!("a replica takes slot {slot} over from node {killed}"),
            || async {
                let promoted = self.agreed_master(slot).filter(|m| *m != killed)?;
                let healthy = self.running().all(|i| {
                    self.cli(i, &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                });
                (healthy && self.is_master(promoted)).then_some(promoted)
            },
        )
        .await
    }

    /// `KEYS *` of every running master, by node: a replica holds copies of its master's.
    pub fn keys(&self) -> std::collections::BTreeMap<usize, Vec<String>> {
        self.masters()
            .into_iter()
            .map(|i| {
                let keys = self.cli(i, &["KEYS", "*"]);
                (i, keys.lines().map(ToString::to_string).collect())
            })
            .collect()
    }

    /// The nodes not killed.
    fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_running())
    }

    /// The running nodes that serve as masters now.
    pub fn masters(&self) -> Vec<usize> {
        self.running().filter(|i| self.is_master(*i)).collect()
    }

    /// Whether node `node` serves as a master now (it answers `ROLE` so).
    pub fn is_master(&self, node: usize) -> bool {
        self.cli(node, &["ROLE"]).lines().next() == Some("master")
    }

    /// The master of `slot` that every running node names, when they agree on one.
    fn agreed_master(&self, slot: u16) -> Option<usize> {
        let mut named = self.running().map(|viewer| {
            let view = self.view(viewer);
            let master = view
                .iter()
                .find(|n| n.master && !n.failing && n.slots.iter().any(|s| s.contains(&slot)))?;
            self.nodes.iter().position(|node| node.port == master.port)
        });
        let first = named.next()??;
        named.all(|other| other == Some(first)).then_some(first)
    }

    /// Whether every node sees the cluster formed: all slots served, three masters with a
    /// replica each, and every replica in sync with its master (so that it can take over).
    fn is_whole(&self) -> bool {
        self.running().all(|i| {
            let info = self.cli(i, &["CLUSTER", "INFO"]);
            let view = self.view(i);
            let masters = view.iter().filter(|n| n.master && !n.failing).count();
            let replicas = view.iter().filter(|n| n.replica && !n.failing).count();
            let in_sync = self.is_master(i)
                || self
                    .cli(i, &["INFO", "replication"])
                    .contains("master_link_status:up");
            info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_slots_assigned:{CLUSTER_SLOTS}"))
                && masters == MASTERS_IN_CLUSTER
                && replicas == NODES_IN_CLUSTER - MASTERS_IN_CLUSTER
                && in_sync
        })
    }

    /// The cluster as node `viewer` sees it: `CLUSTER NODES`.
    fn view(&self, viewer: usize) -> Vec<ClusterNode> {
        self.cli(viewer, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(ClusterNode::parse)
            .collect()
    }
}

/// The running nodes together: a client's commands go to masters, and replicas apply the writes.
impl CommandStats for RedisCluster {
    fn reset_stats(&self) {
        for i in self.running() {
            self.nodes[i].reset_stats();
        }
    }

    fn calls(&self, command: &str) -> u64 {
        self.running().map(|i| self.nodes[i].calls(command)).sum()
    }

    fn commands(&self) -> Vec<String> {
        let mut commands: Vec<String> = self
            .running()
            .flat_map(|i| self.nodes[i].commands())
            .collect();
        commands.sort_unstable();
        commands.dedup();
        commands
    }

    fn stats(&self) -> String {
        self.running()
            .map(|i| format!("node {i}:\n{}", self.nodes[i].stats()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A node as one member of the cluster sees it: a line of `CLUSTER NODES`, e.g.
/// `<id> 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460`.
struct ClusterNode {
    port: u16,
    master: bool,
    replica: bool,
    /// Marked failed (`fail`) or suspected (`fail?`).
    failing: bool,
    slots: Vec<RangeInclusive<u16>>,
}

impl ClusterNode {
    fn parse(line: &str) -> Option<ClusterNode> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?.split('@').next()?;
        let port = address.rsplit(':').next()?.parse().ok()?;
        let flags: Vec<&str> = fields.get(2)?.split(',').collect();
        let slots = fields
            .iter()
            .skip(8)
            // `[slot->-node]`: a slot on the move, not served here yet.
            .filter(|field| !field.starts_with('['))
            .filter_map(|field| match field.split_once('-') {
                Some((first, last)) => Some(first.parse().ok()?..=last.parse().ok()?),
                None => field.parse().ok().map(|slot| slot..=slot),
            })
            .collect();
        Some(ClusterNode {
            port,
            master: flags.contains(&"master"),
            replica: flags.contains(&"slave"),
            failing: flags.iter().any(|flag| flag.starts_with("fail")),
            slots,
        })
    }
}
