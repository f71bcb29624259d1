//! The state store of one process: forgotten on restart, not shared with other replicas. The
//! file store keeps its working set here too, and persists what changed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::FutureExt;
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use super::{
    Answer, Begin, ClaimId, GiveBack, Keep, Record, Settle, Settlement, Start, StateStore, Swap,
    Taken,
};
use crate::clock::{Clock, Millis, millis};
use crate::model::content_key::ContentKey;
use crate::ratelimit::{RateLimiter, Reservation};

/// Upper bound on remembered SMS; the oldest are forgotten first. At a few dozen bytes per entry
/// this caps the ledger at a few MiB whatever the alert volume.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct Inner {
    ledger: Ledger,
    limiter: RateLimiter,
    /// Once-only events and when each claim of them ends.
    once: HashMap<String, Millis>,
    /// The latest time of each mark.
    marks: HashMap<String, Millis>,
    /// Incidents by key: the record, until when it is kept, and whether it is open.
    incidents: HashMap<String, Incident>,
    /// What changed since it was last persisted; `None` when nothing is persisted.
    changes: Option<Changes>,
}

#[derive(Debug, Default)]
struct Changes {
    recipients: HashSet<String>,
    total: bool,
    once: HashSet<String>,
    marks: HashSet<String>,
    incidents: HashSet<String>,
}

/// One incident as this store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub record: Record,
    /// When it expires.
    pub until: Millis,
    pub open: bool,
}

/// What changed since the last snapshot, with the values to persist (`None`: gone).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub settled: Vec<(ContentKey, Option<(Settlement, Millis)>)>,
    /// Each recipient's rate-limit slots and held-back count.
    pub recipients: Vec<(String, Vec<Reservation>, u64)>,
    pub total: Option<Vec<Reservation>>,
    pub once: Vec<(String, Option<Millis>)>,
    pub marks: Vec<(String, Millis)>,
    pub incidents: Vec<(String, Option<Incident>)>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.settled.is_empty()
            && self.recipients.is_empty()
            && self.total.is_none()
            && self.once.is_empty()
            && self.marks.is_empty()
            && self.incidents.is_empty()
    }
}

impl MemoryStore {
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner {
                ledger: Ledger::new(capacity),
                limiter: RateLimiter::default(),
                once: HashMap::new(),
                marks: HashMap::new(),
                incidents: HashMap::new(),
                changes: None,
            }),
            clock,
        }
    }

    /// A store that records what changes, for `snapshot`.
    pub fn persisted(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let store = MemoryStore::new(capacity, clock);
        {
            let mut inner = store.inner();
            inner.changes = Some(Changes::default());
            inner.ledger.changed = Some(HashSet::new());
        }
        store
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update is one call under the lock, so a panic elsewhere leaves consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What changed since the last call: settled SMS (claims in flight die with the process),
    /// rate-limit slots, held-back counts, once-only events, marks and incidents.
    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.inner();
        let Inner {
            ledger,
            limiter,
            once,
            marks,
            changes,
            incidents,
        } = &mut *inner;
        let Some(changes) = changes.as_mut() else {
            return Snapshot::default();
        };
        let settled = ledger
            .changed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(|key| {
                let value = match ledger.entries.get(&key) {
                    Some(Entry::Settled { until, settlement }) => Some((*settlement, *until)),
                    _ => None,
                };
                (key, value)
            })
            .collect();
        let recipients = std::mem::take(&mut changes.recipients)
            .into_iter()
            .map(|name| {
                let (log, held) = limiter.recipient(&name);
                (name, log, held)
            })
            .collect();
        let total = std::mem::take(&mut changes.total).then(|| limiter.total());
        let once = std::mem::take(&mut changes.once)
            .into_iter()
            .map(|event| {
                let until = once.get(&event).copied();
                (event, until)
            })
            .collect();
        let marks = std::mem::take(&mut changes.marks)
            .into_iter()
            .filter_map(|name| marks.get(&name).map(|at| (name, *at)))
            .collect();
        let incidents = std::mem::take(&mut changes.incidents)
            .into_iter()
            .map(|key| {
                let incident = incidents.get(&key).cloned();
                (key, incident)
            })
            .collect();
        Snapshot {
            settled,
            recipients,
            total,
            once,
            marks,
            incidents,
        }
    }

    /// Everything there is to persist, for a file written anew: settled SMS, rate-limit slots,
    /// held-back counts, once-only events, marks and incidents, taken as `snapshot` takes what
    /// changed.
    pub fn whole(&self) -> Snapshot {
        {
            let mut inner = self.inner();
            let Inner {
                ledger,
                limiter,
                once,
                marks,
                changes,
                incidents,
            } = &mut *inner;
            let keys: Vec<ContentKey> = ledger.entries.keys().copied().collect();
            for key in keys {
                ledger.touch(key);
            }
            if let Some(changes) = changes.as_mut() {
                changes
                    .recipients
                    .extend(limiter.recipients().map(str::to_string));
                changes.total = true;
                changes.once.extend(once.keys().cloned());
                changes.marks.extend(marks.keys().cloned());
                changes.incidents.extend(incidents.keys().cloned());
            }
        }
        self.snapshot()
    }

    /// Marks what `snapshot` held as changed again, after writing it failed: the next snapshot
    /// takes the values of that moment.
    pub fn unwritten(&self, snapshot: &Snapshot) {
        let mut inner = self.inner();
        for (key, _) in &snapshot.settled {
            inner.ledger.touch(*key);
        }
        if let Some(changes) = &mut inner.changes {
            changes
                .recipients
                .extend(snapshot.recipients.iter().map(|(name, _, _)| name.clone()));
            changes.total |= snapshot.total.is_some();
            changes
                .once
                .extend(snapshot.once.iter().map(|(event, _)| event.clone()));
            changes
                .marks
                .extend(snapshot.marks.iter().map(|(name, _)| name.clone()));
            changes
                .incidents
                .extend(snapshot.incidents.iter().map(|(key, _)| key.clone()));
        }
    }

    /// Loads what a snapshot persisted; what expired by now is left out.
    pub fn restore(&self, snapshot: Snapshot) {
        let now = self.clock.now();
        let mut inner = self.inner();
        let (mut settled, expired): (Vec<_>, Vec<_>) = snapshot
            .settled
            .into_iter()
            .filter_map(|(key, value)| value.map(|(s, until)| (until, key, s)))
            .partition(|(until, _, _)| *until > now);
        // What expired while the service was down goes from the file with the next write.
        for (_, key, _) in expired {
            inner.ledger.touch(key);
        }
        // The ledger drops the oldest first: it must see them in the order they expire.
        settled.sort_unstable_by_key(|(until, _, _)| *until);
        for (until, key, settlement) in settled {
            inner.ledger.restore(key, settlement, until);
        }
        for (name, log, held) in snapshot.recipients {
            inner.limiter.restore_recipient(&name, log, held);
        }
        if let Some(total) = snapshot.total {
            inner.limiter.restore_total(total);
        }
        for (name, at) in snapshot.marks {
            inner.marks.insert(name, at);
        }
        for (event, until) in snapshot.once {
            match until.filter(|u| *u > now) {
                Some(until) => {
                    inner.once.insert(event, until);
                }
                None => {
                    if let Some(changes) = &mut inner.changes {
                        changes.once.insert(event);
                    }
                }
            }
        }
        for (key, incident) in snapshot.incidents {
            match incident.filter(|incident| incident.until > now) {
                Some(incident) => {
                    inner.incidents.insert(key, incident);
                }
                None => {
                    if let Some(changes) = &mut inner.changes {
                        changes.incidents.insert(key);
                    }
                }
            }
        }
    }
}

impl Inner {
    fn recipient_changed(&mut self, recipient: &str, total: bool) {
        if let Some(changes) = &mut self.changes {
            changes.recipients.insert(recipient.to_string());
            changes.total |= total;
        }
    }

    /// Settles the SMS of `request`, claimed as `claim`, as held back (`settlement`): its
    /// recipient's held-back count changed.
    fn hold_back(
        &mut self,
        request: &Begin<'_>,
        claim: ClaimId,
        settlement: Settlement,
        now: Millis,
    ) {
        let (key, window) = (request.key, request.window);
        self.ledger.settle(key, claim, settlement, now, window);
        self.recipient_changed(request.recipient, false);
    }
}

impl StateStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn begin<'a>(&'a self, request: Begin<'a>) -> Answer<'a, Start> {
        let now = self.clock.now();
        let mut inner = self.inner();
        let start = match inner
            .ledger
            .claim(request.key, request.claim, now, request.lease)
        {
            Claim::Settled(settlement) => Start::Settled(settlement),
            Claim::InFlight => Start::InFlight,
            Claim::Claimed(claim) if request.hold => {
                inner.limiter.restore_held(request.recipient, 1);
                inner.hold_back(&request, claim, Settlement::QuietHours, now);
                Start::HeldBack
            }
            Claim::Claimed(claim) => {
                match inner
                    .limiter
                    .try_acquire(request.recipient, &request.limits, now, claim.0)
                {
                    Err(_) => {
                        inner.hold_back(&request, claim, Settlement::RateLimited, now);
                        Start::RateLimited
                    }
                    Ok(reservation) => {
                        let held = inner.limiter.take_held(request.recipient);
                        if reservation.is_some() || held > 0 {
                            let total = request.limits.total.is_some();
                            inner.recipient_changed(request.recipient, total);
                        }
                        Start::Claimed(Taken {
                            claim,
                            reservation,
                            held,
                        })
                    }
                }
            }
        };
        std::future::ready(Ok(start)).boxed()
    }

    fn settle(&self, request: Settle) -> Answer<'_, ()> {
        let Settle {
            key,
            claim,
            settlement,
            window,
        } = request;
        let now = self.clock.now();
        self.inner()
            .ledger
            .settle(key, claim, settlement, now, window);
        std::future::ready(Ok(())).boxed()
    }

    fn give_back<'a>(&'a self, request: GiveBack<'a>) -> Answer<'a, ()> {
        let GiveBack {
            key,
            recipient,
            taken,
        } = request;
        let mut inner = self.inner();
        inner.ledger.release(key, taken.claim);
        if let Some(reservation) = taken.reservation {
            inner.limiter.refund(recipient, reservation);
        }
        inner.limiter.restore_held(recipient, taken.held);
        if taken.reservation.is_some() || taken.held > 0 {
            inner.recipient_changed(recipient, taken.reservation.is_some());
        }
        std::future::ready(Ok(())).boxed()
    }

    fn wait_for(&self, key: ContentKey, until: Instant) -> Answer<'_, bool> {
        async move {
            loop {
                let now = self.clock.now();
                let Some((mut done, lease_end)) = self.inner().ledger.holder(key, now) else {
                    return Ok(true);
                };
                let lease_end = Instant::now() + Duration::from_millis(lease_end - now);
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

    fn claim_once<'a>(&'a self, event: &'a str, ttl: Duration) -> Answer<'a, bool> {
        let now = self.clock.now();
        let mut inner = self.inner();
        let mut gone = Vec::new();
        inner.once.retain(|event, until| {
            let keep = *until > now;
            if !keep {
                gone.push(event.clone());
            }
            keep
        });
        let first = !inner.once.contains_key(event);
        if first {
            inner.once.insert(event.to_string(), now + millis(ttl));
            gone.push(event.to_string());
        }
        if let Some(changes) = &mut inner.changes {
            changes.once.extend(gone);
        }
        std::future::ready(Ok(first)).boxed()
    }

    fn mark<'a>(&'a self, name: &'a str, at: Millis, keep: Keep) -> Answer<'a, ()> {
        let mut inner = self.inner();
        let kept = inner
            .marks
            .get(name)
            .map_or(at, |current| keep.of(*current, at));
        if inner.marks.insert(name.to_string(), kept) != Some(kept)
            && let Some(changes) = &mut inner.changes
        {
            changes.marks.insert(name.to_string());
        }
        std::future::ready(Ok(())).boxed()
    }

    fn marked<'a>(&'a self, name: &'a str) -> Answer<'a, Option<Millis>> {
        std::future::ready(Ok(self.inner().marks.get(name).copied())).boxed()
    }

    fn incident<'a>(&'a self, key: &'a str) -> Answer<'a, Option<Record>> {
        let now = self.clock.now();
        let record = self
            .inner()
            .incidents
            .get(key)
            .filter(|incident| incident.until > now)
            .map(|incident| incident.record.clone());
        std::future::ready(Ok(record)).boxed()
    }

    fn swap_incident<'a>(&'a self, request: Swap<'a>) -> Answer<'a, Option<u64>> {
        let now = self.clock.now();
        let mut inner = self.inner();
        let current = inner
            .incidents
            .get(request.key)
            .filter(|incident| incident.until > now)
            .map(|incident| incident.record.version);
        if current != request.expected {
            return std::future::ready(Ok(None)).boxed();
        }
        let version = current.map_or(1, |v| v + 1);
        // What expired goes, from the file too.
        let mut gone = vec![request.key.to_string()];
        inner.incidents.retain(|key, incident| {
            let keep = incident.until > now;
            if !keep {
                gone.push(key.clone());
            }
            keep
        });
        inner.incidents.insert(
            request.key.to_string(),
            Incident {
                record: Record {
                    version,
                    value: request.value.to_vec(),
                },
                until: now + millis(request.ttl),
                open: request.open,
            },
        );
        if let Some(changes) = &mut inner.changes {
            changes.incidents.extend(gone);
        }
        std::future::ready(Ok(Some(version))).boxed()
    }

    fn open_incidents(&self) -> Answer<'_, Vec<String>> {
        let now = self.clock.now();
        let keys = self
            .inner()
            .incidents
            .iter()
            .filter(|(_, incident)| incident.open && incident.until > now)
            .map(|(key, _)| key.clone())
            .collect();
        std::future::ready(Ok(keys)).boxed()
    }

    fn ping(&self) -> Answer<'_, ()> {
        std::future::ready(Ok(())).boxed()
    }
}

/// What the ledger says about an SMS before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Claimed(ClaimId),
    Settled(Settlement),
    InFlight,
}

#[derive(Debug)]
enum Entry {
    /// Being sent; `done` tells those waiting when it ends, by a value or by being dropped.
    InFlight {
        id: ClaimId,
        until: Millis,
        done: watch::Sender<bool>,
    },
    Settled {
        until: Millis,
        settlement: Settlement,
    },
}

/// The ledger: which SMS went out or are going out, bounded in size.
#[derive(Debug)]
struct Ledger {
    capacity: usize,
    entries: HashMap<ContentKey, Entry>,
    /// Settled keys in the order they settled, with when they expire, to drop the oldest first.
    order: VecDeque<(Millis, ContentKey)>,
    /// Claims in the order they were taken, with when their lease ends, so that the claims of
    /// holders that died go too.
    leases: VecDeque<(Millis, ContentKey)>,
    /// Keys whose entry changed since the last snapshot, when the store persists.
    changed: Option<HashSet<ContentKey>>,
}

impl Ledger {
    fn new(capacity: usize) -> Self {
        Ledger {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            leases: VecDeque::new(),
            changed: None,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn claim(&mut self, key: ContentKey, id: ClaimId, now: Millis, lease: Duration) -> Claim {
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
                until: now + millis(lease),
                done: watch::Sender::new(false),
            },
        );
        self.leases.push_back((now + millis(lease), key));
        self.compact_leases();
        self.touch(key);
        Claim::Claimed(id)
    }

    fn settle(
        &mut self,
        key: ContentKey,
        id: ClaimId,
        settlement: Settlement,
        now: Millis,
        window: Duration,
    ) {
        if let Some(Entry::InFlight {
            id: holder, until, ..
        }) = self.entries.get(&key)
            && *holder != id
            && *until > now
        {
            // Our lease ran out and someone else holds the key now: theirs is the word.
            return;
        }
        let until = now + millis(window);
        if let Some(Entry::InFlight { done, .. }) = self
            .entries
            .insert(key, Entry::Settled { until, settlement })
        {
            done.send_replace(true);
        }
        self.touch(key);
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
            self.touch(key);
        }
    }

    /// Who to wait for: the holder's signal and the end of its lease, while it holds `key`.
    fn holder(&self, key: ContentKey, now: Millis) -> Option<(watch::Receiver<bool>, Millis)> {
        match self.entries.get(&key) {
            Some(Entry::InFlight { until, done, .. }) if *until > now => {
                Some((done.subscribe(), *until))
            }
            _ => None,
        }
    }

    /// Most claims settle long before their lease ends; their queue entries go here, so that the
    /// queue stays near the number of claims in flight instead of the SMS per lease time.
    fn compact_leases(&mut self) {
        if self.leases.len() < 1024 || self.leases.len() < 2 * self.entries.len() {
            return;
        }
        let entries = &self.entries;
        self.leases.retain(|(until, key)| {
            matches!(entries.get(key), Some(Entry::InFlight { until: current, .. }) if current == until)
        });
    }

    fn touch(&mut self, key: ContentKey) {
        if let Some(changed) = &mut self.changed {
            changed.insert(key);
        }
    }

    /// An entry a snapshot persisted; `until` is later than the entries restored before it.
    fn restore(&mut self, key: ContentKey, settlement: Settlement, until: Millis) {
        self.entries
            .insert(key, Entry::Settled { until, settlement });
        self.order.push_back((until, key));
    }

    fn expire(&mut self, now: Millis) {
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
    fn remove_settled(&mut self, key: ContentKey, until: Millis) {
        if let Some(Entry::Settled { until: current, .. }) = self.entries.get(&key)
            && *current == until
        {
            self.entries.remove(&key);
            self.touch(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);
    const LEASE: Duration = Duration::from_secs(60);
    const T0: Millis = 1_000_000;

    fn key(n: u8) -> ContentKey {
        ContentKey::from_bytes([n; 32])
    }

    #[test]
    fn settled_is_a_duplicate_until_the_window_ends() {
        let mut ledger = Ledger::new(10);
        assert_eq!(
            ledger.claim(key(1), ClaimId(1), T0, LEASE),
            Claim::Claimed(ClaimId(1))
        );
        ledger.settle(key(1), ClaimId(1), Settlement::Sent, T0, WINDOW);
        assert_eq!(
            ledger.claim(key(1), ClaimId(2), T0 + 599_000, LEASE),
            Claim::Settled(Settlement::Sent)
        );
        assert_eq!(
            ledger.claim(key(1), ClaimId(3), T0 + millis(WINDOW), LEASE),
            Claim::Claimed(ClaimId(3))
        );
    }

    #[tokio::test]
    async fn the_whole_state_holds_also_what_earlier_snapshots_took() {
        use crate::clock::ManualClock;
        use crate::ratelimit::{Limits, Rate};
        let store = MemoryStore::persisted(10, Arc::new(ManualClock::at(T0)));
        let limits = Limits {
            per_recipient: Some(Rate::parse("5/h").unwrap()),
            total: Some(Rate::parse("50/h").unwrap()),
        };
        for n in 1..=2u8 {
            let begin = Begin {
                key: key(n),
                claim: ClaimId(u64::from(n)),
                recipient: "alice",
                lease: LEASE,
                window: WINDOW,
                limits,
                hold: false,
                answer_by: Instant::now() + Duration::from_secs(60),
            };
            let Start::Claimed(taken) = store.begin(begin).await.unwrap() else {
                panic!("not claimed")
            };
            store
                .settle(Settle {
                    key: key(n),
                    claim: taken.claim,
                    settlement: Settlement::Sent,
                    window: WINDOW,
                })
                .await
                .unwrap();
            // The write of the first one went through, before the one that failed.
            let _ = store.snapshot();
        }
        assert!(store.claim_once("shift:primary:1", WINDOW).await.unwrap());
        store.mark("watchdog", T0 - 5, Keep::Latest).await.unwrap();
        let incident = Swap {
            key: "incident-1",
            expected: None,
            value: b"{}",
            ttl: WINDOW,
            open: true,
        };
        assert_eq!(store.swap_incident(incident).await.unwrap(), Some(1));
        let _ = store.snapshot();

        let mut whole = store.whole();
        whole.settled.sort_by_key(|(key, _)| *key.as_bytes());
        let until = T0 + millis(WINDOW);
        let slots: Vec<Reservation> = (1..=2).map(|id| Reservation { at: T0, id }).collect();
        assert_eq!(
            whole,
            Snapshot {
                settled: vec![
                    (key(1), Some((Settlement::Sent, until))),
                    (key(2), Some((Settlement::Sent, until))),
                ],
                recipients: vec![("alice".to_string(), slots.clone(), 0)],
                total: Some(slots),
                once: vec![("shift:primary:1".to_string(), Some(until))],
                marks: vec![("watchdog".to_string(), T0 - 5)],
                incidents: vec![(
                    "incident-1".to_string(),
                    Some(Incident {
                        record: Record {
                            version: 1,
                            value: b"{}".to_vec(),
                        },
                        until,
                        open: true,
                    })
                )],
            }
        );
        assert!(
            store.snapshot().is_empty(),
            "what the whole state held counts as written"
        );
    }

    #[tokio::test]
    async fn an_expired_incident_leaves_the_snapshot_as_gone() {
        use crate::clock::ManualClock;
        let clock = Arc::new(ManualClock::at(T0));
        let store = MemoryStore::persisted(10, clock.clone());
        let create = |key| Swap {
            key,
            expected: None,
            value: b"{}",
            ttl: WINDOW,
            open: true,
        };
        assert_eq!(store.swap_incident(create("old")).await.unwrap(), Some(1));
        let _ = store.snapshot();
        clock.advance(WINDOW);
        assert_eq!(store.swap_incident(create("new")).await.unwrap(), Some(1));
        let mut incidents = store.snapshot().incidents;
        incidents.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            incidents,
            [
                (
                    "new".to_string(),
                    Some(Incident {
                        record: Record {
                            version: 1,
                            value: b"{}".to_vec(),
                        },
                        until: T0 + 2 * millis(WINDOW),
                        open: true,
                    })
                ),
                ("old".to_string(), None),
            ]
        );
    }

    #[test]
    fn in_flight_claims_are_exclusive_and_released_on_failure() {
        let mut ledger = Ledger::new(10);
        assert_eq!(
            ledger.claim(key(1), ClaimId(1), T0, LEASE),
            Claim::Claimed(ClaimId(1))
        );
        assert_eq!(ledger.claim(key(1), ClaimId(2), T0, LEASE), Claim::InFlight);
        let (done, _) = ledger.holder(key(1), T0).unwrap();
        ledger.release(key(1), ClaimId(2));
        assert_eq!(
            ledger.claim(key(1), ClaimId(3), T0, LEASE),
            Claim::InFlight,
            "not theirs to release"
        );
        ledger.release(key(1), ClaimId(1));
        assert!(*done.borrow());
        assert_eq!(
            ledger.claim(key(1), ClaimId(4), T0, LEASE),
            Claim::Claimed(ClaimId(4))
        );
    }

    #[test]
    fn a_lease_that_ran_out_lets_the_next_claim_win() {
        let mut ledger = Ledger::new(10);
        let _ = ledger.claim(key(1), ClaimId(1), T0, LEASE);
        let later = T0 + millis(LEASE);
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
        let mut ledger = Ledger::new(10);
        let _ = ledger.claim(key(1), ClaimId(1), T0, LEASE);
        ledger.settle(key(1), ClaimId(1), Settlement::RateLimited, T0, WINDOW);
        assert_eq!(
            ledger.claim(key(1), ClaimId(2), T0, LEASE),
            Claim::Settled(Settlement::RateLimited)
        );
    }

    #[test]
    fn size_is_bounded_by_evicting_the_oldest() {
        let mut ledger = Ledger::new(3);
        for i in 0..10 {
            let _ = ledger.claim(key(i), ClaimId(i.into()), T0, LEASE);
            ledger.settle(key(i), ClaimId(i.into()), Settlement::Sent, T0, WINDOW);
        }
        assert_eq!(ledger.len(), 3);
        assert_eq!(
            ledger.claim(key(9), ClaimId(100), T0, LEASE),
            Claim::Settled(Settlement::Sent)
        );
        assert_eq!(
            ledger.claim(key(0), ClaimId(101), T0, LEASE),
            Claim::Claimed(ClaimId(101))
        );
    }

    #[test]
    fn a_resettled_key_is_not_dropped_by_its_old_expiry() {
        let window = Duration::from_secs(10);
        let mut ledger = Ledger::new(100);
        let _ = ledger.claim(key(7), ClaimId(1), T0, LEASE);
        ledger.settle(key(7), ClaimId(1), Settlement::Sent, T0, window);
        let t1 = T0 + millis(window);
        assert_eq!(
            ledger.claim(key(7), ClaimId(2), t1, LEASE),
            Claim::Claimed(ClaimId(2))
        );
        ledger.settle(key(7), ClaimId(2), Settlement::Sent, t1, window);
        assert_eq!(
            ledger.claim(key(7), ClaimId(3), t1 + 1_000, LEASE),
            Claim::Settled(Settlement::Sent)
        );
    }

    #[test]
    fn expired_entries_are_dropped() {
        let mut ledger = Ledger::new(100);
        for i in 0..50 {
            let _ = ledger.claim(key(i), ClaimId(i.into()), T0, LEASE);
            ledger.settle(
                key(i),
                ClaimId(i.into()),
                Settlement::Sent,
                T0,
                Duration::from_secs(1),
            );
        }
        let _ = ledger.claim(key(200), ClaimId(200), T0 + 2_000, LEASE);
        assert_eq!(ledger.len(), 1, "only the new claim is left");
    }

    #[test]
    fn claims_of_holders_that_died_are_swept() {
        let mut ledger = Ledger::new(100);
        for i in 0..20 {
            let _ = ledger.claim(key(i), ClaimId(i.into()), T0, LEASE);
        }
        assert_eq!(ledger.len(), 20);
        let _ = ledger.claim(key(100), ClaimId(100), T0 + millis(LEASE), LEASE);
        assert_eq!(ledger.len(), 1, "only the new claim is left");
    }
}
