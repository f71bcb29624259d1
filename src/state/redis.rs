//! The state store that several replicas share: Redis 6 or later, or Valkey, directly, behind
//! Sentinel, or as a Redis Cluster. Each step is one Lua script, so it is atomic across replicas,
//! and the happy path of a notification is two round trips whatever its number of recipients
//! (`begin_all`, `settle_all`).
//!
//! On a cluster every key carries the key prefix as its hash tag (`{prefix}sms:...`), so that all
//! of them live in one slot: a script may only touch keys of one slot, and the open-incidents
//! script reads keys it builds itself.
//!
//! Time is the caller's clock, passed into each script, so that leases and windows mean the
//! same on every backend; Redis's own expiry only collects what is over (`PX`). Keys hold
//! phone-book names and SHA-256 hashes, never numbers or alert content.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::FutureExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Client, Cmd, FromRedisValue, IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError,
    RedisFuture, Script, ScriptInvocation, TlsMode, Value,
};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::{
    Answer, Begin, Eviction, GiveBack, Keep, MARK_TTL, Record, Settle, Settlement, Start,
    StateError, StateStore, Swap, Taken,
};
use crate::clock::{Clock, Millis, millis};
use crate::config::RedisConfig;
use crate::model::content_key::ContentKey;
use crate::ratelimit::Reservation;

/// How long a held-back count waits for the recipient's next SMS before it is forgotten.
pub const HELD_BACK_TTL: Duration = Duration::from_secs(7 * 86_400);

/// How often a request that found its SMS in flight elsewhere looks again.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// How long the key written by a ping lives.
const PROBE_TTL: Duration = Duration::from_secs(60);

/// Claims each SMS of a batch, in order, unless it is settled or held; holds it back when asked
/// (quiet hours); takes its rate-limit slots unless a limit is full (then it counts as held back
/// and is settled as such); takes the held-back count. Entries: `c:<lease end>:<claim id>`,
/// `s:<until>` (sent), `r:<until>` (rate-limited), `q:<until>` (quiet hours).
///
/// `KEYS[1]` is the total rate window; SMS `i` (from 0) has the keys `2 + 3i` (its entry), `3 + 3i`
/// (its recipient's window) and `4 + 3i` (its recipient's held-back count), and the arguments
/// from `3 + 11i` on, in the order they are read below. Answers two numbers per SMS.
const BEGIN: &str = r"
local now = tonumber(ARGV[1])
local held_ttl = ARGV[2]
local answers = {}
local function begin(entry_key, rate_key, held_key, a)
  local lease, claim, window = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local per, per_period = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local total, total_period = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local member, settled_until, lease_end = ARGV[a + 7], ARGV[a + 8], ARGV[a + 9]
  local entry = redis.call('GET', entry_key)
  if entry then
    local kind, ends, holder = string.match(entry, '^(%a):(%d+):?(%d*)')
    if ends and tonumber(ends) > now then
      if kind == 's' then return 1 end
      if kind == 'r' then return 2 end
      if kind == 'q' then return 6 end
      -- This very claim, asked again after its answer was lost: still this holder's.
      if holder == claim then return 7 end
      return 3
    end
  end
  if ARGV[a + 10] == '1' then
    redis.call('INCR', held_key)
    redis.call('PEXPIRE', held_key, held_ttl)
    redis.call('SET', entry_key, 'q:' .. settled_until, 'PX', window)
    return 5
  end
  local full = false
  if per > 0 then
    redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now - per_period)
    if redis.call('ZCARD', rate_key) >= per then full = true end
  end
  if total > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - total_period)
    if redis.call('ZCARD', KEYS[1]) >= total then full = true end
  end
  if full then
    redis.call('INCR', held_key)
    redis.call('PEXPIRE', held_key, held_ttl)
    redis.call('SET', entry_key, 'r:' .. settled_until, 'PX', window)
    return 4
  end
  if per > 0 then
    redis.call('ZADD', rate_key, now, member)
    redis.call('PEXPIRE', rate_key, per_period)
  end
  if total > 0 then
    redis.call('ZADD', KEYS[1], now, member)
    redis.call('PEXPIRE', KEYS[1], total_period)
  end
  redis.call('SET', entry_key, 'c:' .. lease_end .. ':' .. claim, 'PX', lease)
  return 0
end
for i = 0, (#KEYS - 1) / 3 - 1 do
  local held_key = KEYS[4 + 3 * i]
  local answer = begin(KEYS[2 + 3 * i], KEYS[3 + 3 * i], held_key, 3 + 11 * i)
  local held = 0
  if answer == 0 then
    held = tonumber(redis.call('GET', held_key) or '0')
    if held > 0 then redis.call('DEL', held_key) end
  end
  table.insert(answers, answer)
  table.insert(answers, held)
end
return answers
";

/// Per SMS a batch (`KEYS[i]`, arguments from `2 + 3(i - 1)` on: claim id, entry, window):
/// settles it unless another holder claimed it since this one's lease ran out.
const SETTLE: &str = r"
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local a = 2 + 3 * (i - 1)
  local entry = redis.call('GET', key)
  local ends, holder
  if entry then ends, holder = string.match(entry, '^c:(%d+):(%d+)$') end
  if not (holder and holder ~= ARGV[a] and tonumber(ends) > now) then
    redis.call('SET', key, ARGV[a + 1], 'PX', ARGV[a + 2])
  end
end
return 1
";

/// Releases this holder's claim, returns its slots and the held-back count it took.
const GIVE_BACK: &str = r"
local entry = redis.call('GET', KEYS[1])
if entry and string.match(entry, '^c:%d+:(%d+)$') == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[4], ARGV[3])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
return 1
";

const CLAIM_ONCE: &str = r"
local ends = redis.call('GET', KEYS[1])
if ends and tonumber(ends) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[2])
return 1
";

/// Keeps the latest (`ARGV[3]` = `latest`) or the earliest time of a mark.
const MARK: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '')
local at = tonumber(ARGV[1])
if not current or (ARGV[3] == 'latest' and at > current) or (ARGV[3] == 'earliest' and at < current) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
";

/// Writes an incident (a hash: `version`, `value`, `until`) if its version is still `ARGV[2]`
/// (empty: none, or expired by the caller's clock), and adds it to or removes it from the set of
/// open incidents (`KEYS[2]`), whose expiry is stretched to the longest record's in it. Returns
/// the new version, 0 when the version did not match.
const SWAP_INCIDENT: &str = r"
local now = tonumber(ARGV[1])
local current = redis.call('HMGET', KEYS[1], 'version', 'until')
local version = 0
if current[1] and current[2] and tonumber(current[2]) > now then
  version = tonumber(current[1])
end
if ARGV[2] == '' then
  if version ~= 0 then return 0 end
elseif version == 0 or version ~= tonumber(ARGV[2]) then
  return 0
end
version = version + 1
redis.call('HSET', KEYS[1], 'version', string.format('%d', version), 'value', ARGV[3], 'until', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[6] == '1' then
  redis.call('SADD', KEYS[2], ARGV[7])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
else
  redis.call('SREM', KEYS[2], ARGV[7])
end
return version
";

/// The members of the open set (`KEYS[1]`) whose record (`ARGV[1]` .. member) has not expired
/// by the caller's clock; the others leave the set. The record keys are made from the set's
/// members: on a cluster the hash tag puts them in the set's slot.
const OPEN_INCIDENTS: &str = r"
local now = tonumber(ARGV[2])
local open = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local ends = redis.call('HGET', ARGV[1] .. member, 'until')
  if ends and tonumber(ends) > now then
    table.insert(open, member)
  else
    redis.call('SREM', KEYS[1], member)
  end
end
return open
";

#[derive(Debug, thiserror::Error)]
#[error("state.redis: {0}")]
pub struct RedisSetupError(String);

pub struct RedisStore {
    connection: Connection,
    /// What every key starts with: the configured prefix, in braces on a cluster.
    prefix: String,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    scripts: Scripts,
    /// What the last ping read from `INFO`.
    eviction: Mutex<Option<Eviction>>,
}

struct Scripts {
    begin: Script,
    settle: Script,
    give_back: Script,
    claim_once: Script,
    mark: Script,
    swap_incident: Script,
    open_incidents: Script,
}

/// Where the commands go. A plain connection manager reconnects by itself after a lost
/// connection, but keeps a connection that Redis refused (a wrong password), so that one is
/// dropped and made anew; behind Sentinel the master can move, so a connection that fails is
/// dropped and the master asked for again. A cluster connection follows redirections and
/// failovers by itself, reading the cluster's layout again when a node fails.
enum Connection {
    Direct(Box<Direct>),
    Sentinel(Box<ViaSentinel>),
    Cluster(Cluster),
}

/// A cluster connection, and the master of the slot that holds every key of the service.
#[derive(Clone)]
struct Cluster {
    connection: ClusterConnection,
    home: Route,
}

impl Cluster {
    /// Sends `cmd` to the master of the service's slot.
    fn at_home(&mut self, cmd: Cmd) -> RedisFuture<'_, Value> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(self.home));
        Box::pin(self.connection.route_command(cmd, routing))
    }
}

/// One connection, whichever way the store reaches Redis.
#[derive(Clone)]
enum Link {
    Manager(ConnectionManager),
    Cluster(Cluster),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Manager(manager) => manager.req_packed_command(cmd),
            // The cluster's own routing loads a script on every node, and fails when one of
            // them does not answer; only the master of the service's slot runs it.
            Link::Cluster(cluster) => {
                if loads_a_script(cmd) {
                    cluster.at_home(cmd.clone())
                } else {
                    cluster.connection.req_packed_command(cmd)
                }
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Manager(manager) => manager.req_packed_commands(pipeline, offset, count),
            Link::Cluster(cluster) => cluster
                .connection
                .req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Manager(manager) => manager.get_db(),
            Link::Cluster(cluster) => cluster.connection.get_db(),
        }
    }
}

struct Direct {
    client: Client,
    current: Current,
    config: ConnectionManagerConfig,
}

struct ViaSentinel {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Current,
    config: ConnectionManagerConfig,
}

/// The connection in use; none until one is made, and again once it is dropped.
#[derive(Default)]
struct Current(Mutex<Option<ConnectionManager>>);

impl Current {
    fn get(&self) -> Option<ConnectionManager> {
        self.slot().clone()
    }

    fn set(&self, manager: ConnectionManager) {
        *self.slot() = Some(manager);
    }

    /// Drops the connection: the next call makes one anew.
    fn forget(&self) {
        *self.slot() = None;
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Sets up the connection without connecting: an unreachable Redis at start is an outage
    /// like any other, not a reason not to page. Call it on the runtime that sends.
    pub fn new(config: &RedisConfig, clock: Arc<dyn Clock>) -> Result<RedisStore, RedisSetupError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            // No retries inside one operation: they would hide the cause (a refused password
            // becomes "no answer in time"); the next operation connects again.
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_secs(1));
        // On a cluster the prefix is every key's hash tag.
        let prefix = if config.cluster.is_some() {
            format!("{{{}}}", config.key_prefix)
        } else {
            config.key_prefix.clone()
        };
        let connection = match (&config.cluster, &config.sentinel) {
            (Some(cluster), _) => {
                let mut nodes = Vec::with_capacity(cluster.urls.len());
                for url in &cluster.urls {
                    let info = url
                        .as_str()
                        .into_connection_info()
                        .map_err(|e| RedisSetupError(format!("cluster.urls: {e}")))?;
                    let redis = with_credentials(info.redis_settings().clone(), config);
                    nodes.push(info.set_redis_settings(redis));
                }
                let client = ClusterClient::builder(nodes)
                    // As above, no retries: the client would send a script again after a lost
                    // connection, and a second run of a step is not the first (a once-only
                    // event would be found taken). A redirection fails the operation, and the
                    // client reads the slot map again for the next one.
                    .retries(0)
                    .build()
                    .map_err(|e| RedisSetupError(format!("cluster.urls: {e}")))?;
                let home = Route::with_slot(Slot::for_key(&prefix), SlotAddr::Master);
                // Connects in the background: a cluster that is down at start is an outage.
                Connection::Cluster(Cluster {
                    connection: client.get_pending_async_connection_with_config(
                        redis::cluster::ClusterConfig::new()
                            .set_connection_timeout(config.timeout)
                            .set_response_timeout(config.timeout),
                    ),
                    home,
                })
            }
            (None, None) => {
                let url = config.url.as_deref().unwrap_or_default();
                let info = url
                    .into_connection_info()
                    .map_err(|e| RedisSetupError(format!("url: {e}")))?;
                let redis = with_credentials(info.redis_settings().clone(), config);
                let client = Client::open(info.set_redis_settings(redis))
                    .map_err(|e| RedisSetupError(format!("url: {e}")))?;
                let manager =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                        .map_err(|e| RedisSetupError(e.to_string()))?;
                Connection::Direct(Box::new(Direct {
                    client,
                    current: Current(Mutex::new(Some(manager))),
                    config: manager_config,
                }))
            }
            (None, Some(sentinel)) => {
                let master = match config.url.as_deref() {
                    Some(url) => url
                        .into_connection_info()
                        .map_err(|e| RedisSetupError(format!("url: {e}")))?,
                    None => "redis://localhost"
                        .into_connection_info()
                        .map_err(|e| RedisSetupError(e.to_string()))?,
                };
                let tls = matches!(master.addr(), redis::ConnectionAddr::TcpTls { .. });
                let redis = with_credentials(master.redis_settings().clone(), config);
                let mut node =
                    SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
                if tls {
                    node = node.set_tls_mode(TlsMode::Secure);
                }
                let client = SentinelClient::build(
                    sentinel.urls.clone(),
                    sentinel.master.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|e| RedisSetupError(format!("sentinel.urls: {e}")))?;
                Connection::Sentinel(Box::new(ViaSentinel {
                    sentinel: tokio::sync::Mutex::new(client),
                    current: Current::default(),
                    config: manager_config,
                }))
            }
        };
        Ok(RedisStore {
            connection,
            prefix,
            timeout: config.timeout,
            clock,
            scripts: Scripts {
                begin: Script::new(BEGIN),
                settle: Script::new(SETTLE),
                give_back: Script::new(GIVE_BACK),
                claim_once: Script::new(CLAIM_ONCE),
                mark: Script::new(MARK),
                swap_incident: Script::new(SWAP_INCIDENT),
                open_incidents: Script::new(OPEN_INCIDENTS),
            },
            eviction: Mutex::new(None),
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn sms_key(&self, key: ContentKey) -> String {
        self.key("sms", &key.hex())
    }

    fn incident_key(&self, key: &str) -> String {
        self.key("incident", key)
    }

    /// The set of the keys of open incidents.
    fn open_incidents_key(&self) -> String {
        self.key("incidents", "open")
    }

    /// The rate-limit and held-back keys of `recipient`: its window and its count.
    fn recipient_keys(&self, recipient: &str) -> [String; 2] {
        [self.key("rate", recipient), self.key("held", recipient)]
    }

    /// The window of every SMS, for the total rate limit.
    fn total_rate_key(&self) -> String {
        format!("{}rate-total", self.prefix)
    }

    async fn link(&self) -> Result<Link, RedisError> {
        match &self.connection {
            Connection::Direct(direct) => {
                let mut current = direct.current.slot();
                if let Some(manager) = current.as_ref() {
                    return Ok(Link::Manager(manager.clone()));
                }
                let manager = ConnectionManager::new_lazy_with_config(
                    direct.client.clone(),
                    direct.config.clone(),
                )?;
                *current = Some(manager.clone());
                Ok(Link::Manager(manager))
            }
            Connection::Cluster(cluster) => Ok(Link::Cluster(cluster.clone())),
            Connection::Sentinel(via) => {
                if let Some(manager) = via.current.get() {
                    return Ok(Link::Manager(manager));
                }
                // One asks the sentinels; those that queued behind it take its answer.
                let mut sentinel = via.sentinel.lock().await;
                if let Some(manager) = via.current.get() {
                    return Ok(Link::Manager(manager));
                }
                let client = sentinel.async_get_client().await?;
                let manager =
                    ConnectionManager::new_with_config(client, via.config.clone()).await?;
                via.current.set(manager.clone());
                Ok(Link::Manager(manager))
            }
        }
    }

    /// Runs one round trip within the timeout. Behind Sentinel, a connection that failed or a
    /// master that became a replica is dropped, so that the next call asks where the master is.
    async fn run<T, F>(&self, call: impl FnOnce(Link) -> F) -> Result<T, StateError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let result = tokio::time::timeout(self.timeout, async {
            let link = self.link().await?;
            call(link).await
        })
        .await;
        let (error, reconnect) = match result {
            Ok(Ok(value)) => return Ok(value),
            // The client's words: a kind and Redis's or the system's reason, never the URL.
            Ok(Err(e)) if refused_credentials(&e) => {
                // The manager would keep the refused connection: the next call connects anew.
                if let Connection::Direct(direct) = &self.connection {
                    direct.current.forget();
                }
                (
                    format!(
                        "authentication failed, check state.redis.username and \
                         state.redis.password ({e})"
                    ),
                    true,
                )
            }
            // Without the node's address and the slot, which read like a phone number to the log's
            // redaction.
            Ok(Err(e)) if moved_or_down(&e) => (
                format!(
                    "the cluster moved the service's slot or has no master for it now \
                     ({}: a failover or a resharding); the next operation follows it",
                    e.code().unwrap_or_default()
                ),
                false,
            ),
            // The client's own log has why no node took the connection; ours has what to check.
            Ok(Err(e)) if e.kind() == redis::ErrorKind::ClusterConnectionNotFound => (
                format!(
                    "no node of the cluster answered; check state.redis.cluster.urls, \
                     state.redis.username and state.redis.password ({e})"
                ),
                false,
            ),
            Ok(Err(e)) => (e.to_string(), lost_the_master(&e)),
            Err(_) => (
                format!("no answer within {:?} (state.redis.timeout)", self.timeout),
                true,
            ),
        };
        if reconnect && let Connection::Sentinel(via) = &self.connection {
            via.current.forget();
        }
        Err(StateError::Unavailable(error))
    }

    /// Runs a script in one round trip.
    async fn invoke<T: FromRedisValue>(
        &self,
        invocation: ScriptInvocation<'_>,
    ) -> Result<T, StateError> {
        self.run(|mut c| async move { invocation.invoke_async(&mut c).await })
            .await
    }
}

/// The configured ACL user and password, over what the URL says.
fn with_credentials(mut redis: RedisConnectionInfo, config: &RedisConfig) -> RedisConnectionInfo {
    if let Some(username) = &config.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &config.password {
        redis = redis.set_password(password.expose_secret());
    }
    redis
}

/// Whether `cmd` is `SCRIPT LOAD`.
fn loads_a_script(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().map(|arg| match arg {
        redis::Arg::Simple(bytes) => bytes,
        _ => &[],
    });
    matches!(
        (args.next(), args.next()),
        (Some(first), Some(second))
            if first.eq_ignore_ascii_case(b"SCRIPT") && second.eq_ignore_ascii_case(b"LOAD")
    )
}

/// Whether a cluster answered that the service's slot is elsewhere or has no master now.
fn moved_or_down(e: &RedisError) -> bool {
    matches!(e.code(), Some("MOVED" | "ASK" | "CLUSTERDOWN" | "TRYAGAIN"))
}

/// Whether Redis refused the configured user or password.
fn refused_credentials(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"))
}

/// Whether the master may have moved: the connection failed, or the server became a replica.
fn lost_the_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code() == Some("READONLY")
}

/// How the server evicts keys, from the text of `INFO`; `None` when it does not say (a managed
/// Redis may leave fields out).
fn eviction_of(info: &str) -> Option<Eviction> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let policy = field("maxmemory_policy")?.to_string();
    let maxmemory: u64 = field("maxmemory")?.parse().ok()?;
    Some(Eviction {
        evictable: policy != "noeviction" && maxmemory > 0,
        policy,
        evicted_keys: field("evicted_keys")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        server: field("run_id").unwrap_or_default().to_string(),
    })
}

/// What the begin script's two numbers (`answer`) for `request` mean.
fn start_of(request: &Begin<'_>, now: Millis, answer: &[u64]) -> Result<Start, StateError> {
    Ok(match answer {
        [1, _] => Start::Settled(Settlement::Sent),
        [2, _] => Start::Settled(Settlement::RateLimited),
        [3, _] => Start::InFlight,
        [4, _] => Start::RateLimited,
        [5, _] => Start::HeldBack,
        [6, _] => Start::Settled(Settlement::QuietHours),
        [0, held] => Start::Claimed(Taken {
            claim: request.claim,
            reservation: (limit(request.limits.per_recipient).0 > 0
                || limit(request.limits.total).0 > 0)
                .then_some(Reservation {
                    at: now,
                    id: request.claim.0,
                }),
            held: *held,
        }),
        // This claim already, from an earlier try whose answer was lost: its slot and count
        // were taken then, and a give-back leaves them (the slot ends with its window).
        [7, _] => Start::Claimed(Taken {
            claim: request.claim,
            reservation: None,
            held: 0,
        }),
        other => {
            return Err(StateError::Unavailable(format!(
                "unexpected answer {other:?} from the begin script"
            )));
        }
    })
}

fn limit(rate: Option<crate::ratelimit::Rate>) -> (u64, u64) {
    rate.map_or((0, 0), |r| (r.count as u64, millis(r.period).max(1)))
}

impl StateStore for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn begin<'a>(&'a self, request: Begin<'a>) -> Answer<'a, Start> {
        async move {
            let mut starts = self.begin_all(vec![request]).await?;
            starts.pop().ok_or_else(|| {
                StateError::Unavailable("no answer from the begin script".to_string())
            })
        }
        .boxed()
    }

    fn begin_all<'a>(&'a self, requests: Vec<Begin<'a>>) -> Answer<'a, Vec<Start>> {
        async move {
            if requests.is_empty() {
                return Ok(Vec::new());
            }
            let now = self.clock.now();
            let mut invocation = self.scripts.begin.prepare_invoke();
            invocation
                .key(self.total_rate_key())
                .arg(now)
                .arg(millis(HELD_BACK_TTL));
            for request in &requests {
                let [rate, held] = self.recipient_keys(request.recipient);
                let (per, per_period) = limit(request.limits.per_recipient);
                let (all, all_period) = limit(request.limits.total);
                let lease = millis(request.lease).max(1);
                let window = millis(request.window).max(1);
                invocation
                    .key(self.sms_key(request.key))
                    .key(rate)
                    .key(held)
                    .arg(lease)
                    .arg(request.claim.0.to_string())
                    .arg(window)
                    .arg(per)
                    .arg(per_period)
                    .arg(all)
                    .arg(all_period)
                    .arg(format!("{now}:{}", request.claim.0))
                    .arg(now + window)
                    .arg(now + lease)
                    .arg(if request.hold { "1" } else { "0" });
            }
            let reply: Vec<u64> = self.invoke(invocation).await?;
            if reply.len() != 2 * requests.len() {
                return Err(StateError::Unavailable(format!(
                    "{} numbers from the begin script for {} SMS",
                    reply.len(),
                    requests.len()
                )));
            }
            requests
                .iter()
                .zip(reply.chunks_exact(2))
                .map(|(request, answer)| start_of(request, now, answer))
                .collect()
        }
        .boxed()
    }

    fn settle(&self, request: Settle) -> Answer<'_, ()> {
        self.settle_all(vec![request])
    }

    fn settle_all(&self, requests: Vec<Settle>) -> Answer<'_, ()> {
        async move {
            if requests.is_empty() {
                return Ok(());
            }
            let now = self.clock.now();
            let mut invocation = self.scripts.settle.prepare_invoke();
            invocation.arg(now);
            for request in &requests {
                let window = millis(request.window).max(1);
                let kind = match request.settlement {
                    Settlement::Sent => 's',
                    Settlement::RateLimited => 'r',
                    Settlement::QuietHours => 'q',
                };
                invocation
                    .key(self.sms_key(request.key))
                    .arg(request.claim.0.to_string())
                    .arg(format!("{kind}:{}", now + window))
                    .arg(window);
            }
            let _: u64 = self.invoke(invocation).await?;
            Ok(())
        }
        .boxed()
    }

    fn give_back<'a>(&'a self, request: GiveBack<'a>) -> Answer<'a, ()> {
        async move {
            let GiveBack {
                key,
                recipient,
                taken,
            } = request;
            let [rate, held] = self.recipient_keys(recipient);
            let member = taken
                .reservation
                .map(|r| format!("{}:{}", r.at, r.id))
                .unwrap_or_default();
            let mut invocation = self.scripts.give_back.prepare_invoke();
            invocation
                .key(self.sms_key(key))
                .key(rate)
                .key(self.total_rate_key())
                .key(held)
                .arg(taken.claim.0.to_string())
                .arg(member)
                .arg(taken.held)
                .arg(millis(HELD_BACK_TTL));
            let _: u64 = self.invoke(invocation).await?;
            Ok(())
        }
        .boxed()
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> Answer<'_, bool> {
        async move {
            let sms_key = self.sms_key(key);
            loop {
                let entry: Option<String> = self
                    .run(|mut c| {
                        let sms_key = sms_key.clone();
                        async move { redis::cmd("GET").arg(sms_key).query_async(&mut c).await }
                    })
                    .await?;
                let lease_end = entry
                    .as_deref()
                    .and_then(|e| e.strip_prefix("c:"))
                    .and_then(|e| e.split(':').next())
                    .and_then(|ends| ends.parse::<u64>().ok());
                if lease_end.is_none_or(|ends| ends <= self.clock.now()) {
                    return Ok(true);
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                tokio::time::sleep(left.min(WAIT_POLL)).await;
            }
        }
        .boxed()
    }

    fn claim_once<'a>(&'a self, event: &'a str, ttl: Duration) -> Answer<'a, bool> {
        async move {
            let now = self.clock.now();
            let ttl = millis(ttl).max(1);
            let mut invocation = self.scripts.claim_once.prepare_invoke();
            invocation
                .key(self.key("once", event))
                .arg(now)
                .arg(ttl)
                .arg(now + ttl);
            let first: u64 = self.invoke(invocation).await?;
            Ok(first == 1)
        }
        .boxed()
    }

    fn mark<'a>(&'a self, name: &'a str, at: Millis, keep: Keep) -> Answer<'a, ()> {
        async move {
            let mut invocation = self.scripts.mark.prepare_invoke();
            invocation
                .key(self.key("mark", name))
                .arg(at)
                .arg(millis(MARK_TTL))
                .arg(match keep {
                    Keep::Latest => "latest",
                    Keep::Earliest => "earliest",
                });
            let _: u64 = self.invoke(invocation).await?;
            Ok(())
        }
        .boxed()
    }

    fn incident<'a>(&'a self, key: &'a str) -> Answer<'a, Option<Record>> {
        async move {
            let now = self.clock.now();
            let key = self.incident_key(key);
            let fields: (Option<u64>, Option<Vec<u8>>, Option<u64>) = self
                .run(|mut c| async move {
                    redis::cmd("HMGET")
                        .arg(key)
                        .arg("version")
                        .arg("value")
                        .arg("until")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Ok(match fields {
                (Some(version), Some(value), Some(until)) if until > now => {
                    Some(Record { version, value })
                }
                _ => None,
            })
        }
        .boxed()
    }

    fn swap_incident<'a>(&'a self, request: Swap<'a>) -> Answer<'a, Option<u64>> {
        async move {
            let now = self.clock.now();
            let ttl = millis(request.ttl).max(1);
            let mut invocation = self.scripts.swap_incident.prepare_invoke();
            invocation
                .key(self.incident_key(request.key))
                .key(self.open_incidents_key())
                .arg(now)
                .arg(request.expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(request.value)
                .arg(ttl)
                .arg(now + ttl)
                .arg(if request.open { "1" } else { "0" })
                .arg(request.key);
            let version: u64 = self.invoke(invocation).await?;
            Ok((version > 0).then_some(version))
        }
        .boxed()
    }

    fn open_incidents(&self) -> Answer<'_, Vec<String>> {
        async move {
            let mut invocation = self.scripts.open_incidents.prepare_invoke();
            invocation
                .key(self.open_incidents_key())
                .arg(self.incident_key(""))
                .arg(self.clock.now());
            self.invoke(invocation).await
        }
        .boxed()
    }

    fn marked<'a>(&'a self, name: &'a str) -> Answer<'a, Option<Millis>> {
        async move {
            let key = self.key("mark", name);
            let at: Option<u64> = self
                .run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
                .await?;
            Ok(at)
        }
        .boxed()
    }

    /// Writes a short-lived probe key, since a Redis out of memory answers reads but refuses
    /// writes; then reads `INFO` for how it evicts keys. A Redis that does not let the service
    /// read `INFO` (an ACL, a managed offering) is still up.
    fn ping(&self) -> Answer<'_, ()> {
        async move {
            let probe = self.key("probe", "ping");
            let now = self.clock.now();
            let _: () = self
                .run(|mut c| async move {
                    redis::cmd("SET")
                        .arg(probe)
                        .arg(now)
                        .arg("PX")
                        .arg(millis(PROBE_TTL))
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let info: Result<String, _> = self
                .run(|c| async move {
                    match c {
                        // A cluster's own routing asks every master; ours is the one that counts.
                        Link::Cluster(mut cluster) => {
                            let info = cluster.at_home(redis::cmd("INFO")).await?;
                            Ok(String::from_redis_value(info)?)
                        }
                        Link::Manager(mut manager) => {
                            redis::cmd("INFO").query_async(&mut manager).await
                        }
                    }
                })
                .await;
            *self.eviction.lock().unwrap_or_else(|p| p.into_inner()) =
                info.ok().as_deref().and_then(eviction_of);
            Ok(())
        }
        .boxed()
    }

    fn eviction(&self) -> Option<Eviction> {
        self.eviction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_script_load_is_sent_to_the_master_of_the_slot() {
        assert!(loads_a_script(
            redis::cmd("SCRIPT").arg("LOAD").arg("return 1")
        ));
        assert!(loads_a_script(
            redis::cmd("script").arg("load").arg("return 1")
        ));
        assert!(!loads_a_script(
            redis::cmd("SCRIPT").arg("EXISTS").arg("abc")
        ));
        assert!(!loads_a_script(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!loads_a_script(&redis::cmd("SCRIPT")));
    }
}
