//! What happens at a handoff: the on-call gauge moves, and with `notify_shift_start` the incoming
//! person gets one SMS ("You are on call for primary until Mon 12 Jan 09:00"), sent by whichever
//! replica claims the handoff first in the state store.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::config::Config;
use crate::delivery::Policy;
use crate::jobs::{Job, Tick};
use crate::model::content_key::ContentKey;
use crate::oncall::{Schedule, Shift, ShowYear};
use crate::ratelimit::Limits;
use crate::text::compose::Sms;

/// The job's name in its claims.
pub const JOB: &str = "shifts";

/// The handoffs this replica has announced (or seen claimed), so that it announces each once
/// even while the state store cannot be asked.
#[derive(Debug, Default)]
struct Notices(Vec<(String, DateTime<Utc>)>);

impl Notices {
    /// Whether `event` (of a shift that began `from`) was noted; forgets those long past.
    fn knows(&mut self, event: &str, from: DateTime<Utc>) -> bool {
        let grace = chrono::Duration::from_std(NOTICE_GRACE * 2).unwrap_or_default();
        self.0.retain(|(_, at)| *at + grace > from);
        self.0.iter().any(|(e, _)| e == event)
    }

    fn note(&mut self, event: &str, from: DateTime<Utc>) {
        self.0.push((event.to_string(), from));
    }
}

/// A handoff this recent still gets its notice, e.g. after a restart just past it.
pub const NOTICE_GRACE: Duration = Duration::from_secs(600);

/// How long at most between two looks at the schedules (and after a reload, at once).
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// The shift job: follows the schedules. The on-call gauge is set on every replica at every
/// tick, since each exports its own; a notice goes out only where the tick is claimed, and is
/// claimed on its own as well.
#[derive(Debug, Default)]
pub struct ShiftJob {
    notices: Notices,
}

impl Job for ShiftJob {
    fn name(&self) -> &'static str {
        JOB
    }

    fn period(&self, _: &Config) -> Duration {
        LOOK_AGAIN
    }

    /// Does what is due at `tick.now`: the gauge, and the notice of a handoff within
    /// `NOTICE_GRACE`. Looks again at the next handoff.
    fn tick<'a>(&'a mut self, tick: &'a Tick<'_>) -> BoxFuture<'a, DateTime<Utc>> {
        async move {
            let (live, now) = (tick.live, tick.now);
            let mut next = now + chrono::Duration::from_std(LOOK_AGAIN).unwrap_or_default();
            for schedule in live.config.schedules.values() {
                let shift = schedule.on_call(now);
                tick.metrics
                    .on_call(&schedule.name, &schedule.people(), shift.who);
                if let Some(until) = shift.until {
                    next = next.min(until);
                }
                let since = (now - shift.from).to_std().unwrap_or(Duration::MAX);
                if schedule.notify_shift_start && since < NOTICE_GRACE {
                    self.notify(tick, schedule, &shift).await;
                }
            }
            next
        }
        .boxed()
    }
}

impl ShiftJob {
    async fn notify(&mut self, tick: &Tick<'_>, schedule: &Schedule, shift: &Shift<'_>) {
        let (live, now) = (tick.live, tick.now);
        let event = format!(
            "shift:{}:{}:{}",
            schedule.name,
            shift.from.timestamp(),
            shift.who
        );
        // This replica's own memory first: with the store down it still sends each notice once.
        if self.notices.knows(&event, shift.from) {
            return;
        }
        // Another replica may do this tick; this one looks again at its next.
        if !tick.claim().await {
            return;
        }
        self.notices.note(&event, shift.from);
        if let Ok(false) = tick
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
        tick.deliverer
            .deliver(&live.outlet, vec![sms], policy)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;
    use crate::jobs::test_runner;
    use crate::live::Live;
    use crate::metrics::Metrics;
    use crate::state::faulty::{Faulty, Op};
    use crate::state::{MemoryStore, StateStore};

    fn live() -> Live {
        let yaml = "recipients: {alice: \"+4915228817386\", bob: \"+4915254599371\"}\n\
                    routes:\n  - {name: r, to: [primary]}\n\
                    schedules:\n  primary:\n    time_zone: Europe/Berlin\n    \
                    rotation: {members: [alice, bob], shift: 1w, start: \"2026-01-05T09:00\"}\n    \
                    notify_shift_start: true\n";
        let config =
            Config::from_yaml(yaml, Path::new("t.yml"), Path::new("."), &|_| None).unwrap();
        Live::new(config, true).unwrap()
    }

    /// The value of the series `series` in `metrics`, 0 when absent.
    fn value(metrics: &Metrics, series: &str) -> u64 {
        let text = metrics.render();
        let line = text.lines().find_map(|l| l.strip_prefix(series));
        line.map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Once this replica sent a notice, its next ticks within the grace ask the store nothing
    /// about it.
    #[tokio::test]
    async fn a_notice_sent_is_not_asked_about_again() {
        let live = live();
        let store = Arc::new(Faulty::new(
            MemoryStore::new(100, Arc::new(SystemClock)),
            |_| async { Ok(()) }.boxed(),
        ));
        let (runner, metrics) = test_runner(store.clone(), Arc::new(SystemClock));
        let mut runner = runner.with(ShiftJob::default());
        let handoff = DateTime::parse_from_rfc3339("2026-01-12T08:00:00Z")
            .unwrap()
            .to_utc();
        runner.tick(JOB, &live, handoff).await;
        let notices = "alertmanager_sipgate_sms_dry_run_total{route=\"schedule:primary\"}";
        assert_eq!(value(&metrics, notices), 1);
        let claims = store.asked(Op::ClaimOnce).len();
        for minutes in 1..=3 {
            let later = handoff + chrono::Duration::minutes(minutes);
            runner.tick(JOB, &live, later).await;
        }
        assert_eq!(store.asked(Op::ClaimOnce).len(), claims);
        assert_eq!(value(&metrics, notices), 1);
    }

    /// Each replica exports its own gauge, so every one sets it at every tick; the notice is
    /// sent by one of them.
    #[tokio::test]
    async fn at_a_handoff_every_replica_sets_its_gauge_and_one_sends_the_notice() {
        let live = live();
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new(100, Arc::new(SystemClock)));
        let replica = || {
            let (runner, metrics) = test_runner(store.clone(), Arc::new(SystemClock));
            (runner.with(ShiftJob::default()), metrics)
        };
        let ((mut a, metrics_a), (mut b, metrics_b)) = (replica(), replica());
        let handoff = DateTime::parse_from_rfc3339("2026-01-12T08:00:00Z")
            .unwrap()
            .to_utc();
        tokio::join!(
            a.tick(JOB, &live, handoff),
            b.tick(JOB, &live, handoff + chrono::Duration::seconds(1))
        );
        for metrics in [&metrics_a, &metrics_b] {
            let on_call = |who| {
                let series = format!(
                    "alertmanager_sipgate_oncall{{recipient=\"{who}\",schedule=\"primary\"}}"
                );
                value(metrics, &series)
            };
            assert_eq!((on_call("alice"), on_call("bob")), (0, 1));
        }
        let notices = "alertmanager_sipgate_sms_dry_run_total{route=\"schedule:primary\"}";
        assert_eq!(value(&metrics_a, notices) + value(&metrics_b, notices), 1);
    }
}
