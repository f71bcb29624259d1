//! What the service remembers between notifications: which SMS went out or are going out (the
//! ledger), the rate limits and what they held back, and events that must happen once. The
//! `StateStore` seam; `memory` keeps it in this process.
//!
//! Keys carry no phone number and no alert content: recipient names and SHA-256 hashes.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::payload::Alert;
use crate::ratelimit::{Limits, Reservation};

pub mod memory;

pub use memory::MemoryStore;

/// What an SMS is about: recipient, alert group, and each alert's identity, status and start.
/// The same notification sent again has the same key; a new alert or a resolved one changes it.
/// A SHA-256 hash, so it is the same in every process and release that shares a store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentKey([u8; 32]);

impl ContentKey {
    pub fn new(recipient: &str, group_key: &str, alerts: &[&Alert]) -> Self {
        let mut parts: Vec<(String, &str, Option<i64>)> = alerts
            .iter()
            .map(|a| {
                (
                    alert_identity(a),
                    a.status.as_str(),
                    a.starts_at.map(|t| t.timestamp_millis()),
                )
            })
            .collect();
        parts.sort_unstable();
        let mut h = Sha256::new();
        field(&mut h, recipient.as_bytes());
        field(&mut h, group_key.as_bytes());
        for (identity, status, starts_at) in &parts {
            field(&mut h, identity.as_bytes());
            field(&mut h, status.as_bytes());
            field(&mut h, &starts_at.map_or([0xff; 8], i64::to_be_bytes));
        }
        ContentKey(h.finalize().into())
    }

    /// The hash as hex, for keys in a shared store.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentKey({})", &self.hex()[..16])
    }
}

/// Length-prefixed, so that no two different field lists hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// Alertmanager's fingerprint, or a hash of the label set where a sender has none.
fn alert_identity(alert: &Alert) -> String {
    if !alert.fingerprint.is_empty() {
        return alert.fingerprint.clone();
    }
    let mut h = Sha256::new();
    // Labels are a sorted map: the same set always hashes the same.
    for (name, value) in &alert.labels {
        field(&mut h, name.as_bytes());
        field(&mut h, value.as_bytes());
    }
    let digest: [u8; 32] = h.finalize().into();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("labels:{hex}")
}

/// Why an SMS is not to be sent again within the dedup window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Sent,
    RateLimited,
}

/// Identifies one holder's claim, so that a holder whose lease ran out cannot settle or release
/// the claim someone else took since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimId(pub u64);

/// What the ledger says about an SMS before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody is sending it and it was not sent in the window: the caller holds it now, until
    /// it settles or releases it, or the lease ends.
    Claimed(ClaimId),
    /// Settled within the window.
    Settled(Settlement),
    /// Someone else holds it right now.
    InFlight,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// Where the ledger, the rate limits and once-only events live. Every operation is atomic on
/// its own; time is the store's (`tokio::time`, so tests can pause it).
pub trait StateStore: fmt::Debug + Send + Sync {
    /// For logs and `/-/ready`.
    fn name(&self) -> &'static str;

    /// Claims `key` for sending, for at most `lease` (longer than one send with its retries).
    fn claim(&self, key: ContentKey, lease: Duration) -> BoxFuture<'_, Result<Claim, StateError>>;

    /// The SMS went out or was held back on purpose: `key` is not sent again for `window`.
    fn settle(
        &self,
        key: ContentKey,
        claim: ClaimId,
        settlement: Settlement,
        window: Duration,
    ) -> BoxFuture<'_, Result<(), StateError>>;

    /// The SMS was not sent: the claim goes, so that the caller's retry sends it.
    fn release(&self, key: ContentKey, claim: ClaimId) -> BoxFuture<'_, Result<(), StateError>>;

    /// Waits while someone else holds `key` (until they settle or release it, their lease ends,
    /// or `until`). True when the claim ended, false when `until` came first.
    fn wait_for(&self, key: ContentKey, until: Instant) -> BoxFuture<'_, Result<bool, StateError>>;

    /// Takes a slot under `limits` for one SMS to `recipient`; `None`, and the recipient's
    /// held-back count goes up by one, when a limit is reached.
    fn take_rate<'a>(
        &'a self,
        recipient: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Option<Reservation>, StateError>>;

    /// Gives a slot back: an SMS that was not sent does not count against the limits.
    fn refund_rate<'a>(
        &'a self,
        recipient: &'a str,
        reservation: Reservation,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// How many SMS to `recipient` were held back since the count was last taken; resets it.
    fn take_held<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, StateError>>;

    /// Puts a taken count back, when the SMS that was to report it was not sent after all.
    fn restore_held<'a>(
        &'a self,
        recipient: &'a str,
        count: u64,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// True for the first caller that claims `event` within `ttl`, false for every other.
    fn claim_once<'a>(
        &'a self,
        event: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>>;
}
