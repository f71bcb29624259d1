//! The state store of one process: forgotten on restart, not shared with other replicas.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use super::{Claim, ClaimId, ContentKey, Settlement, StateError, StateStore};
use crate::ratelimit::{Limits, RateLimiter, Reservation};

/// Upper bound on remembered SMS; the oldest are forgotten first. At a few dozen bytes per entry
/// this caps the ledger at a few MiB whatever the alert volume.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    ledger: Ledger,
    limiter: RateLimiter,
    /// Once-only events and when each claim of them ends.
    once: HashMap<String, Instant>,
    next_claim: u64,
}

impl MemoryStore {
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                ledger: Ledger::new(capacity),
                limiter: RateLimiter::default(),
                once: HashMap::new(),
                next_claim: 0,
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update is one call under the lock, so a panic elsewhere leaves consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_CAPACITY)
    }
}

impl StateStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn claim(&self, key: ContentKey, lease: Duration) -> BoxFuture<'_, Result<Claim, StateError>> {
        let mut inner = self.inner();
        inner.next_claim += 1;
        let id = ClaimId(inner.next_claim);
        let claim = inner.ledger.claim(key, id, Instant::now(), lease);
        std::future::ready(Ok(claim)).boxed()
    }

    fn settle(
        &self,
        key: ContentKey,
        claim: ClaimId,
        settlement: Settlement,
        window: Duration,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        self.inner()
            .ledger
            .settle(key, claim, settlement, Instant::now(), window);
        std::future::ready(Ok(())).boxed()
    }

    fn release(&self, key: ContentKey, claim: ClaimId) -> BoxFuture<'_, Result<(), StateError>> {
        self.inner().ledger.release(key, claim);
        std::future::ready(Ok(())).boxed()
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> BoxFuture<'_, Result<bool, StateError>> {
        async move {
            loop {
                let Some((mut done, lease_end)) = self.inner().ledger.holder(key, Instant::now())
                else {
                    return Ok(true);
                };
                // A change or a dropped sender both mean the claim ended: look again.
                if timeout_at(until.min(lease_end), done.changed())
                    .await
                    .is_err()
                    && lease_end > until
                {
                    return Ok(false);
                }
            }
        }
        .boxed()
    }

    fn take_rate<'a>(
        &'a self,
        recipient: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Result<Option<Reservation>, StateError>> {
        let reservation = self
            .inner()
            .limiter
            .try_acquire(recipient, &limits, Instant::now());
        std::future::ready(Ok(reservation)).boxed()
    }

    fn refund_rate<'a>(
        &'a self,
        recipient: &'a str,
        reservation: Reservation,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.inner().limiter.refund(recipient, reservation);
        std::future::ready(Ok(())).boxed()
    }

    fn take_held<'a>(&'a self, recipient: &'a str) -> BoxFuture<'a, Result<u64, StateError>> {
        let held = self.inner().limiter.take_held(recipient);
        std::future::ready(Ok(held)).boxed()
    }

    fn restore_held<'a>(
        &'a self,
        recipient: &'a str,
        count: u64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.inner().limiter.restore_held(recipient, count);
        std::future::ready(Ok(())).boxed()
    }

    fn claim_once<'a>(
        &'a self,
        event: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let now = Instant::now();
        let mut inner = self.inner();
        inner.once.retain(|_, until| *until > now);
        let first = !inner.once.contains_key(event);
        if first {
            inner.once.insert(event.to_string(), now + ttl);
        }
        std::future::ready(Ok(first)).boxed()
    }
}

#[derive(Debug)]
enum Entry {
    /// Being sent; `done` tells those waiting when it ends, by a value or by being dropped.
    InFlight {
        id: ClaimId,
        until: Instant,
        done: watch::Sender<bool>,
    },
    Settled {
        until: Instant,
        settlement: Settlement,
    },
}

/// The ledger: which SMS went out or are going out, bounded in size.
#[derive(Debug)]
struct Ledger {
    capacity: usize,
    entries: HashMap<ContentKey, Entry>,
    /// Settled keys in the order they settled, with when they expire, to drop the oldest first.
    order: VecDeque<(Instant, ContentKey)>,
    /// Claims in the order they were taken, with when their lease ends, so that the claims of
    /// holders that died go too.
    leases: VecDeque<(Instant, ContentKey)>,
}

impl Ledger {
    fn new(capacity: usize) -> Self {
        Ledger {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            leases: VecDeque::new(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn claim(&mut self, key: ContentKey, id: ClaimId, now: Instant, lease: Duration) -> Claim {
        self.expire(now);
        match self.entries.get(&key) {
            Some(Entry::Settled { until, settlement }) if *until > now => {
                return Claim::Settled(*settlement);
            }
            Some(Entry::InFlight { until, .. }) if *until > now => return Claim::InFlight,
            _ => {}
        }
        // A claim whose lease ran out goes: its holder died or hangs; a duplicate is better
        // than a lost page.
        self.entries.insert(
            key,
            Entry::InFlight {
                id,
                until: now + lease,
                done: watch::Sender::new(false),
            },
        );
        self.leases.push_back((now + lease, key));
        Claim::Claimed(id)
    }

    fn settle(
        &mut self,
        key: ContentKey,
        id: ClaimId,
        settlement: Settlement,
        now: Instant,
        window: Duration,
    ) {
        if let Some(Entry::InFlight { id: holder, .. }) = self.entries.get(&key)
            && *holder != id
        {
            // Our lease ran out and someone else holds the key now: theirs is the word.
            return;
        }
        let until = now + window;
        if let Some(Entry::InFlight { done, .. }) = self
            .entries
            .insert(key, Entry::Settled { until, settlement })
        {
            done.send_replace(true);
        }
        self.order.push_back((until, key));
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some((until, oldest)) => self.remove_settled(oldest, until),
                None => break,
            }
        }
    }

    fn release(&mut self, key: ContentKey, id: ClaimId) {
        if let Some(Entry::InFlight { id: holder, .. }) = self.entries.get(&key)
            && *holder == id
            && let Some(Entry::InFlight { done, .. }) = self.entries.remove(&key)
        {
            done.send_replace(true);
        }
    }

    /// Who to wait for: the holder's signal and the end of its lease, while it holds `key`.
    fn holder(&self, key: ContentKey, now: Instant) -> Option<(watch::Receiver<bool>, Instant)> {
        match self.entries.get(&key) {
            Some(Entry::InFlight { until, done, .. }) if *until > now => {
                Some((done.subscribe(), *until))
            }
            _ => None,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((until, key)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            self.remove_settled(key, until);
        }
        // Leases differ in length only across reloads, so this queue is nearly in order; a
        // claim that ends later than the one before it waits for that one, no longer.
        while let Some((until, key)) = self.leases.front().copied() {
            if until > now {
                break;
            }
            self.leases.pop_front();
            if let Some(Entry::InFlight { until: current, .. }) = self.entries.get(&key)
                && *current == until
            {
                // Dropping the entry drops its signal: anyone waiting looks again.
                self.entries.remove(&key);
            }
        }
    }

    /// Removes the entry that expires at `until`, unless the key was claimed or settled again.
    fn remove_settled(&mut self, key: ContentKey, until: Instant) {
        if let Some(Entry::Settled { until: current, .. }) = self.entries.get(&key)
            && *current == until
        {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Alert, AlertStatus, Labels};

    const WINDOW: Duration = Duration::from_secs(600);
    const LEASE: Duration = Duration::from_secs(60);

    fn key(n: u8) -> ContentKey {
        ContentKey([n; 32])
    }

    fn alert(fingerprint: &str, status: AlertStatus) -> Alert {
        Alert {
            status,
            labels: Labels::from([("alertname".to_string(), fingerprint.to_string())]),
            annotations: Labels::new(),
            starts_at: None,
            ends_at: None,
            generator_url: String::new(),
            fingerprint: fingerprint.to_string(),
            extras: Default::default(),
        }
    }

    #[test]
    fn key_depends_on_content_not_order() {
        let a = alert("a", AlertStatus::Firing);
        let b = alert("b", AlertStatus::Firing);
        let b_resolved = alert("b", AlertStatus::Resolved);
        let c = alert("c", AlertStatus::Firing);
        let key = ContentKey::new("alice", "g", &[&a, &b]);
        assert_eq!(key, ContentKey::new("alice", "g", &[&b, &a]));
        assert_ne!(key, ContentKey::new("bob", "g", &[&a, &b]));
        assert_ne!(key, ContentKey::new("alice", "h", &[&a, &b]));
        assert_ne!(key, ContentKey::new("alice", "g", &[&a, &b_resolved]));
        assert_ne!(key, ContentKey::new("alice", "g", &[&a, &b, &c]));
        // Field boundaries count: "ab" + "c" is not "a" + "bc".
        assert_ne!(
            ContentKey::new("ab", "c", &[&a]),
            ContentKey::new("a", "bc", &[&a])
        );
    }

    #[test]
    fn key_is_stable_across_releases() {
        // Replicas of different builds compare keys in a shared store. The expected hash was
        // computed outside this code: SHA-256 over length-prefixed (u64, big endian) fields
        // "alice", "g", then per alert fingerprint, status and eight 0xff bytes for no start.
        let a = alert("a", AlertStatus::Firing);
        assert_eq!(
            ContentKey::new("alice", "g", &[&a]).hex(),
            "d5627eb823c6c88e309809c45371ae33957bac4c95496ac99a3e79622f66ff61"
        );
    }

    #[test]
    fn alerts_without_fingerprint_are_told_apart_by_labels() {
        let mut x = alert("", AlertStatus::Firing);
        let mut y = x.clone();
        x.labels.insert("instance".into(), "a".into());
        y.labels.insert("instance".into(), "b".into());
        assert_ne!(
            ContentKey::new("alice", "g", &[&x]),
            ContentKey::new("alice", "g", &[&y])
        );
    }

    #[test]
    fn settled_is_a_duplicate_until_the_window_ends() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(10);
        assert_eq!(
            ledger.claim(key(1), ClaimId(1), t0, LEASE),
            Claim::Claimed(ClaimId(1))
        );
        ledger.settle(key(1), ClaimId(1), Settlement::Sent, t0, WINDOW);
        assert_eq!(
            ledger.claim(key(1), ClaimId(2), t0 + Duration::from_secs(599), LEASE),
            Claim::Settled(Settlement::Sent)
        );
        assert_eq!(
            ledger.claim(key(1), ClaimId(3), t0 + WINDOW, LEASE),
            Claim::Claimed(ClaimId(3))
        );
    }

    #[test]
    fn in_flight_claims_are_exclusive_and_released_on_failure() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(10);
        assert_eq!(
            ledger.claim(key(1), ClaimId(1), t0, LEASE),
            Claim::Claimed(ClaimId(1))
        );
        assert_eq!(ledger.claim(key(1), ClaimId(2), t0, LEASE), Claim::InFlight);
        let (done, _) = ledger.holder(key(1), t0).unwrap();
        ledger.release(key(1), ClaimId(2));
        assert_eq!(
            ledger.claim(key(1), ClaimId(3), t0, LEASE),
            Claim::InFlight,
            "not theirs to release"
        );
        ledger.release(key(1), ClaimId(1));
        assert!(*done.borrow());
        assert_eq!(
            ledger.claim(key(1), ClaimId(4), t0, LEASE),
            Claim::Claimed(ClaimId(4))
        );
    }

    #[test]
    fn a_lease_that_ran_out_lets_the_next_claim_win() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(10);
        let _ = ledger.claim(key(1), ClaimId(1), t0, LEASE);
        let later = t0 + LEASE;
        assert_eq!(
            ledger.claim(key(1), ClaimId(2), later, LEASE),
            Claim::Claimed(ClaimId(2))
        );
        // The first holder comes back late: it must not overwrite the new claim.
        ledger.settle(key(1), ClaimId(1), Settlement::Sent, later, WINDOW);
        assert_eq!(
            ledger.claim(key(1), ClaimId(3), later, LEASE),
            Claim::InFlight
        );
    }

    #[test]
    fn held_back_sms_are_remembered_as_such() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(10);
        let _ = ledger.claim(key(1), ClaimId(1), t0, LEASE);
        ledger.settle(key(1), ClaimId(1), Settlement::RateLimited, t0, WINDOW);
        assert_eq!(
            ledger.claim(key(1), ClaimId(2), t0, LEASE),
            Claim::Settled(Settlement::RateLimited)
        );
    }

    #[test]
    fn size_is_bounded_by_evicting_the_oldest() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(3);
        for i in 0..10 {
            let _ = ledger.claim(key(i), ClaimId(i.into()), t0, LEASE);
            ledger.settle(key(i), ClaimId(i.into()), Settlement::Sent, t0, WINDOW);
        }
        assert_eq!(ledger.len(), 3);
        assert_eq!(
            ledger.claim(key(9), ClaimId(100), t0, LEASE),
            Claim::Settled(Settlement::Sent)
        );
        assert_eq!(
            ledger.claim(key(0), ClaimId(101), t0, LEASE),
            Claim::Claimed(ClaimId(101))
        );
    }

    #[test]
    fn a_resettled_key_is_not_dropped_by_its_old_expiry() {
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        let mut ledger = Ledger::new(100);
        let _ = ledger.claim(key(7), ClaimId(1), t0, LEASE);
        ledger.settle(key(7), ClaimId(1), Settlement::Sent, t0, window);
        let t1 = t0 + window;
        assert_eq!(
            ledger.claim(key(7), ClaimId(2), t1, LEASE),
            Claim::Claimed(ClaimId(2))
        );
        ledger.settle(key(7), ClaimId(2), Settlement::Sent, t1, window);
        assert_eq!(
            ledger.claim(key(7), ClaimId(3), t1 + Duration::from_secs(1), LEASE),
            Claim::Settled(Settlement::Sent)
        );
    }

    #[test]
    fn expired_entries_are_dropped() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(100);
        for i in 0..50 {
            let _ = ledger.claim(key(i), ClaimId(i.into()), t0, LEASE);
            ledger.settle(
                key(i),
                ClaimId(i.into()),
                Settlement::Sent,
                t0,
                Duration::from_secs(1),
            );
        }
        let _ = ledger.claim(key(200), ClaimId(200), t0 + Duration::from_secs(2), LEASE);
        assert_eq!(ledger.len(), 1, "only the new claim is left");
    }

    #[test]
    fn claims_of_holders_that_died_are_swept() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(100);
        for i in 0..20 {
            let _ = ledger.claim(key(i), ClaimId(i.into()), t0, LEASE);
        }
        assert_eq!(ledger.len(), 20);
        let _ = ledger.claim(key(100), ClaimId(100), t0 + LEASE, LEASE);
        assert_eq!(ledger.len(), 1, "only the new claim is left");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_when_the_holder_settles_or_its_lease_runs_out() {
        let store = std::sync::Arc::new(MemoryStore::new(10));
        let Ok(Claim::Claimed(id)) = store.claim(key(1), LEASE).await else {
            panic!("first claim must win")
        };
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .wait_for(key(1), Instant::now() + Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        store
            .settle(key(1), id, Settlement::Sent, WINDOW)
            .await
            .unwrap();
        assert!(waiter.await.unwrap().unwrap(), "the claim ended");

        let _ = store.claim(key(2), Duration::from_secs(3)).await;
        let started = Instant::now();
        assert!(
            store
                .wait_for(key(2), started + Duration::from_secs(10))
                .await
                .unwrap(),
            "the lease ended first"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let _ = store.claim(key(3), LEASE).await;
        assert!(
            !store
                .wait_for(key(3), Instant::now() + Duration::from_secs(2))
                .await
                .unwrap(),
            "the deadline ended first"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn once_only_events_happen_once_per_ttl() {
        let store = MemoryStore::new(10);
        let ttl = Duration::from_secs(3600);
        assert!(store.claim_once("shift:primary:1", ttl).await.unwrap());
        assert!(!store.claim_once("shift:primary:1", ttl).await.unwrap());
        assert!(store.claim_once("shift:primary:2", ttl).await.unwrap());
        tokio::time::advance(ttl).await;
        assert!(store.claim_once("shift:primary:1", ttl).await.unwrap());
    }
}
