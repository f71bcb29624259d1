//! Heartbeats: the alerts of `watchdog.matchers`, taken out of every notification before it is
//! routed, and the last one remembered for the watchdog's job. This replica remembers its own
//! here, so that it knows it while the state store cannot be asked; the store shares it with the
//! other replicas; the `watchdog_last_seen` gauge only exports it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::time::{Instant, timeout_at};

use crate::clock::{Millis, millis_at};
use crate::config::Watchdog;
use crate::metrics::Metrics;
use crate::model::alert::{Alert, AlertStatus, Notification};
use crate::routing::matcher::matches_all;
use crate::state::{Keep, StateStore};

/// The mark of the last heartbeat in the state store.
const MARK: &str = "watchdog-heartbeat";

/// The last heartbeat, shared by the pipeline (which takes heartbeats out of notifications) and
/// the watchdog's job (which pages when they stop).
pub struct Heartbeats {
    /// The latest heartbeat this replica knows of, in Unix ms; 0 for none yet.
    last: AtomicU64,
    store: Arc<dyn StateStore>,
    metrics: Metrics,
}

impl std::fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeats")
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Heartbeats {
    pub fn new(store: Arc<dyn StateStore>, metrics: Metrics) -> Self {
        Heartbeats {
            last: AtomicU64::new(0),
            store,
            metrics,
        }
    }

    /// Takes the heartbeats out of `notification`: they are neither routed, nor texted, nor cut
    /// by the input limits. A firing one says the pipeline works: this replica knows it at once,
    /// the store once the returned future ran, which gives up at `answer_by` so that a slow store
    /// delays no page (one that cannot be asked is counted by it).
    pub fn take<'a>(
        &'a self,
        watchdog: Option<&Watchdog>,
        notification: &mut Notification,
        now: DateTime<Utc>,
        answer_by: Instant,
    ) -> (Vec<Alert>, impl Future<Output = ()> + Send + 'a) {
        let beats = match watchdog {
            Some(watchdog) => {
                notification.take_alerts(|a| matches_all(&watchdog.matchers, &a.labels))
            }
            None => Vec::new(),
        };
        let firing = beats.iter().any(|a| a.status == AlertStatus::Firing);
        let at = millis_at(now);
        if firing {
            self.seen(at);
        }
        let record = async move {
            if firing {
                let mark = self.store.mark(MARK, at, Keep::Latest);
                let _ = timeout_at(answer_by, mark).await;
            }
        };
        (beats, record)
    }

    /// The last heartbeat at any replica sharing the store, or this replica's own while the
    /// store cannot be asked.
    pub async fn last(&self) -> Option<Millis> {
        if let Ok(Some(shared)) = self.store.marked(MARK).await {
            self.seen(shared);
        }
        self.last_here()
    }

    /// The last heartbeat this replica knows of, without asking the store.
    pub fn last_here(&self) -> Option<Millis> {
        Some(self.last.load(Ordering::SeqCst)).filter(|at| *at > 0)
    }

    /// Remembers a heartbeat at `at`, and exports the latest; never goes back.
    fn seen(&self, at: Millis) {
        let latest = self.last.fetch_max(at, Ordering::SeqCst).max(at);
        self.metrics.watchdog_seen(latest);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;
    use crate::config::Config;
    use crate::state::MemoryStore;
    use crate::state::StateError;
    use crate::state::faulty::{Faulty, Op};

    /// A config whose watchdog pages alice after 10 minutes without a heartbeat.
    pub(in crate::watchdog) fn config() -> Config {
        let yaml = "recipients: {alice: \"+4915228817386\"}\nroutes:\n  - {name: r, to: [alice]}\n\
                    watchdog: {matchers: ['alertname=\"Watchdog\"'], timeout: 10m, to: [alice]}\n";
        Config::from_yaml(yaml, Path::new("t.yml"), Path::new("."), &|_| None).unwrap()
    }

    fn watchdog() -> Watchdog {
        config().watchdog.unwrap()
    }

    /// A notification of `alerts`, each `(alertname, status)`.
    pub(in crate::watchdog) fn notification(alerts: &[(&str, &str)]) -> Notification {
        let alerts: Vec<_> = alerts
            .iter()
            .map(|(name, status)| {
                serde_json::json!({"status": status, "labels": {"alertname": name},
                                   "annotations": {}, "startsAt": "2026-01-12T07:00:00Z"})
            })
            .collect();
        let body = serde_json::json!({"version": "4", "status": "firing", "receiver": "sms",
                                      "groupKey": "{}", "alerts": alerts});
        crate::ingest::parse_alertmanager(body.to_string().as_bytes()).unwrap()
    }

    pub(in crate::watchdog) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn memory() -> Arc<dyn StateStore> {
        Arc::new(MemoryStore::new(100, Arc::new(crate::clock::SystemClock)))
    }

    fn last_seen_gauge(metrics: &Metrics) -> String {
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("alertmanager_sipgate_watchdog_last_seen_timestamp_seconds "));
        line.unwrap().to_string()
    }

    #[tokio::test]
    async fn heartbeats_are_taken_out_and_a_firing_one_is_remembered_and_shared() {
        let store = memory();
        let metrics = Metrics::new().unwrap();
        let heartbeats = Heartbeats::new(store.clone(), metrics.clone());
        let mut n = notification(&[("DiskFull", "firing"), ("Watchdog", "firing")]);
        let (beats, record) = heartbeats.take(
            Some(&watchdog()),
            &mut n,
            at("2026-01-12T08:00:00Z"),
            Instant::now() + Duration::from_secs(1),
        );
        assert_eq!(beats.len(), 1);
        assert_eq!(beats[0].labels["alertname"], "Watchdog");
        assert_eq!(n.alerts.len(), 1);
        assert_eq!(n.alerts[0].labels["alertname"], "DiskFull");
        let eight = millis_at(at("2026-01-12T08:00:00Z"));
        assert_eq!(
            last_seen_gauge(&metrics),
            "alertmanager_sipgate_watchdog_last_seen_timestamp_seconds 1768204800",
            "exported at once"
        );
        record.await;
        assert_eq!(store.marked(MARK).await.unwrap(), Some(eight));
        assert_eq!(heartbeats.last().await, Some(eight));

        // Another replica's later heartbeat, read from the store, is the last one here too.
        let later = millis_at(at("2026-01-12T08:01:00Z"));
        store.mark(MARK, later, Keep::Latest).await.unwrap();
        assert_eq!(heartbeats.last().await, Some(later));
        assert_eq!(
            last_seen_gauge(&metrics),
            "alertmanager_sipgate_watchdog_last_seen_timestamp_seconds 1768204860"
        );
    }

    #[tokio::test]
    async fn a_resolved_heartbeat_alone_is_no_heartbeat_and_without_a_watchdog_nothing_is_taken() {
        let heartbeats = Heartbeats::new(memory(), Metrics::new().unwrap());
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut n = notification(&[("Watchdog", "resolved")]);
        let (beats, record) = heartbeats.take(
            Some(&watchdog()),
            &mut n,
            at("2026-01-12T08:00:00Z"),
            deadline,
        );
        record.await;
        assert_eq!(beats.len(), 1, "taken out all the same");
        assert!(n.alerts.is_empty());
        assert_eq!(heartbeats.last().await, None);

        let mut n = notification(&[("Watchdog", "firing")]);
        let (beats, record) = heartbeats.take(None, &mut n, at("2026-01-12T08:00:00Z"), deadline);
        record.await;
        assert!(beats.is_empty());
        assert_eq!(n.alerts.len(), 1, "an ordinary alert without a watchdog");
        assert_eq!(heartbeats.last().await, None);
    }

    /// While the store cannot be asked, this replica still knows its own last heartbeat; a store
    /// that stalls holds the recording no longer than `answer_by`.
    #[tokio::test(start_paused = true)]
    async fn this_replica_remembers_its_heartbeat_while_the_store_cannot_be_asked() {
        let stalled = Faulty::new(
            MemoryStore::new(100, Arc::new(crate::clock::SystemClock)),
            |op| match op {
                Op::Mark => futures_util::future::pending().boxed(),
                _ => async { Err(StateError::Unavailable("down".to_string())) }.boxed(),
            },
        );
        let heartbeats = Heartbeats::new(Arc::new(stalled), Metrics::new().unwrap());
        let started = Instant::now();
        let mut n = notification(&[("Watchdog", "firing")]);
        let (_, record) = heartbeats.take(
            Some(&watchdog()),
            &mut n,
            at("2026-01-12T08:00:00Z"),
            started + Duration::from_millis(250),
        );
        record.await;
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert_eq!(
            heartbeats.last().await,
            Some(millis_at(at("2026-01-12T08:00:00Z")))
        );
    }
}
