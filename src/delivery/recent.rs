//! The last SMS this replica handled, for the status page: a small ring in memory of how each
//! ended (route, the person's name, outcome, segments). An entry is made from the `SmsReport`
//! the caller gets, which holds no phone number, so none can reach the page. Per replica and
//! gone at a restart: the log and the metrics are the record; this is a glance.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::clock::Millis;
use crate::model::outcome::SmsReport;

/// How many SMS the ring keeps.
pub const KEPT: usize = 20;

/// One SMS as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub at: Millis,
    pub report: SmsReport,
    /// It ended after its caller stopped waiting (the response deadline, a dropped request):
    /// the caller was told it failed, and this is what came of it.
    pub late: bool,
}

/// The last `KEPT` SMS, oldest first inside.
#[derive(Debug, Default)]
pub struct RecentSms {
    ring: Mutex<VecDeque<Handled>>,
}

impl RecentSms {
    /// Keeps `handled`, forgetting the oldest beyond `KEPT`.
    pub fn record(&self, handled: Handled) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(handled);
    }

    /// What the ring holds, the newest first.
    pub fn newest_first(&self) -> Vec<Handled> {
        // A panic while holding the lock leaves a consistent ring: every change is one call.
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::{FailureReason, SuppressReason};

    fn sent(at: Millis, recipient: &str) -> Handled {
        Handled {
            at,
            report: SmsReport {
                route: "critical".to_string(),
                recipient: recipient.to_string(),
                outcome: crate::model::outcome::Outcome::Sent,
                reason: None,
                segments: 1,
            },
            late: false,
        }
    }

    #[test]
    fn the_newest_come_first_and_only_the_last_twenty_are_kept() {
        let recent = RecentSms::default();
        assert_eq!(recent.newest_first(), []);
        for at in 1..=25 {
            recent.record(sent(at, "alice"));
        }
        let kept: Vec<Millis> = recent.newest_first().iter().map(|h| h.at).collect();
        assert_eq!(kept, (6..=25).rev().collect::<Vec<_>>());
    }

    #[test]
    fn every_outcome_is_kept_as_the_caller_was_told_it() {
        let recent = RecentSms::default();
        let failed = Handled {
            at: 2,
            report: SmsReport::failed("critical", "bob", FailureReason::Timeout, 2),
            late: false,
        };
        let late = Handled {
            at: 3,
            late: true,
            ..sent(3, "bob")
        };
        let muted = Handled {
            at: 4,
            report: SmsReport::suppressed("warnings", "alice", SuppressReason::Muted),
            late: false,
        };
        for handled in [
            sent(1, "alice"),
            failed.clone(),
            late.clone(),
            muted.clone(),
        ] {
            recent.record(handled);
        }
        assert_eq!(
            recent.newest_first(),
            [muted, late, failed, sent(1, "alice")]
        );
    }
}
