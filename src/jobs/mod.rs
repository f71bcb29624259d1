//! The background jobs (the shift notices, the watchdog) on one runner. Each job says when it
//! wants to look again; the runner wakes at the earliest of those, and at once after a reload.
//! What a tick does on every replica (its gauges, its own memory) it just does; the part that
//! must happen once across replicas (its SMS) it does only after claiming the tick in the state
//! store, on a key that every replica derives alike from the job's name and period.

pub mod shift_notices;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use crate::clock::{Clock, Millis, millis, millis_at};
use crate::config::Config;
use crate::delivery::Deliverer;
use crate::live::Live;
use crate::metrics::Metrics;

/// A background job: its own state, and what it does at a tick.
pub trait Job: Send {
    /// Names the job in its claims, the same on every replica.
    fn name(&self) -> &'static str;

    /// The longest wait between two ticks, and the length of the slots its ticks are claimed
    /// by: replicas on the same config cut time into the same slots.
    fn period(&self, config: &Config) -> Duration;

    /// Does what is due at `tick.now`; returns when to look again.
    fn tick<'a>(&'a mut self, tick: &'a Tick<'_>) -> BoxFuture<'a, DateTime<Utc>>;
}

/// The shortest wait between two ticks of a job, so that a job that asks for a time already
/// past cannot spin.
const MIN_WAIT: Duration = Duration::from_millis(100);

/// One tick of one job: the config it runs on, the seams it sends through, and its claim.
pub struct Tick<'a> {
    /// The config the whole tick runs on, even if a reload swaps it meanwhile.
    pub live: &'a Live,
    pub deliverer: &'a Deliverer,
    pub metrics: &'a Metrics,
    pub now: DateTime<Utc>,
    job: &'static str,
    slot: Slot,
    /// The slot this replica claimed last.
    won: Option<Slot>,
    claimed: OnceCell<bool>,
}

impl Tick<'_> {
    /// Whether this replica does the part of this tick that must happen once across replicas
    /// (its SMS). The store is asked at the first call of a tick; the later ones repeat its
    /// answer. True also when the store cannot answer: a page is never held back because a
    /// helper system is down, and the job's own memory keeps its SMS once per replica.
    pub async fn claim(&self) -> bool {
        *self
            .claimed
            .get_or_init(|| async {
                if self.won == Some(self.slot) {
                    return true;
                }
                let key = self.slot.key(self.job);
                let claim = self.deliverer.store().claim_once(&key, self.slot.ttl());
                !matches!(claim.await, Ok(false))
            })
            .await
    }
}

/// The stretch of time one claim covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// When it starts, in Unix ms: a multiple of the period, the same on every replica.
    start: Millis,
    period: Duration,
}

impl Slot {
    fn of(now: DateTime<Utc>, period: Duration) -> Slot {
        let now = millis_at(now);
        Slot {
            start: now - now % millis(period).max(1),
            period,
        }
    }

    fn key(&self, job: &str) -> String {
        format!("job:{job}:{}", self.start)
    }

    /// Two periods: a replica whose clock lags a little still finds the claim.
    fn ttl(&self) -> Duration {
        self.period.saturating_mul(2)
    }
}

/// The jobs of this replica and what it needs to run them.
pub struct Runner {
    jobs: Vec<Entry>,
    services: Arc<Services>,
}

/// What every tick is handed besides the config.
struct Services {
    deliverer: Deliverer,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
}

impl Services {
    /// One tick of `job` at `now`, claimed in slots of its period; how long after `now` it
    /// ticks next: what it asked for, at least `MIN_WAIT` and at most one period.
    async fn tick(
        &self,
        job: &mut dyn Job,
        won: &mut Option<Slot>,
        live: &Live,
        now: DateTime<Utc>,
    ) -> Duration {
        let period = job.period(&live.config);
        let tick = Tick {
            live,
            deliverer: &self.deliverer,
            metrics: &self.metrics,
            now,
            job: job.name(),
            slot: Slot::of(now, period),
            won: *won,
            claimed: OnceCell::new(),
        };
        let asked = match AssertUnwindSafe(job.tick(&tick)).catch_unwind().await {
            // A time already past is no wait at all.
            Ok(next) => (next - now).to_std().unwrap_or_default(),
            // A bug: the other jobs go on, and this one is tried again a period later.
            Err(panic) => {
                let panic = crate::panic::message(panic.as_ref());
                tracing::error!(
                    job = tick.job,
                    %panic,
                    "bug: a background job panicked; it runs again at its next tick"
                );
                period
            }
        };
        if tick.claimed.get() == Some(&true) {
            *won = Some(tick.slot);
        }
        asked.clamp(MIN_WAIT, period.max(MIN_WAIT))
    }
}

/// A job, and when the runner ticks it next.
struct Entry {
    /// `None` while its tick runs.
    job: Option<Box<dyn Job>>,
    name: &'static str,
    /// On tokio's clock, which a change of the wall clock does not move; `None`: at once.
    due: Option<Instant>,
    /// The last slot this replica claimed: a second tick in it (after a reload) is still its own.
    won: Option<Slot>,
    /// A reload came while the tick ran: tick again at once.
    reloaded: bool,
}

impl Runner {
    /// A runner on the service's clock; its claims go to the deliverer's state store.
    pub fn new(deliverer: Deliverer, metrics: Metrics, clock: Arc<dyn Clock>) -> Self {
        Runner {
            jobs: Vec::new(),
            services: Arc::new(Services {
                deliverer,
                metrics,
                clock,
            }),
        }
    }

    /// Adds `job`, first ticked at once.
    pub fn with(mut self, job: impl Job + 'static) -> Self {
        self.jobs.push(Entry {
            name: job.name(),
            job: Some(Box::new(job)),
            due: None,
            won: None,
            reloaded: false,
        });
        self
    }

    /// Runs one tick of the job named `name` at `now` on `live`, as `run` does; when that job
    /// wants to look again, or `None` for a job it does not have.
    pub async fn tick(
        &mut self,
        name: &str,
        live: &Live,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let entry = self.jobs.iter_mut().find(|entry| entry.name == name)?;
        let job = entry.job.as_mut()?;
        let wait = self
            .services
            .tick(job.as_mut(), &mut entry.won, live, now)
            .await;
        Some(now + chrono::Duration::from_std(wait).ok()?)
    }

    /// Ticks the jobs for as long as the service runs, each on the config `current` gives at
    /// that moment; `reloaded` wakes them all at once. Ticks of different jobs overlap, so that
    /// a slow send of one job holds back no other; a job's own ticks never do.
    pub async fn run(mut self, current: impl Fn() -> Arc<Live> + Send, reloaded: Arc<Notify>) {
        let mut running = FuturesUnordered::new();
        loop {
            let (started, now) = (Instant::now(), self.services.clock.datetime());
            let mut live: Option<Arc<Live>> = None;
            for (index, entry) in self.jobs.iter_mut().enumerate() {
                if entry.due.is_some_and(|due| due > started) {
                    continue;
                }
                let Some(mut job) = entry.job.take() else {
                    continue;
                };
                let live = live.get_or_insert_with(&current).clone();
                let services = self.services.clone();
                let mut won = entry.won;
                running.push(async move {
                    let wait = services.tick(job.as_mut(), &mut won, &live, now).await;
                    (index, job, won, started + wait)
                });
            }
            // Every job not running has a time of its own now.
            let wake = self
                .jobs
                .iter()
                .filter(|entry| entry.job.is_some())
                .filter_map(|entry| entry.due)
                .min();
            let sleep = async {
                match wake {
                    Some(wake) => tokio::time::sleep_until(wake).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((index, job, won, due)) = running.next() => {
                    let entry = &mut self.jobs[index];
                    entry.job = Some(job);
                    entry.won = won;
                    entry.due = (!std::mem::take(&mut entry.reloaded)).then_some(due);
                }
                () = sleep => {}
                () = reloaded.notified() => {
                    for entry in &mut self.jobs {
                        if entry.job.is_some() {
                            entry.due = None;
                        } else {
                            entry.reloaded = true;
                        }
                    }
                }
            }
        }
    }
}

/// A runner for the jobs' unit tests: its own metrics, one send at a time, on `store`.
#[cfg(test)]
pub(crate) fn test_runner(
    store: Arc<dyn crate::state::StateStore>,
    clock: Arc<dyn Clock>,
) -> (Runner, Metrics) {
    let metrics = Metrics::new().expect("the metrics register");
    let deliverer = Deliverer::new(
        store,
        1,
        1,
        tokio::runtime::Handle::current(),
        metrics.clone(),
        clock.clone(),
    );
    (Runner::new(deliverer, metrics.clone(), clock), metrics)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::TokioClock;
    use crate::state::faulty::Faulty;
    use crate::state::{MemoryStore, StateError, StateStore};

    /// One tick as a test job saw it: when, and whether it held the claim.
    type Seen = Arc<Mutex<Vec<(DateTime<Utc>, bool)>>>;

    /// Claims every tick, writes down what it saw, and asks to look again `next` later.
    struct Recording {
        name: &'static str,
        period: Duration,
        next: Duration,
        /// How long a tick takes, as a slow send would.
        busy: Duration,
        seen: Seen,
    }

    impl Recording {
        fn new(name: &'static str, period: Duration, next: Duration) -> (Self, Seen) {
            let seen = Seen::default();
            let job = Recording {
                name,
                period,
                next,
                busy: Duration::ZERO,
                seen: seen.clone(),
            };
            (job, seen)
        }
    }

    impl Job for Recording {
        fn name(&self) -> &'static str {
            self.name
        }
        fn period(&self, _: &Config) -> Duration {
            self.period
        }
        fn tick<'a>(&'a mut self, tick: &'a Tick<'_>) -> BoxFuture<'a, DateTime<Utc>> {
            async move {
                let claimed = tick.claim().await;
                // Asked twice, the answer stands.
                assert_eq!(tick.claim().await, claimed);
                self.seen.lock().unwrap().push((tick.now, claimed));
                tokio::time::sleep(self.busy).await;
                tick.now + self.next
            }
            .boxed()
        }
    }

    fn live() -> Arc<Live> {
        let yaml = "recipients: {alice: \"+4915228817386\"}\nroutes:\n  - {name: r, to: [alice]}\n";
        let config =
            Config::from_yaml(yaml, Path::new("t.yml"), Path::new("."), &|_| None).unwrap();
        Arc::new(Live::new(config, true).unwrap())
    }

    fn runner(store: Arc<dyn StateStore>, clock: Arc<dyn Clock>) -> Runner {
        test_runner(store, clock).0
    }

    /// Starts `runner` on a config that never changes; the handle to wake it as a reload does.
    fn start(runner: Runner) -> Arc<Notify> {
        let reloaded = Arc::new(Notify::new());
        let live = live();
        tokio::spawn(runner.run(move || live.clone(), reloaded.clone()));
        reloaded
    }

    /// The seconds since `start` at which a job ticked.
    fn offsets(seen: &Seen, start: DateTime<Utc>) -> Vec<i64> {
        let seen = seen.lock().unwrap();
        seen.iter()
            .map(|(at, _)| (*at - start).num_milliseconds() / 1000)
            .collect()
    }

    const FIVE: Duration = Duration::from_secs(5);

    /// Two replicas' runners on one clock and one store: every tick's claim is won by exactly
    /// one of them.
    async fn two_replicas_tick(store: Arc<dyn StateStore>, clock: Arc<dyn Clock>) -> [Seen; 2] {
        let (a, seen_a) = Recording::new("test", FIVE, FIVE);
        let (b, seen_b) = Recording::new("test", FIVE, FIVE);
        start(runner(store.clone(), clock.clone()).with(a));
        start(runner(store, clock).with(b));
        tokio::time::sleep(Duration::from_secs(62)).await;
        [seen_a, seen_b]
    }

    #[tokio::test(start_paused = true)]
    async fn two_runners_on_one_store_run_each_tick_once_between_them() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let store = Arc::new(MemoryStore::new(1000, clock.clone()));
        let [a, b] = two_replicas_tick(store, clock).await;
        let (a, b) = (a.lock().unwrap().clone(), b.lock().unwrap().clone());
        assert_eq!(a.len(), 13, "at 0, 5, ... 60 s: {a:?}");
        assert_eq!(b.len(), 13, "{b:?}");
        for ((at_a, claimed_a), (at_b, claimed_b)) in a.iter().zip(&b) {
            assert_eq!(at_a, at_b);
            assert!(claimed_a ^ claimed_b, "one of them at {at_a}: {a:?} {b:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_store_that_cannot_answer_both_runners_run_every_tick() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let down = Faulty::new(MemoryStore::new(1000, clock.clone()), |_| {
            async { Err(StateError::Unavailable("down".to_string())) }.boxed()
        });
        let [a, b] = two_replicas_tick(Arc::new(down), clock).await;
        for seen in [a, b] {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 13, "{seen:?}");
            assert!(seen.iter().all(|(_, claimed)| *claimed), "{seen:?}");
        }
    }

    /// Each job ticks when it asked to, within its period: one that asks for later than that
    /// is looked at after one period anyway.
    #[tokio::test(start_paused = true)]
    async fn the_runner_wakes_at_the_earliest_time_a_job_asked_for() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let start_at = clock.datetime();
        let store = Arc::new(MemoryStore::new(1000, clock.clone()));
        let minute = Duration::from_secs(60);
        let (every_3s, seen_3s) = Recording::new("a", minute, Duration::from_secs(3));
        let (every_2s, seen_2s) = Recording::new("b", minute, Duration::from_secs(2));
        let (far_off, seen_far) =
            Recording::new("c", Duration::from_secs(4), Duration::from_secs(3600));
        start(
            runner(store, clock)
                .with(every_3s)
                .with(every_2s)
                .with(far_off),
        );
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert_eq!(offsets(&seen_3s, start_at), [0, 3, 6, 9]);
        assert_eq!(offsets(&seen_2s, start_at), [0, 2, 4, 6, 8, 10]);
        assert_eq!(offsets(&seen_far, start_at), [0, 4, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_wakes_every_job_at_once() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let start_at = clock.datetime();
        let store = Arc::new(MemoryStore::new(1000, clock.clone()));
        let minute = Duration::from_secs(60);
        let (job, seen) = Recording::new("a", minute, minute);
        let reloaded = start(runner(store, clock).with(job));
        tokio::time::sleep(Duration::from_secs(10)).await;
        reloaded.notify_one();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(offsets(&seen, start_at), [0, 10]);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(
            offsets(&seen, start_at),
            [0, 10, 70],
            "a minute after the reload"
        );
    }

    /// Panics at its first tick, as a bug would.
    struct Buggy(Seen);

    impl Job for Buggy {
        fn name(&self) -> &'static str {
            "buggy"
        }
        fn period(&self, _: &Config) -> Duration {
            FIVE
        }
        fn tick<'a>(&'a mut self, tick: &'a Tick<'_>) -> BoxFuture<'a, DateTime<Utc>> {
            async move {
                let first = self.0.lock().unwrap().is_empty();
                self.0.lock().unwrap().push((tick.now, false));
                assert!(!first, "a bug");
                tick.now + FIVE
            }
            .boxed()
        }
    }

    /// The wall clock set back an hour (NTP, a VM resumed) delays no tick: the runner waits on
    /// tokio's clock, which only goes forward.
    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_set_back_delays_no_tick() {
        let manual = Arc::new(crate::clock::ManualClock::at(1_768_204_800_000));
        let clock: Arc<dyn Clock> = manual.clone();
        let store = Arc::new(MemoryStore::new(1000, clock.clone()));
        let (job, seen) = Recording::new("a", FIVE, FIVE);
        start(runner(store, clock).with(job));
        tokio::time::sleep(Duration::from_secs(1)).await;
        manual.set(DateTime::from_timestamp_millis(1_768_201_200_000).unwrap());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(seen.lock().unwrap().len(), 3, "at 0, 5 and 10 s");
    }

    /// A job that hits a bug stops neither the runner nor itself: it ticks again a period later.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_tick_stops_no_job() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let start_at = clock.datetime();
        let store = Arc::new(MemoryStore::new(1000, clock.clone()));
        let (job, seen) = Recording::new("a", FIVE, FIVE);
        let buggy = Seen::default();
        start(runner(store, clock).with(Buggy(buggy.clone())).with(job));
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert_eq!(offsets(&seen, start_at), [0, 5, 10]);
        assert_eq!(offsets(&buggy, start_at), [0, 5, 10]);
    }

    /// A slot is claimed once: by whoever ticks first in it, who keeps it for a second tick in it
    /// (after a reload); the next slot is claimed anew.
    #[tokio::test]
    async fn a_slot_is_claimed_once_and_stays_with_its_claimer() {
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::at(0));
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new(1000, clock.clone()));
        let minute = Duration::from_secs(60);
        let (job_a, seen_a) = Recording::new("a", minute, minute);
        let (job_b, seen_b) = Recording::new("a", minute, minute);
        let mut a = runner(store.clone(), clock.clone()).with(job_a);
        let mut b = runner(store, clock).with(job_b);
        let live = live();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        a.tick("a", &live, at("2026-01-12T08:00:00Z")).await;
        b.tick("a", &live, at("2026-01-12T08:00:05Z")).await;
        a.tick("a", &live, at("2026-01-12T08:00:10Z")).await;
        b.tick("a", &live, at("2026-01-12T08:01:00Z")).await;
        let claims = |seen: &Seen| {
            seen.lock()
                .unwrap()
                .iter()
                .map(|(_, c)| *c)
                .collect::<Vec<_>>()
        };
        assert_eq!(claims(&seen_a), [true, true]);
        assert_eq!(claims(&seen_b), [false, true]);
        assert_eq!(
            b.tick("nobody", &live, at("2026-01-12T08:02:00Z")).await,
            None
        );
    }

    /// A job whose tick takes long (a send to a slow Sipgate) holds back no other job; its own
    /// next tick waits for it, and a reload meanwhile ticks it again right after.
    #[tokio::test(start_paused = true)]
    async fn a_slow_tick_holds_back_no_other_job() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let start_at = clock.datetime();
        let store = Arc::new(MemoryStore::new(1000, clock.clone()));
        let minute = Duration::from_secs(60);
        let (mut slow, seen_slow) = Recording::new("slow", minute, minute);
        slow.busy = Duration::from_secs(12);
        let (quick, seen_quick) = Recording::new("quick", FIVE, FIVE);
        let reloaded = start(runner(store, clock).with(slow).with(quick));
        tokio::time::sleep(Duration::from_secs(11)).await;
        reloaded.notify_one();
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert_eq!(offsets(&seen_quick, start_at), [0, 5, 10, 11, 16]);
        assert_eq!(
            offsets(&seen_slow, start_at),
            [0, 12],
            "again once its tick ended"
        );
    }
}
