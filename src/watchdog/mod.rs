//! The dead man's switch: heartbeat alerts (`watchdog.matchers`) must keep coming; when none came
//! for `watchdog.timeout`, one SMS says the alerting pipeline is silent, and one more says when it
//! is back. The last heartbeat is shared through the state store, and each of the two SMS is sent
//! by whichever replica claims it first; a failed alarm is sent again until it is accepted or the
//! silence ends. `heartbeat` takes the heartbeats out of notifications and remembers the last one;
//! the job here looks at it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::clock::{Millis, millis, millis_at};
use crate::config::{Config, Watchdog};
use crate::delivery::{Deliverer, Policy};
use crate::jobs::{Job, Tick};
use crate::live::Live;
use crate::model::content_key::ContentKey;
use crate::model::outcome::{Outcome, SuppressReason};
use crate::ratelimit::Limits;
use crate::routing::rules::recipients_at;
use crate::state::Keep;
use crate::text::compose::Sms;
use crate::text::template::{WATCHDOG_BACK, WATCHDOG_SILENT, WatchdogData};

pub mod heartbeat;

use heartbeat::Heartbeats;

/// The job's name in its claims.
pub const JOB: &str = "watchdog";

/// The earliest time a replica watched without any heartbeat yet: silence counts from there.
const STARTED: &str = "watchdog-started";
/// The start (`since`) of the last silence whose alarm every recipient accepted.
const ALARMED: &str = "watchdog-alarmed";

/// How often, across all replicas, an alarm not yet accepted is tried again.
const ALARM_RETRY: Duration = Duration::from_secs(60);

/// How long the claim of an all-clear is kept.
const CLAIM_TTL: Duration = crate::state::MARK_TTL;

/// How often the heartbeat is looked at without a watchdog configured, so that one added by a
/// reload starts soon.
const IDLE_PERIOD: Duration = Duration::from_secs(5);

/// The watchdog's job: looks at the heartbeat every few seconds. What it remembers is this
/// replica's own, for when the state store cannot be asked.
#[derive(Debug)]
pub struct WatchdogJob {
    heartbeats: Arc<Heartbeats>,
    /// When this process began to watch, at the earliest: silence counts from there while no
    /// heartbeat came. Forgotten while no watchdog is configured.
    watching_since: Option<Millis>,
    local: Local,
}

#[derive(Debug, Default, Clone, Copy)]
struct Local {
    /// The silence whose alarm went out, as far as this replica knows.
    alarmed: Option<Millis>,
    /// Whether that silence had no heartbeat before it: what the all-clear says when the store
    /// cannot tell.
    alarmed_without_heartbeat: bool,
    /// The silence whose all-clear this replica is done with (sent it, or found it claimed), so
    /// that it neither asks the store again at every tick nor sends it twice when the store
    /// was down while it went out.
    cleared: Option<Millis>,
}

impl WatchdogJob {
    /// Reads the heartbeats the pipeline takes out of notifications.
    pub fn new(heartbeats: Arc<Heartbeats>) -> Self {
        WatchdogJob {
            heartbeats,
            watching_since: None,
            local: Local::default(),
        }
    }
}

impl Job for WatchdogJob {
    fn name(&self) -> &'static str {
        JOB
    }

    /// A tenth of the timeout, between 1 and 5 seconds: a silence is seen soon after it began.
    fn period(&self, config: &Config) -> Duration {
        match &config.watchdog {
            Some(w) => (w.timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(5)),
            None => IDLE_PERIOD,
        }
    }

    fn tick<'a>(&'a mut self, tick: &'a Tick<'_>) -> BoxFuture<'a, DateTime<Utc>> {
        async move {
            self.look(tick).await;
            let period = self.period(&tick.live.config);
            tick.now + chrono::Duration::from_std(period).unwrap_or_default()
        }
        .boxed()
    }
}

impl WatchdogJob {
    /// Does what is due at `tick.now`. The gauges and this replica's memory on every replica;
    /// the SMS only where the tick is claimed, and each SMS is claimed on its own as well.
    async fn look(&mut self, tick: &Tick<'_>) {
        let (live, now) = (tick.live, tick.now);
        let Some(watchdog) = &live.config.watchdog else {
            self.watching_since = None;
            tick.metrics.watchdog_silent(false);
            return;
        };
        let now_ms = millis_at(now);
        let started = *self.watching_since.get_or_insert(now_ms);
        let store = tick.deliverer.store();
        // The shared heartbeat, or this replica's own when the store cannot be asked.
        let last_beat = self.heartbeats.last().await;
        let since = match last_beat {
            Some(beat) => beat,
            None => {
                // No heartbeat yet anywhere: the earliest start that is watching, the same for
                // every replica sharing the store.
                let _ = store.mark(STARTED, started, Keep::Earliest).await;
                store
                    .marked(STARTED)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(started)
            }
        };
        let silent = Duration::from_millis(now_ms.saturating_sub(since)) > watchdog.timeout;
        tick.metrics.watchdog_silent(silent);
        let local = self.local;
        let alarmed = match store.marked(ALARMED).await {
            Ok(shared) => shared.max(local.alarmed),
            Err(_) => local.alarmed,
        };
        if silent {
            if alarmed == Some(since) {
                return;
            }
            // Another replica may do this tick; this one looks again at its next.
            if !tick.claim().await {
                return;
            }
            // One try per minute across all replicas, until every recipient took it.
            let attempt = format!(
                "watchdog:silent:{since}:{}",
                now_ms / millis(ALARM_RETRY).max(1)
            );
            if matches!(store.claim_once(&attempt, ALARM_RETRY).await, Ok(false)) {
                return;
            }
            let alarm = Alarm {
                template: WATCHDOG_SILENT,
                event: format!("watchdog:silent:{since}"),
                since,
                silent_for: Duration::from_millis(now_ms.saturating_sub(since)),
                heartbeat_seen: last_beat.is_some(),
            };
            let texted = crate::text::duration::short(alarm.silent_for);
            if alarm.heartbeat_seen {
                tracing::error!(
                    silent_for = %texted,
                    "the alerting pipeline is silent: no Watchdog heartbeat for longer than \
                     watchdog.timeout; Prometheus, Alertmanager or the network between them may be \
                     down, so other alerts may not reach anyone either; paging watchdog.to"
                );
            } else {
                tracing::error!(
                    silent_for = %texted,
                    "no Watchdog heartbeat has come since the service started: check that Prometheus \
                     fires the always-firing Watchdog alert and that Alertmanager routes it to this \
                     service (watchdog.matchers); paging watchdog.to"
                );
            }
            if send(tick.deliverer, live, watchdog, &alarm, now).await {
                self.local = Local {
                    alarmed: Some(since),
                    alarmed_without_heartbeat: !alarm.heartbeat_seen,
                    cleared: None,
                };
                let _ = store.mark(ALARMED, since, Keep::Latest).await;
            }
        } else if let Some(silence) = alarmed.filter(|s| *s < since && local.cleared != Some(*s)) {
            // A heartbeat after a silence that was alarmed: the all-clear, once. Another replica
            // may do this tick; this one looks again at its next.
            if !tick.claim().await {
                return;
            }
            let event = format!("watchdog:back:{silence}");
            if !matches!(store.claim_once(&event, CLAIM_TTL).await, Ok(false)) {
                // A silence counted from the start had no heartbeat before it.
                let from_start = match store.marked(STARTED).await {
                    Ok(started) => started == Some(silence),
                    Err(_) => local.alarmed_without_heartbeat,
                };
                let alarm = Alarm {
                    template: WATCHDOG_BACK,
                    event,
                    since: silence,
                    silent_for: Duration::from_millis(since.saturating_sub(silence)),
                    heartbeat_seen: !from_start,
                };
                let silent_for = crate::text::duration::short(alarm.silent_for);
                if from_start {
                    tracing::info!(
                        %silent_for,
                        "the alerting pipeline is back: the first Watchdog heartbeat since the start arrived"
                    );
                } else {
                    tracing::info!(
                        %silent_for,
                        "the alerting pipeline is back: Watchdog heartbeats arrive again"
                    );
                }
                send(tick.deliverer, live, watchdog, &alarm, now).await;
            }
            // Whatever became of the all-clear, this silence is over; the claim keeps it once.
            self.local = Local {
                cleared: Some(silence),
                ..Local::default()
            };
        }
    }
}

/// One of the watchdog's two SMS: the pipeline is silent, or it is back.
struct Alarm {
    template: &'static str,
    /// What the ledger keys it by, so that each is sent once.
    event: String,
    /// The start of the silence: the last heartbeat, or the start of watching.
    since: Millis,
    silent_for: Duration,
    heartbeat_seen: bool,
}

/// Sends the watchdog's SMS to whoever `watchdog.to` names now; true when every one was
/// accepted or held back on purpose.
async fn send(
    deliverer: &Deliverer,
    live: &Live,
    watchdog: &Watchdog,
    alarm: &Alarm,
    now: DateTime<Utc>,
) -> bool {
    let config = &live.config;
    let last_heartbeat = DateTime::from_timestamp_millis(i64::try_from(alarm.since).unwrap_or(0))
        .unwrap_or_default()
        .with_timezone(&config.templates.time_zone())
        .format("%b %d %H:%M %Z")
        .to_string();
    let data = WatchdogData {
        silent_for: crate::text::duration::short(alarm.silent_for),
        last_heartbeat,
        heartbeat_seen: alarm.heartbeat_seen,
    };
    let template = alarm.template;
    let event = alarm.event.as_str();
    let text = match config.templates.render_watchdog(template, &data) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "watchdog template failed; sending the built-in text");
            format!(
                "ALERTING PIPELINE: {template} for {}, since {}",
                data.silent_for, data.last_heartbeat
            )
        }
    };
    let messages: Vec<Sms> = recipients_at(&watchdog.route, &config.schedules, now)
        .into_iter()
        .filter_map(|recipient| {
            let number = config.recipients.get(recipient)?.clone();
            Some(Sms {
                route: watchdog.route.name.clone(),
                recipient: recipient.to_string(),
                number,
                size: crate::text::sms::measure(&text),
                text: text.clone(),
                max_segments: watchdog.route.max_segments,
                key: ContentKey::for_event(recipient, event),
                quiet: false,
            })
        })
        .collect();
    // The total limit applies (it protects the bill); a person's own limit does not hold back
    // the one SMS that says nothing else can reach them. Held back by the total limit is not
    // taken: it is tried again.
    let policy = Policy {
        limits: Limits {
            per_recipient: None,
            ..config.delivery.rate_limit
        },
        ..Policy::of(&live.config, Instant::now())
    };
    let reports = deliverer.deliver(&live.outlet, messages, policy).await;
    reports.iter().all(|r| {
        matches!(r.outcome, Outcome::Sent | Outcome::DryRun)
            || r.reason == Some(SuppressReason::Duplicate.as_str())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::heartbeat::tests::{at, config, notification};
    use super::*;
    use crate::jobs::Runner;
    use crate::metrics::Metrics;
    use crate::state::faulty::{Faulty, Op};
    use crate::state::{MemoryStore, StateError};

    /// One replica in dry-run on a store that a test takes down and brings back.
    struct Replica {
        live: Live,
        runner: Runner,
        heartbeats: Arc<Heartbeats>,
        store: Arc<Faulty>,
        down: Arc<AtomicBool>,
        metrics: Metrics,
    }

    impl Replica {
        fn new() -> Replica {
            let down = Arc::new(AtomicBool::new(false));
            let is_down = down.clone();
            let store = Arc::new(Faulty::new(
                MemoryStore::new(100, Arc::new(crate::clock::SystemClock)),
                move |_| {
                    let down = is_down.load(Ordering::SeqCst);
                    async move {
                        match down {
                            true => Err(StateError::Unavailable("down".to_string())),
                            false => Ok(()),
                        }
                    }
                    .boxed()
                },
            ));
            Replica::on(store, down)
        }

        /// Another replica on the same store.
        fn beside(&self) -> Replica {
            Replica::on(self.store.clone(), self.down.clone())
        }

        fn on(store: Arc<Faulty>, down: Arc<AtomicBool>) -> Replica {
            let clock = Arc::new(crate::clock::SystemClock);
            let (runner, metrics) = crate::jobs::test_runner(store.clone(), clock);
            let heartbeats = Arc::new(Heartbeats::new(store.clone(), metrics.clone()));
            let runner = runner.with(WatchdogJob::new(heartbeats.clone()));
            Replica {
                live: Live::new(config(), true).unwrap(),
                runner,
                heartbeats,
                store,
                down,
                metrics,
            }
        }

        async fn heartbeat(&self, now: &str) {
            let mut beat = notification(&[("Watchdog", "firing")]);
            let deadline = Instant::now() + Duration::from_secs(1);
            let watchdog = self.live.config.watchdog.as_ref();
            let (_, record) = self.heartbeats.take(watchdog, &mut beat, at(now), deadline);
            record.await;
        }

        async fn tick(&mut self, now: &str) {
            self.runner.tick(JOB, &self.live, at(now)).await.unwrap();
        }

        /// The watchdog's SMS so far (dry-run: logged, not sent).
        fn sms(&self) -> String {
            let metrics = self.metrics.render();
            let line = metrics.lines().find(|l| {
                l.starts_with("alertmanager_sipgate_sms_dry_run_total{route=\"watchdog\"}")
            });
            line.unwrap_or("none").to_string()
        }
    }

    /// Each replica exports its own gauge, so every one says that the pipeline is silent; one of
    /// them sends the alarm.
    #[tokio::test]
    async fn every_replica_says_it_is_silent_and_one_sends_the_alarm() {
        let mut a = Replica::new();
        let mut b = a.beside();
        a.heartbeat("2026-01-12T08:00:00Z").await;
        tokio::join!(
            a.tick("2026-01-12T08:10:01Z"),
            b.tick("2026-01-12T08:10:02Z")
        );
        for replica in [&a, &b] {
            let metrics = replica.metrics.render();
            assert!(
                metrics.contains("alertmanager_sipgate_watchdog_silent 1\n"),
                "{metrics}"
            );
            assert!(
                metrics.contains(
                    "alertmanager_sipgate_watchdog_last_seen_timestamp_seconds 1768204800\n"
                ),
                "{metrics}"
            );
        }
        assert_eq!(
            [a.sms(), b.sms()]
                .iter()
                .filter(|s| s.ends_with(" 1"))
                .count(),
            1
        );
    }

    /// Once the all-clear is done with, the job asks the store for no more claims of it.
    #[tokio::test]
    async fn after_the_all_clear_the_ticks_claim_nothing() {
        let mut replica = Replica::new();
        replica.heartbeat("2026-01-12T08:00:00Z").await;
        replica.tick("2026-01-12T08:10:01Z").await;
        replica.heartbeat("2026-01-12T08:20:00Z").await;
        replica.tick("2026-01-12T08:20:01Z").await;
        assert!(replica.sms().ends_with(" 2"), "{}", replica.sms());
        let claims = replica.store.asked(Op::ClaimOnce).len();
        for now in ["08:20:06", "08:20:11", "08:20:16"] {
            replica.tick(&format!("2026-01-12T{now}Z")).await;
        }
        assert_eq!(replica.store.asked(Op::ClaimOnce).len(), claims);
    }

    /// An all-clear sent while the store could not be asked is not sent again when it answers.
    #[tokio::test]
    async fn an_all_clear_sent_while_the_store_was_down_is_sent_once() {
        let mut replica = Replica::new();
        replica.heartbeat("2026-01-12T08:00:00Z").await;
        replica.tick("2026-01-12T08:10:01Z").await;
        assert!(replica.sms().ends_with(" 1"), "{}", replica.sms());
        replica.down.store(true, Ordering::SeqCst);
        replica.heartbeat("2026-01-12T08:20:00Z").await;
        replica.tick("2026-01-12T08:20:01Z").await;
        assert!(replica.sms().ends_with(" 2"), "{}", replica.sms());
        replica.down.store(false, Ordering::SeqCst);
        replica.tick("2026-01-12T08:20:06Z").await;
        replica.tick("2026-01-12T08:20:11Z").await;
        assert!(replica.sms().ends_with(" 2"), "{}", replica.sms());
    }
}
