//! What happens at a handoff: the on-call gauge moves, and with `notify_shift_start` the incoming
//! person gets one SMS ("You are on call for primary until Mon 12 Jan 09:00"), sent by whichever
//! replica claims the handoff first in the state store.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::app::{AppState, Live};
use crate::delivery::Policy;
use crate::model::content_key::ContentKey;
use crate::oncall::{Schedule, Shift, ShowYear};
use crate::ratelimit::Limits;
use crate::text::compose::Sms;

/// The handoffs this replica has announced (or seen claimed), so that it announces each once
/// even while the state store cannot be asked.
#[derive(Debug, Default)]
pub struct Notices(std::sync::Mutex<Vec<(String, DateTime<Utc>)>>);

impl Notices {
    /// True the first time `event` (of a shift that began `from`) is seen.
    fn first(&self, event: &str, from: DateTime<Utc>) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let grace = chrono::Duration::from_std(NOTICE_GRACE * 2).unwrap_or_default();
        seen.retain(|(_, at)| *at + grace > from);
        if seen.iter().any(|(e, _)| e == event) {
            return false;
        }
        seen.push((event.to_string(), from));
        true
    }
}

/// A handoff this recent still gets its notice, e.g. after a restart just past it.
pub const NOTICE_GRACE: Duration = Duration::from_secs(600);

/// How long at most between two looks at the schedules (and after a reload, at once).
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// Follows the schedules, on the service's clock, for as long as the service runs.
pub async fn follow(state: Arc<AppState>) {
    let notices = Notices::default();
    loop {
        let now = state.clock.datetime();
        let next = tick(&state, &notices, now).await;
        let wait = (next - now)
            .to_std()
            .unwrap_or_default()
            .clamp(Duration::from_millis(100), LOOK_AGAIN);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.reloaded.notified() => {}
        }
    }
}

/// Does what is due at `now`: the gauge, and the notice of a handoff within `NOTICE_GRACE`.
/// Returns the next handoff, when to look again.
pub async fn tick(state: &AppState, notices: &Notices, now: DateTime<Utc>) -> DateTime<Utc> {
    let live = state.current();
    let mut next = now + chrono::Duration::from_std(LOOK_AGAIN).unwrap_or_default();
    for schedule in live.config.schedules.values() {
        let shift = schedule.on_call(now);
        state
            .metrics
            .on_call(&schedule.name, &schedule.people(), shift.who);
        if let Some(until) = shift.until {
            next = next.min(until);
        }
        let since = (now - shift.from).to_std().unwrap_or(Duration::MAX);
        if schedule.notify_shift_start && since < NOTICE_GRACE {
            notify(state, notices, &live, schedule, &shift, now).await;
        }
    }
    next
}

async fn notify(
    state: &AppState,
    notices: &Notices,
    live: &Live,
    schedule: &Schedule,
    shift: &Shift<'_>,
    now: DateTime<Utc>,
) {
    let event = format!(
        "shift:{}:{}:{}",
        schedule.name,
        shift.from.timestamp(),
        shift.who
    );
    // This replica's own memory first: with the store down it still sends each notice once.
    if !notices.first(&event, shift.from) {
        return;
    }
    if let Ok(false) = state
        .deliverer
        .store()
        .claim_once(&event, NOTICE_GRACE * 2)
        .await
    {
        return;
    }
    let Some(number) = live.config.recipients.get(shift.who) else {
        return;
    };
    let text = format!(
        "You are on call for {} until {}",
        schedule.name,
        schedule.local(shift.until, ShowYear::FromAYearAfter(now))
    );
    let sms = Sms {
        route: format!("schedule:{}", schedule.name),
        recipient: shift.who.to_string(),
        number: number.clone(),
        size: crate::text::sms::measure(&text),
        text,
        max_segments: 1,
        key: ContentKey::for_event(shift.who, &event),
        quiet: false,
    };
    // Logged and counted like any SMS, under the route `schedule:<name>`; it takes no slot of
    // the rate limits, so that it never holds back the first page of the shift.
    let policy = Policy {
        limits: Limits::default(),
        ..Policy::of(&live.config, Instant::now())
    };
    state
        .deliverer
        .deliver(&live.provider, vec![sms], policy)
        .await;
}
