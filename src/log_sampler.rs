//! At most one log line per interval for an event that can come in floods, such as refused
//! requests: every event is counted, and each line says how many there were since the one
//! before and of which kinds, so that a flood cannot fill the disk through the log.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogSampler {
    interval: Duration,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// When the last line was written; none before the first.
    last_line: Option<Instant>,
    /// Events since the last line.
    count: u64,
    /// Their kinds: a few fixed words, never caller input.
    kinds: BTreeSet<&'static str>,
}

/// What a line that is due reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Events since the last line, the one that made this line due included.
    pub count: u64,
    /// Their kinds, sorted and comma-separated.
    pub kinds: String,
}

impl LogSampler {
    pub fn new(interval: Duration) -> Self {
        LogSampler {
            interval,
            window: Mutex::new(Window::default()),
        }
    }

    /// Counts one event of `kind` at `now`; `Some` when a line is due: at the first event, and
    /// at the first one at least `interval` after the last line.
    pub fn record(&self, now: Instant, kind: &'static str) -> Option<Sample> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        window.count += 1;
        window.kinds.insert(kind);
        let due = window
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        window.last_line = Some(now);
        let kinds = std::mem::take(&mut window.kinds);
        Some(Sample {
            count: std::mem::take(&mut window.count),
            kinds: kinds.into_iter().collect::<Vec<_>>().join(","),
        })
    }

    /// The interval, for the log line that tells how often lines come.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(count: u64, kinds: &str) -> Option<Sample> {
        Some(Sample {
            count,
            kinds: kinds.to_string(),
        })
    }

    #[test]
    fn the_first_event_is_logged_and_then_at_most_one_line_per_interval_with_the_count() {
        let sampler = LogSampler::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);

        assert_eq!(sampler.record(at(0), "none"), sample(1, "none"));
        for ms in 1..1000 {
            let kind = if ms % 2 == 0 { "basic" } else { "bearer" };
            assert_eq!(sampler.record(at(ms), kind), None);
        }
        assert_eq!(sampler.record(at(9_999), "none"), None);
        // 999 + 1 before, this one too.
        assert_eq!(
            sampler.record(at(10_000), "other"),
            sample(1001, "basic,bearer,none,other")
        );
        assert_eq!(sampler.record(at(10_001), "none"), None);
        // A quiet spell: the next event gets its line at once.
        assert_eq!(sampler.record(at(60_000), "basic"), sample(2, "basic,none"));
        assert_eq!(sampler.record(at(60_000), "basic"), None);
    }

    #[test]
    fn a_clock_that_goes_backwards_only_delays_the_next_line() {
        let sampler = LogSampler::new(Duration::from_secs(10));
        let start = Instant::now() + Duration::from_secs(60);
        assert_eq!(sampler.record(start, "none"), sample(1, "none"));
        assert_eq!(
            sampler.record(start - Duration::from_secs(30), "none"),
            None
        );
        assert_eq!(
            sampler.record(start + Duration::from_secs(10), "none"),
            sample(2, "none")
        );
    }
}
