//! Time for what several processes or a restart must agree on: Unix milliseconds, from a clock
//! that production reads from the system and tests set by hand.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `t` in Unix ms; a time before 1970 counts as the epoch.
pub fn millis_at(t: DateTime<Utc>) -> Millis {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}

/// `at` as a calendar time; past what a calendar time holds, the epoch.
pub fn datetime(at: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(at).unwrap_or(i64::MAX)).unwrap_or_default()
}

pub trait Clock: fmt::Debug + Send + Sync {
    fn now(&self) -> Millis;

    /// `now` as a calendar time, for schedules, time intervals and texts.
    fn datetime(&self) -> DateTime<Utc> {
        datetime(self.now())
    }
}

/// The system's wall clock: what replicas compare, so keep it in NTP sync.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        millis(since_epoch)
    }
}

/// The system time at creation, advanced by tokio's clock: for tests on a paused tokio clock,
/// where `tokio::time::advance` moves it too.
#[derive(Debug)]
pub struct TokioClock {
    started_unix: Millis,
    started: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            started_unix: SystemClock.now(),
            started: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Millis {
        self.started_unix
            .saturating_add(millis(self.started.elapsed()))
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(now: Millis) -> Self {
        ManualClock(AtomicU64::new(now))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::SeqCst);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.0.store(millis_at(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}
