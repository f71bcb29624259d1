//! What an SMS is about, as a key: the same notification sent again has the same key, in every
//! process and release that shares a state store.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::model::alert::Alert;

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

    /// An SMS about an event rather than alerts (a shift start), to `recipient`.
    pub fn for_event(recipient: &str, event: &str) -> Self {
        let mut h = Sha256::new();
        field(&mut h, b"event");
        field(&mut h, recipient.as_bytes());
        field(&mut h, event.as_bytes());
        ContentKey(h.finalize().into())
    }

    /// The key of the same SMS held back (quiet hours), which is not the SMS sent.
    pub fn held_back(&self) -> Self {
        let mut h = Sha256::new();
        field(&mut h, b"held back");
        field(&mut h, &self.0);
        ContentKey(h.finalize().into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ContentKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_content_not_order() {
        let a = Alert::firing(&[("alertname", "a")]).fingerprint("a");
        let b = Alert::firing(&[("alertname", "b")]).fingerprint("b");
        let b_resolved = Alert::resolved(&[("alertname", "b")]).fingerprint("b");
        let c = Alert::firing(&[("alertname", "c")]).fingerprint("c");
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
        let a = Alert::firing(&[("alertname", "a")]).fingerprint("a");
        assert_eq!(
            ContentKey::new("alice", "g", &[&a]).hex(),
            "d5627eb823c6c88e309809c45371ae33957bac4c95496ac99a3e79622f66ff61"
        );
    }

    #[test]
    fn alerts_without_fingerprint_are_told_apart_by_labels() {
        let mut x = Alert::firing(&[("alertname", "")]);
        let mut y = x.clone();
        x.labels.insert("instance".into(), "a".into());
        y.labels.insert("instance".into(), "b".into());
        assert_ne!(
            ContentKey::new("alice", "g", &[&x]),
            ContentKey::new("alice", "g", &[&y])
        );
    }
}
