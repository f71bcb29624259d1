//! The dead man's switch: heartbeat alerts (`watchdog.matchers`) must keep coming; when none came
//! for `watchdog.timeout`, one SMS says the alerting pipeline is silent, and one more says when it
//! is back. The last heartbeat is shared through the state store, and each of the two SMS is sent
//! by whichever replica claims it first; a failed alarm is sent again until it is accepted or the
//! silence ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::app::{AppState, Live};
use crate::clock::Millis;
use crate::config::Watchdog;
use crate::delivery::Policy;
use crate::model::content_key::ContentKey;
use crate::model::outcome::{Outcome, SuppressReason};
use crate::ratelimit::Limits;
use crate::routing::rules::recipients_at;
use crate::state::Keep;
use crate::text::compose::Sms;
use crate::text::template::{WATCHDOG_BACK, WATCHDOG_SILENT, WatchdogData};

/// The mark of the last heartbeat in the state store.
pub const HEARTBEAT: &str = "watchdog-heartbeat";
/// The earliest time a replica watched without any heartbeat yet: silence counts from there.
const STARTED: &str = "watchdog-started";
/// The start (`since`) of the last silence whose alarm every recipient accepted.
const ALARMED: &str = "watchdog-alarmed";

/// How often, across all replicas, an alarm not yet accepted is tried again.
const ALARM_RETRY: Duration = Duration::from_secs(60);

/// How long the claim of an all-clear is kept.
const CLAIM_TTL: Duration = crate::state::MARK_TTL;

/// What this replica knows of its own, for when the state store cannot be asked.
#[derive(Debug, Default)]
pub struct Watch(Mutex<Local>);

#[derive(Debug, Default, Clone, Copy)]
struct Local {
    /// The silence whose alarm went out, as far as this replica knows.
    alarmed: Option<Millis>,
    /// Whether that silence had no heartbeat before it: what the all-clear says when the store
    /// cannot tell.
    alarmed_without_heartbeat: bool,
}

/// Looks at the heartbeat every few seconds for as long as the service runs. Silence counts
/// from when the watchdog was first configured in this process, at the earliest.
pub async fn follow(state: Arc<AppState>) {
    let watch = Watch::default();
    let mut watching_since: Option<Millis> = None;
    loop {
        let live = state.current();
        let interval = match &live.config.watchdog {
            Some(w) => {
                watching_since.get_or_insert(state.clock.now());
                (w.timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(5))
            }
            None => {
                watching_since = None;
                Duration::from_secs(5)
            }
        };
        tick(
            &state,
            &watch,
            state.clock.datetime(),
            watching_since.unwrap_or(0),
        )
        .await;
        tokio::time::sleep(interval).await;
    }
}

fn ms(t: DateTime<Utc>) -> Millis {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// Does what is due at `now` for a watchdog watched since `started` (Unix ms).
pub async fn tick(state: &AppState, watch: &Watch, now: DateTime<Utc>, started: Millis) {
    let live = state.current();
    let Some(watchdog) = &live.config.watchdog else {
        state.metrics.watchdog_silent(false);
        return;
    };
    let now_ms = ms(now);
    let store = state.deliverer.store();
    // The shared heartbeat, or this replica's own when the store cannot be asked.
    let local_beat = state.metrics.watchdog_last_seen_millis();
    let shared = store.marked(HEARTBEAT).await.ok().flatten();
    let last_beat = shared.max(local_beat);
    if let Some(beat) = last_beat {
        state.metrics.watchdog_seen(beat);
    }
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
    state.metrics.watchdog_silent(silent);
    let local = *watch.0.lock().unwrap_or_else(|p| p.into_inner());
    let alarmed = match store.marked(ALARMED).await {
        Ok(shared) => shared.max(local.alarmed),
        Err(_) => local.alarmed,
    };
    if silent {
        if alarmed == Some(since) {
            return;
        }
        // One try per minute across all replicas, until every recipient took it.
        let attempt = format!("watchdog:silent:{since}:{}", now_ms / ms_of(ALARM_RETRY));
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
        let texted = short_duration(alarm.silent_for);
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
        if send(state, &live, watchdog, &alarm, now).await {
            *watch.0.lock().unwrap_or_else(|p| p.into_inner()) = Local {
                alarmed: Some(since),
                alarmed_without_heartbeat: !alarm.heartbeat_seen,
            };
            let _ = store.mark(ALARMED, since, Keep::Latest).await;
        }
    } else if let Some(silence) = alarmed.filter(|s| *s < since) {
        // A heartbeat after a silence that was alarmed: the all-clear, once.
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
            let silent_for = short_duration(alarm.silent_for);
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
            send(state, &live, watchdog, &alarm, now).await;
        }
        // Whatever became of the all-clear, this silence is over; the claim keeps it once.
        *watch.0.lock().unwrap_or_else(|p| p.into_inner()) = Local::default();
    }
}

fn ms_of(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
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
    state: &AppState,
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
        silent_for: short_duration(alarm.silent_for),
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
    let reports = state
        .deliverer
        .deliver(&live.provider, messages, policy)
        .await;
    reports.iter().all(|r| {
        matches!(r.outcome, Outcome::Sent | Outcome::DryRun)
            || r.reason == Some(SuppressReason::Duplicate.as_str())
    })
}

/// `45s`, `12m`, `1h 5m`, `2d 3h`: the two largest units.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        let d = |s| short_duration(Duration::from_secs(s));
        assert_eq!(
            [d(45), d(600), d(3600), d(3900), d(86_400), d(97_200)],
            ["45s", "10m", "1h", "1h 5m", "1d", "1d 3h"]
        );
    }
}
