//! Remembers which SMS were sent (or are being sent) so that a retried or duplicated notification
//! never texts the same thing twice: Alertmanager retries after a partial failure, HA peers each
//! send the same notification, and a response cut off at Alertmanager's deadline comes again.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::payload::Alert;

/// Upper bound on remembered SMS; the oldest are forgotten first. At a few dozen bytes per entry
/// this caps the ledger at a few MiB whatever the alert volume.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// What an SMS is about: recipient, alert group, and each alert's identity, status and start.
/// The same notification sent again has the same key; a new alert or a resolved one changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentKey(u64);

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
        let mut h = DefaultHasher::new();
        recipient.hash(&mut h);
        group_key.hash(&mut h);
        parts.hash(&mut h);
        ContentKey(h.finish())
    }
}

/// Alertmanager's fingerprint, or the label set where a sender has none.
fn alert_identity(alert: &Alert) -> String {
    if alert.fingerprint.is_empty() {
        let mut h = DefaultHasher::new();
        alert.labels.hash(&mut h);
        format!("labels:{:016x}", h.finish())
    } else {
        alert.fingerprint.clone()
    }
}

/// Why an SMS is not to be sent again within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Sent,
    RateLimited,
}

/// Turns `true` when a send in flight ends, whatever its outcome; those waiting for it then ask
/// the ledger again.
pub type Done = watch::Receiver<bool>;

#[derive(Debug)]
enum Entry {
    InFlight(Done),
    Settled(Instant, Settlement),
}

/// What the ledger says about an SMS before it is sent.
#[derive(Debug)]
pub enum Claim {
    /// Nobody sent it yet; the caller now owns it and must `settle` or `release` it, then signal
    /// the sender.
    Claimed(watch::Sender<bool>),
    /// Settled within the window.
    Settled(Settlement),
    /// Another request is sending it right now.
    InFlight(Done),
}

#[derive(Debug)]
pub struct Ledger {
    window: Duration,
    capacity: usize,
    entries: HashMap<ContentKey, Entry>,
    /// Settled keys in the order they settled, to expire and evict the oldest first.
    order: VecDeque<(Instant, ContentKey)>,
}

impl Ledger {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Ledger {
            window,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn claim(&mut self, key: ContentKey, now: Instant) -> Claim {
        self.expire(now);
        match self.entries.get(&key) {
            Some(Entry::Settled(at, settlement)) if now.duration_since(*at) < self.window => {
                return Claim::Settled(*settlement);
            }
            Some(Entry::InFlight(done)) => return Claim::InFlight(done.clone()),
            _ => {}
        }
        let (tx, rx) = watch::channel(false);
        self.entries.insert(key, Entry::InFlight(rx));
        Claim::Claimed(tx)
    }

    /// The SMS went out or was held back on purpose: it is not sent again within the window.
    pub fn settle(&mut self, key: ContentKey, now: Instant, settlement: Settlement) {
        self.entries.insert(key, Entry::Settled(now, settlement));
        self.order.push_back((now, key));
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some((at, oldest)) => self.remove_settled(oldest, at),
                None => break,
            }
        }
    }

    /// The SMS was not sent: forget the claim so that the caller's retry sends it.
    pub fn release(&mut self, key: ContentKey) {
        if let Some(Entry::InFlight(_)) = self.entries.get(&key) {
            self.entries.remove(&key);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front().copied() {
            if now.duration_since(at) < self.window {
                break;
            }
            self.order.pop_front();
            self.remove_settled(key, at);
        }
    }

    /// Removes the entry settled at `at`, unless the key was claimed or settled again since.
    fn remove_settled(&mut self, key: ContentKey, at: Instant) {
        if let Some(Entry::Settled(settled, _)) = self.entries.get(&key)
            && *settled == at
        {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{AlertStatus, Labels};

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
        let mut ledger = Ledger::new(Duration::from_secs(600), 10);
        let key = ContentKey(1);
        assert!(matches!(ledger.claim(key, t0), Claim::Claimed(_)));
        ledger.settle(key, t0, Settlement::Sent);
        assert!(matches!(
            ledger.claim(key, t0 + Duration::from_secs(599)),
            Claim::Settled(Settlement::Sent)
        ));
        assert!(matches!(
            ledger.claim(key, t0 + Duration::from_secs(600)),
            Claim::Claimed(_)
        ));
    }

    #[test]
    fn in_flight_claims_are_shared_and_released_on_failure() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Duration::from_secs(600), 10);
        let key = ContentKey(1);
        let Claim::Claimed(tx) = ledger.claim(key, t0) else {
            panic!("first claim must win")
        };
        let Claim::InFlight(rx) = ledger.claim(key, t0) else {
            panic!("second claim must see the first in flight")
        };
        ledger.release(key);
        tx.send(true).unwrap();
        assert!(*rx.borrow());
        assert!(matches!(ledger.claim(key, t0), Claim::Claimed(_)));
    }

    #[test]
    fn held_back_sms_are_remembered_as_such() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Duration::from_secs(600), 10);
        let key = ContentKey(1);
        let _ = ledger.claim(key, t0);
        ledger.settle(key, t0, Settlement::RateLimited);
        assert!(matches!(
            ledger.claim(key, t0),
            Claim::Settled(Settlement::RateLimited)
        ));
    }

    #[test]
    fn size_is_bounded_by_evicting_the_oldest() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Duration::from_secs(600), 3);
        for i in 0..10 {
            let _ = ledger.claim(ContentKey(i), t0);
            ledger.settle(ContentKey(i), t0, Settlement::Sent);
        }
        assert_eq!(ledger.len(), 3);
        assert!(matches!(
            ledger.claim(ContentKey(9), t0),
            Claim::Settled(Settlement::Sent)
        ));
        assert!(matches!(ledger.claim(ContentKey(0), t0), Claim::Claimed(_)));
    }

    #[test]
    fn a_resettled_key_is_not_dropped_by_its_old_expiry() {
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        let mut ledger = Ledger::new(window, 100);
        let key = ContentKey(7);
        let _ = ledger.claim(key, t0);
        ledger.settle(key, t0, Settlement::Sent);
        let t1 = t0 + window;
        assert!(matches!(ledger.claim(key, t1), Claim::Claimed(_)));
        ledger.settle(key, t1, Settlement::Sent);
        assert!(matches!(
            ledger.claim(key, t1 + Duration::from_secs(1)),
            Claim::Settled(Settlement::Sent)
        ));
    }

    #[test]
    fn expired_entries_are_dropped() {
        let t0 = Instant::now();
        let mut ledger = Ledger::new(Duration::from_secs(1), 100);
        for i in 0..50 {
            let _ = ledger.claim(ContentKey(i), t0);
            ledger.settle(ContentKey(i), t0, Settlement::Sent);
        }
        let _ = ledger.claim(ContentKey(1000), t0 + Duration::from_secs(2));
        assert_eq!(ledger.len(), 1, "only the new claim is left");
    }
}
