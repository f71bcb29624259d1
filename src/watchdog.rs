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
use crate::compose::Sms;
use crate::config::Watchdog;
use crate::outcome::Outcome;
use crate::pipeline;
use crate::state::ContentKey;
use crate::template::{WATCHDOG_BACK, WATCHDOG_SILENT, WatchdogData};

/// The mark of the last heartbeat in the state store.
pub const HEARTBEAT: &str = "watchdog-heartbeat";
/// The mark of the earliest start that has seen no heartbeat yet: silence counts from there.
const STARTED: &str = "watchdog-started";

/// How long the claim of an alarm (or of its all-clear) is kept.
const CLAIM_TTL: Duration = Duration::from_secs(7 * 86_400);

/// This replica's view of the current silence.
#[derive(Debug, Default)]
pub struct Watch(Mutex<Option<Silence>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Silence {
    /// The heartbeat (or start) the silence counts from.
    since: Millis,
    /// Whether this replica owns the alarm and still has to get it accepted.
    alarm_pending: bool,
}

/// Looks at the heartbeat every few seconds for as long as the service runs.
pub async fn follow(state: Arc<AppState>) {
    let started = state.clock.now();
    loop {
        let live = state.current();
        let interval = live
            .config
            .watchdog
            .as_ref()
            .map_or(Duration::from_secs(5), |w| {
                (w.timeout / 10).clamp(Duration::from_secs(1), Duration::from_secs(5))
            });
        tick(&state, state.clock.datetime(), started).await;
        tokio::time::sleep(interval).await;
    }
}

/// Does what is due at `now` for a service that started at `started` (Unix ms).
pub async fn tick(state: &AppState, now: DateTime<Utc>, started: Millis) {
    let live = state.current();
    let Some(watchdog) = &live.config.watchdog else {
        state.metrics.watchdog_silent(false);
        return;
    };
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let store = state.deliverer.store();
    let local = state.metrics.watchdog_last_seen_millis();
    let last = match store.marked(HEARTBEAT).await {
        Ok(Some(beat)) => {
            state.metrics.watchdog_seen(beat.max(local.unwrap_or(0)));
            Some(beat.max(local.unwrap_or(0)))
        }
        Ok(None) => local,
        // The store is down: this replica's own heartbeats are what it knows.
        Err(_) => local,
    };
    let since = match last {
        Some(beat) => beat,
        None => {
            // No heartbeat yet anywhere: silence counts from the start, the same for every
            // replica sharing the store.
            let _ = store.mark(STARTED, started).await;
            store
                .marked(STARTED)
                .await
                .ok()
                .flatten()
                .unwrap_or(started)
        }
    };
    let silent_for = Duration::from_millis(now_ms.saturating_sub(since));
    let silent = silent_for > watchdog.timeout;
    state.metrics.watchdog_silent(silent);
    let previous = *state.watchdog.0.lock().unwrap_or_else(|p| p.into_inner());
    if silent {
        let mut silence = match previous {
            Some(s) if s.since == since => s,
            _ => {
                let event = format!("watchdog:silent:{since}");
                let mine = !matches!(store.claim_once(&event, CLAIM_TTL).await, Ok(false));
                Silence {
                    since,
                    alarm_pending: mine,
                }
            }
        };
        if silence.alarm_pending {
            let event = format!("watchdog:silent:{since}");
            silence.alarm_pending = !send(
                state,
                &live,
                watchdog,
                WATCHDOG_SILENT,
                &event,
                since,
                silent_for,
                now,
            )
            .await;
        }
        *state.watchdog.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(silence);
    } else if let Some(silence) = previous {
        *state.watchdog.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let event = format!("watchdog:back:{}", silence.since);
        if !matches!(store.claim_once(&event, CLAIM_TTL).await, Ok(false)) {
            let lasted = Duration::from_millis(since.saturating_sub(silence.since));
            send(
                state,
                &live,
                watchdog,
                WATCHDOG_BACK,
                &event,
                silence.since,
                lasted,
                now,
            )
            .await;
        }
    }
}

/// Sends the watchdog's SMS to whoever `watchdog.to` names now; true when every one was
/// accepted or held back on purpose.
#[allow(clippy::too_many_arguments)]
async fn send(
    state: &AppState,
    live: &Live,
    watchdog: &Watchdog,
    template: &str,
    event: &str,
    since: Millis,
    silent_for: Duration,
    now: DateTime<Utc>,
) -> bool {
    let config = &live.config;
    let last_heartbeat = DateTime::from_timestamp_millis(i64::try_from(since).unwrap_or(0))
        .unwrap_or_default()
        .with_timezone(&config.templates.time_zone())
        .format("%b %d %H:%M %Z")
        .to_string();
    let data = WatchdogData {
        silent_for: short_duration(silent_for),
        last_heartbeat,
    };
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
    let messages: Vec<Sms> = config
        .recipients_at(&watchdog.route, now)
        .into_iter()
        .filter_map(|recipient| {
            let number = config.recipients.get(recipient)?.clone();
            Some(Sms {
                route: watchdog.route.name.clone(),
                recipient: recipient.to_string(),
                number,
                size: crate::sms::measure(&text),
                text: text.clone(),
                max_segments: watchdog.route.max_segments,
                key: ContentKey::for_event(recipient, event),
                quiet: false,
            })
        })
        .collect();
    let policy = pipeline::policy(live, Instant::now());
    let reports = state
        .deliverer
        .deliver(&live.provider, messages, policy)
        .await;
    reports.iter().all(|r| r.outcome != Outcome::Failed)
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
