//! The `delivery:` section: how long the caller waits for its answer, how long a sent SMS is
//! remembered, how many go out at once, and the rate limits.

use std::time::Duration;

use serde::Deserialize;

use super::field::{count_in_range, duration_at_most, parse_field};
use super::problem::Problem;
use crate::ratelimit::{Limits, Rate};

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub response_deadline: Duration,
    pub dedup_window: Duration,
    pub max_concurrency: usize,
    pub max_pending: usize,
    pub rate_limit: Limits,
}

/// The part of the response deadline kept for the send itself: the state store may use the rest
/// before an SMS goes out without it.
pub const SEND_RESERVE: Duration = Duration::from_secs(1);

impl DeliveryConfig {
    /// How long an SMS waits for the state store's word before it goes out without it: the
    /// response deadline less the time kept for the send (`SEND_RESERVE`, or half of a shorter
    /// deadline), so that a stalled store never makes the answer late.
    pub fn state_budget(&self) -> Duration {
        self.response_deadline - SEND_RESERVE.min(self.response_deadline / 2)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    response_deadline: Option<String>,
    dedup_window: Option<String>,
    max_concurrency: Option<usize>,
    max_pending: Option<usize>,
    #[serde(default)]
    rate_limit: RawRateLimit,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_recipient: Option<String>,
    total: Option<String>,
}

pub(super) fn delivery_config(raw: RawDelivery, problems: &mut Vec<Problem>) -> DeliveryConfig {
    // Alertmanager gives up after 10 s and Healthchecks.io after 30 s; longer only loses answers.
    let response_deadline = duration_at_most(
        raw.response_deadline.as_deref(),
        Duration::from_secs(5),
        Duration::from_secs(60),
        "delivery.response_deadline",
        problems,
    );
    let dedup_window = duration_at_most(
        raw.dedup_window.as_deref(),
        Duration::from_secs(600),
        Duration::from_secs(7 * 86_400),
        "delivery.dedup_window",
        problems,
    );
    let rate = |value: Option<String>, field: &str, problems: &mut Vec<Problem>| {
        parse_field(
            value.as_deref(),
            |v| Rate::parse(v).map(Some),
            None,
            field,
            problems,
        )
    };
    let rate_limit = Limits {
        per_recipient: rate(
            raw.rate_limit.per_recipient,
            "delivery.rate_limit.per_recipient",
            problems,
        ),
        total: rate(raw.rate_limit.total, "delivery.rate_limit.total", problems),
    };
    let max_concurrency = count_in_range(
        raw.max_concurrency.unwrap_or(8),
        1000,
        "delivery.max_concurrency",
        problems,
    );
    let max_pending = count_in_range(
        raw.max_pending.unwrap_or(1000),
        1_000_000,
        "delivery.max_pending",
        problems,
    );
    DeliveryConfig {
        response_deadline,
        dedup_window,
        max_concurrency,
        max_pending,
        rate_limit,
    }
}
