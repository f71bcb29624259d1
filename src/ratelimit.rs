//! Keeps an alert storm from flooding a phone or the bill: at most N SMS per period to each
//! recipient and in total. What a limit holds back is counted, so the next SMS that goes through
//! can say how many the recipient missed.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::clock::{Millis, millis};

/// `10/h`: at most `count` SMS in any sliding `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: usize,
    pub period: Duration,
}

impl Rate {
    /// Accepts `N/s`, `N/m`, `N/h`, `N/d` or `N/<duration>` such as `5/30m`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let usage = || format!("invalid rate {text:?}; use e.g. \"10/h\", \"100/d\" or \"5/30m\"");
        let (count, period) = text.trim().split_once('/').ok_or_else(usage)?;
        let count: usize = count.trim().parse().map_err(|_| usage())?;
        let period = match period.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| usage())?,
        };
        if count == 0 || period.is_zero() {
            return Err(usage());
        }
        Ok(Rate { count, period })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub per_recipient: Option<Rate>,
    pub total: Option<Rate>,
}

/// A slot taken by an SMS about to be sent, handed back with `refund` when the send fails.
/// `id` tells apart slots taken in the same millisecond, also by other replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    pub at: Millis,
    pub id: u64,
}

/// The sliding windows and held-back counts of one process (the memory and file stores).
#[derive(Debug, Default)]
pub struct RateLimiter {
    per_recipient: HashMap<String, VecDeque<Reservation>>,
    total: VecDeque<Reservation>,
    held: HashMap<String, u64>,
}

fn forget_before(log: &mut VecDeque<Reservation>, rate: Option<Rate>, now: Millis) {
    let Some(rate) = rate else {
        log.clear();
        return;
    };
    let period = millis(rate.period);
    while log
        .front()
        .is_some_and(|r| now.saturating_sub(r.at) >= period)
    {
        log.pop_front();
    }
}

fn full(log: &VecDeque<Reservation>, rate: Option<Rate>) -> bool {
    rate.is_some_and(|r| log.len() >= r.count)
}

impl RateLimiter {
    /// Takes a slot for one SMS to `recipient`: `Ok(None)` when no limit applies, `Err(())`
    /// when a limit is reached, and then the SMS counts as held back.
    pub fn try_acquire(
        &mut self,
        recipient: &str,
        limits: &Limits,
        now: Millis,
        id: u64,
    ) -> Result<Option<Reservation>, Limited> {
        forget_before(&mut self.total, limits.total, now);
        let log = self.per_recipient.entry(recipient.to_string()).or_default();
        forget_before(log, limits.per_recipient, now);
        if log.is_empty() && limits.per_recipient.is_none() {
            self.per_recipient.remove(recipient);
        }
        let log = self.per_recipient.get(recipient);
        if log.is_some_and(|log| full(log, limits.per_recipient)) || full(&self.total, limits.total)
        {
            *self.held.entry(recipient.to_string()).or_default() += 1;
            return Err(Limited);
        }
        if limits.per_recipient.is_none() && limits.total.is_none() {
            return Ok(None);
        }
        let reservation = Reservation { at: now, id };
        if limits.per_recipient.is_some() {
            self.per_recipient
                .entry(recipient.to_string())
                .or_default()
                .push_back(reservation);
        }
        if limits.total.is_some() {
            self.total.push_back(reservation);
        }
        Ok(Some(reservation))
    }

    /// Gives the slot back: an SMS that was not sent does not count against the limit.
    pub fn refund(&mut self, recipient: &str, reservation: Reservation) {
        let remove = |log: &mut VecDeque<Reservation>| {
            if let Some(i) = log.iter().rposition(|r| *r == reservation) {
                log.remove(i);
            }
        };
        if let Some(log) = self.per_recipient.get_mut(recipient) {
            remove(log);
        }
        remove(&mut self.total);
    }

    /// How many SMS to `recipient` were held back since the last one that went through.
    pub fn take_held(&mut self, recipient: &str) -> u64 {
        self.held.remove(recipient).unwrap_or(0)
    }

    /// Puts a count back when the SMS that was to report it was not sent after all.
    pub fn restore_held(&mut self, recipient: &str, count: u64) {
        if count > 0 {
            *self.held.entry(recipient.to_string()).or_default() += count;
        }
    }

    /// The slots and held-back count of one recipient, to persist them.
    pub fn recipient(&self, recipient: &str) -> (Vec<Reservation>, u64) {
        let log = self
            .per_recipient
            .get(recipient)
            .map(|log| log.iter().copied().collect())
            .unwrap_or_default();
        (log, self.held.get(recipient).copied().unwrap_or(0))
    }

    /// Every recipient with slots or a held-back count, to persist them all.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        let held = self
            .held
            .keys()
            .filter(|name| !self.per_recipient.contains_key(*name));
        self.per_recipient.keys().chain(held).map(String::as_str)
    }

    /// The slots of the total limit, to persist them.
    pub fn total(&self) -> Vec<Reservation> {
        self.total.iter().copied().collect()
    }

    /// Restores what `recipient` and `total` returned.
    pub fn restore_recipient(&mut self, recipient: &str, log: Vec<Reservation>, held: u64) {
        if !log.is_empty() {
            self.per_recipient
                .insert(recipient.to_string(), log.into_iter().collect());
        }
        self.restore_held(recipient, held);
    }

    pub fn restore_total(&mut self, log: Vec<Reservation>) {
        self.total = log.into_iter().collect();
    }
}

/// A limit was reached: the SMS is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited;

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: usize, secs: u64) -> Option<Rate> {
        Some(Rate {
            count,
            period: Duration::from_secs(secs),
        })
    }

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("10/h"), Ok(rate(10, 3600).unwrap()));
        assert_eq!(Rate::parse(" 100 / d "), Ok(rate(100, 86_400).unwrap()));
        assert_eq!(Rate::parse("5/30m"), Ok(rate(5, 1800).unwrap()));
        for bad in ["10", "0/h", "x/h", "10/y", "10/0s", ""] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_recipient_limit_holds_back_and_counts() {
        let limits = Limits {
            per_recipient: rate(2, 3600),
            total: None,
        };
        let t0: Millis = 1_000_000;
        let mut l = RateLimiter::default();
        assert!(l.try_acquire("alice", &limits, t0, 0).is_ok());
        assert!(l.try_acquire("alice", &limits, t0, 0).is_ok());
        assert!(l.try_acquire("alice", &limits, t0, 0).is_err());
        assert!(l.try_acquire("alice", &limits, t0, 0).is_err());
        assert!(
            l.try_acquire("bob", &limits, t0, 0).is_ok(),
            "bob has his own budget"
        );
        assert_eq!(l.take_held("alice"), 2);
        assert_eq!(l.take_held("alice"), 0);
        assert!(
            l.try_acquire("alice", &limits, t0 + 3_600_000, 0).is_ok(),
            "the window slides"
        );
    }

    #[test]
    fn total_limit_applies_across_recipients() {
        let limits = Limits {
            per_recipient: None,
            total: rate(3, 60),
        };
        let t0: Millis = 1_000_000;
        let mut l = RateLimiter::default();
        for who in ["a", "b", "c"] {
            assert!(l.try_acquire(who, &limits, t0, 0).is_ok());
        }
        assert!(l.try_acquire("d", &limits, t0, 0).is_err());
        assert_eq!(l.take_held("d"), 1);
    }

    #[test]
    fn refunded_slots_are_free_again() {
        let limits = Limits {
            per_recipient: rate(1, 3600),
            total: rate(1, 3600),
        };
        let t0: Millis = 1_000_000;
        let mut l = RateLimiter::default();
        let r = l.try_acquire("alice", &limits, t0, 0).unwrap().unwrap();
        l.refund("alice", r);
        assert!(l.try_acquire("alice", &limits, t0, 0).is_ok());
    }

    #[test]
    fn no_limits_never_hold_back() {
        let mut l = RateLimiter::default();
        let t0: Millis = 1_000_000;
        for _ in 0..10_000 {
            assert!(l.try_acquire("alice", &Limits::default(), t0, 0).is_ok());
        }
        assert!(l.total.is_empty() && l.per_recipient.is_empty());
    }
}
