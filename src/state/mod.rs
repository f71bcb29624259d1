//! What the service remembers between notifications: which SMS went out or are going out (the
//! ledger), the rate limits and what they held back, and events that must happen once. The
//! `StateStore` seam: `memory` keeps it in this process, `file` in an embedded database that
//! outlives a restart, `redis` in a Redis or Valkey that several replicas share. `monitored`
//! wraps any of them with the metrics and logs of an outage.
//!
//! Keys carry no phone number and no alert content: recipient names and SHA-256 hashes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::clock::{Clock, Millis};
use crate::config::StateConfig;
use crate::metrics::Metrics;
use crate::model::content_key::ContentKey;
use crate::ratelimit::{Limits, Reservation};

#[cfg(test)]
pub mod faulty;
pub mod file;
pub mod memory;
pub mod monitored;
pub mod redis;

pub use file::FileStore;

/// Which of two marks of the same name stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Latest,
    Earliest,
}

impl Keep {
    pub fn of(self, a: Millis, b: Millis) -> Millis {
        match self {
            Keep::Latest => a.max(b),
            Keep::Earliest => a.min(b),
        }
    }
}

/// How long a mark (a heartbeat) is remembered.
pub const MARK_TTL: Duration = Duration::from_secs(30 * 86_400);
pub use memory::MemoryStore;
pub use redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    File(#[from] file::FileError),
    #[error(transparent)]
    Redis(#[from] redis::RedisSetupError),
}

/// The configured store, watched (`monitored`). Call it inside `runtime`, the one that sends:
/// the file store writes and the Redis connection lives there.
pub fn open(
    config: &StateConfig,
    clock: Arc<dyn Clock>,
    runtime: &Handle,
    metrics: Metrics,
) -> Result<Arc<dyn StateStore>, OpenError> {
    let store: Arc<dyn StateStore> = match config {
        StateConfig::Memory => Arc::new(MemoryStore::new(memory::DEFAULT_CAPACITY, clock)),
        StateConfig::File(path) => match FileStore::open(path, clock.clone()) {
            Ok(store) => {
                let store = Arc::new(store);
                store.write_behind(runtime);
                store
            }
            // Another instance serves with this file.
            Err(e) if e.kind == file::FileErrorKind::InUse => return Err(e.into()),
            // The pager goes on without the file: the first ping reports it, `state_up` stays 0.
            Err(e) => Arc::new(FileStore::unopened(&e, clock)),
        },
        StateConfig::Redis(redis) => Arc::new(RedisStore::new(redis, clock)?),
    };
    Ok(Arc::new(monitored::Monitored::new(store, metrics)))
}

/// Why an SMS is not to be sent again within the dedup window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Sent,
    RateLimited,
    /// Held back for the recipient's quiet hours.
    QuietHours,
}

/// Identifies one holder's claim, so that a holder whose lease ran out cannot settle or release
/// the claim someone else took since. Random, so that replicas do not collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimId(pub u64);

impl ClaimId {
    pub fn random() -> Self {
        ClaimId(fastrand::u64(..))
    }
}

/// What an SMS asks of the store before it is sent.
#[derive(Debug, Clone, Copy)]
pub struct Begin<'a> {
    pub key: ContentKey,
    /// Chosen by the caller, so that it can settle or give back a claim whose answer it never
    /// got (a timeout after the store took it): both are harmless when the claim was not taken.
    pub claim: ClaimId,
    /// Phone-book name: the rate limits and held-back counts are kept per name.
    pub recipient: &'a str,
    /// How long a claim holds: longer than one send with its retries.
    pub lease: Duration,
    /// How long an SMS held back by a limit is not tried again.
    pub window: Duration,
    pub limits: Limits,
    /// Hold it back on purpose (quiet hours): count it for the recipient's next SMS and settle
    /// it as `QuietHours`, unless it was settled already.
    pub hold: bool,
    /// When the caller stops waiting for the answer, so that the SMS still goes out inside the
    /// response deadline (without the store); `monitored` holds every store to it.
    pub answer_by: Instant,
}

/// What an SMS that went out asks of the store.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    pub key: ContentKey,
    /// The claim it was sent under: a holder whose lease ran out does not settle over the
    /// claim someone else took since.
    pub claim: ClaimId,
    pub settlement: Settlement,
    /// How long it is not sent again.
    pub window: Duration,
}

/// What an SMS that was not sent gives back to the store: what `begin` took for it.
#[derive(Debug, Clone, Copy)]
pub struct GiveBack<'a> {
    pub key: ContentKey,
    /// Whose rate-limit slot and held-back count come back.
    pub recipient: &'a str,
    pub taken: Taken,
}

/// What the store holds for an SMS it let through, until it is settled or given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    pub claim: ClaimId,
    /// The rate-limit slot; `None` when no limit applies.
    pub reservation: Option<Reservation>,
    /// How many SMS to the recipient were held back before this one, for it to report.
    pub held: u64,
}

/// The store's word on an SMS before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Nobody is sending it, it was not settled in the window and no limit holds it back: the
    /// caller holds it now, until it settles it, gives it back, or the lease ends.
    Claimed(Taken),
    /// Settled within the window.
    Settled(Settlement),
    /// Someone else holds it right now.
    InFlight,
    /// A rate limit held it back just now: counted for the recipient's next SMS, and settled as
    /// `RateLimited` for the window.
    RateLimited,
    /// Held back just now as asked (`Begin::hold`): counted, and settled as `QuietHours`.
    HeldBack,
}

/// An incident as the store keeps it: opaque bytes with a version that every write raises, so
/// that replicas change it by compare-and-swap and none overwrites what another wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub version: u64,
    pub value: Vec<u8>,
}

/// What `swap_incident` asks: write `value` at `key` if the record there still has version
/// `expected` (`None`: if there is none).
#[derive(Debug, Clone, Copy)]
pub struct Swap<'a> {
    /// An incident id: a hash, no alert content.
    pub key: &'a str,
    pub expected: Option<u64>,
    pub value: &'a [u8],
    /// How long the record is kept after this write.
    pub ttl: Duration,
    /// Whether `open_incidents` lists the key after this write.
    pub open: bool,
}

/// How a store that may drop keys under memory pressure (Redis's `maxmemory`) is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Redis's `maxmemory-policy`.
    pub policy: String,
    /// Whether the policy may evict the service's keys, all of which expire: any policy but
    /// `noeviction` while `maxmemory` is set.
    pub evictable: bool,
    /// Keys the server evicted since it started, any keys (`evicted_keys`).
    pub evicted_keys: u64,
    /// Which server counted them (`run_id`): a restart or a failover starts another count.
    pub server: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// What every operation of a store returns: boxed, so that `StateStore` is a trait object.
pub type Answer<'a, T> = BoxFuture<'a, Result<T, StateError>>;

/// Where the ledger, the rate limits and once-only events live. Every operation is atomic, also
/// across replicas sharing the store; time is the store's `Clock`.
pub trait StateStore: fmt::Debug + Send + Sync {
    /// For logs and `/-/ready`.
    fn name(&self) -> &'static str;

    /// Claims the SMS, takes its rate-limit slot and its held-back count, in one step. A held-back
    /// count may be forgotten after a week without an SMS to take it (`redis::HELD_BACK_TTL`).
    fn begin<'a>(&'a self, request: Begin<'a>) -> Answer<'a, Start>;

    /// `begin` for each request, in order: the SMS of one notification, in one round trip on a
    /// remote store. Either every answer or an error: the caller then sends all without the
    /// store, and its settlements and give-backs (under the claims it chose) are harmless for
    /// any claim the store did take.
    fn begin_all<'a>(&'a self, requests: Vec<Begin<'a>>) -> Answer<'a, Vec<Start>> {
        async move {
            let mut starts = Vec::with_capacity(requests.len());
            for request in requests {
                starts.push(self.begin(request).await?);
            }
            Ok(starts)
        }
        .boxed()
    }

    /// The SMS went out: `key` is not sent again for `window`, unless another holder claimed it
    /// since this one's lease ran out.
    fn settle(&self, request: Settle) -> Answer<'_, ()>;

    /// `settle` for each request: the SMS of one notification that went out, in one round trip
    /// on a remote store. An error says that some may not be settled; settling again is
    /// harmless.
    fn settle_all(&self, requests: Vec<Settle>) -> Answer<'_, ()> {
        async move {
            let mut outcome = Ok(());
            for request in requests {
                if let Err(e) = self.settle(request).await {
                    outcome = Err(e);
                }
            }
            outcome
        }
        .boxed()
    }

    /// The SMS was not sent: the claim goes, the slot and the held-back count come back, so that
    /// the caller's retry finds everything as before.
    fn give_back<'a>(&'a self, request: GiveBack<'a>) -> Answer<'a, ()>;

    /// Waits while someone else holds `key` (until they settle or release it, their lease ends,
    /// or `until`). True when the claim ended, false when `until` came first.
    fn wait_for(&self, key: ContentKey, until: Instant) -> Answer<'_, bool>;

    /// True for the first caller that claims `event` within `ttl`, false for every other.
    fn claim_once<'a>(&'a self, event: &'a str, ttl: Duration) -> Answer<'a, bool>;

    /// Records that `name` happened at `at` (a heartbeat); across replicas the latest or the
    /// earliest time is kept.
    fn mark<'a>(&'a self, name: &'a str, at: Millis, keep: Keep) -> Answer<'a, ()>;

    /// The time kept for `name`, if it was ever marked (within `MARK_TTL` on Redis).
    fn marked<'a>(&'a self, name: &'a str) -> Answer<'a, Option<Millis>>;

    /// The incident at `key`, unless there is none or it expired.
    fn incident<'a>(&'a self, key: &'a str) -> Answer<'a, Option<Record>>;

    /// Writes an incident if nobody wrote it since the caller read it, and lists or unlists it
    /// as open in the same step. The new version, or `None` when `expected` did not match.
    fn swap_incident<'a>(&'a self, request: Swap<'a>) -> Answer<'a, Option<u64>>;

    /// The keys of the incidents whose last write said open, in no particular order; an
    /// expired one is not among them.
    fn open_incidents(&self) -> Answer<'_, Vec<String>>;

    /// What an outage means for the SMS, for the one log line that reports it.
    fn when_down(&self) -> &'static str {
        "SMS are sent without dedup and rate limits until it answers again"
    }

    /// Whether the store answers, and takes writes, for `alertmanager_sipgate_state_up`
    /// between notifications.
    fn ping(&self) -> Answer<'_, ()>;

    /// What the last ping learned about the store dropping keys under memory pressure; `None`
    /// for a store that never does.
    fn eviction(&self) -> Option<Eviction> {
        None
    }

    /// Writes out what is not yet durable; called once at shutdown.
    fn close(&self) -> Answer<'_, ()> {
        std::future::ready(Ok(())).boxed()
    }
}
