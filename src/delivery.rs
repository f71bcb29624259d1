//! Delivery rules: what "never lose, never duplicate, never flood" means for each SMS.
//!
//! - Each SMS is claimed in the ledger first; one already sent (or being sent) is not sent again.
//! - Rate limits may hold it back on purpose; the next SMS to that recipient says how many.
//! - The send runs as a background task: it retries transient failures while the response deadline
//!   allows, and a request already on the wire is never abandoned. The caller gets the outcome if
//!   it is known by the deadline, else a failure so that it retries, and the retry finds the
//!   outcome in the ledger.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::timeout_at;
use tokio_util::task::TaskTracker;

use crate::compose::{Sms, fit};
use crate::ledger::{Claim, ContentKey, Ledger};
use crate::metrics::Metrics;
use crate::ratelimit::{Limits, RateLimiter, Reservation};
use crate::sipgate::{FailureReason, SendError, SipgateClient};

/// After Sipgate refused the token, the balance or the extension, further SMS fail fast for this
/// long instead of hammering Sipgate with a request that cannot succeed.
pub const PERMANENT_FAILURE_HOLDOFF: Duration = Duration::from_secs(60);

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Where SMS go: Sipgate, or the log when running dry.
#[derive(Debug, Clone)]
pub enum Sender {
    Sipgate(SipgateClient),
    DryRun,
}

impl Sender {
    async fn send(&self, sms: &Sms, text: &str) -> Result<(), SendError> {
        match self {
            Sender::Sipgate(client) => client.send_sms(&sms.number, text).await,
            Sender::DryRun => {
                tracing::info!(
                    route = %sms.route,
                    recipient = %sms.recipient,
                    text = %text,
                    "dry-run: SMS not sent"
                );
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Sent,
    DryRun,
    Failed,
    Suppressed,
}

/// Why an SMS was held back on purpose; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    Duplicate,
    RateLimited,
    NoRoute,
    SendResolved,
}

impl SuppressReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::Duplicate => "duplicate",
            SuppressReason::RateLimited => "rate_limited",
            SuppressReason::NoRoute => "no_route",
            SuppressReason::SendResolved => "send_resolved",
        }
    }
}

/// One line of the answer to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmsReport {
    pub route: String,
    pub recipient: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub segments: usize,
}

impl SmsReport {
    pub fn suppressed(route: &str, recipient: &str, reason: SuppressReason) -> Self {
        SmsReport {
            route: route.to_string(),
            recipient: recipient.to_string(),
            outcome: Outcome::Suppressed,
            reason: Some(reason.as_str()),
            segments: 0,
        }
    }
}

/// The config-dependent rules for one notification.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// When the caller must have its answer.
    pub deadline: Instant,
    pub dedup_window: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Holdoff {
    reason: FailureReason,
    until: Instant,
}

struct State {
    ledger: Ledger,
    limiter: RateLimiter,
    holdoff: Option<Holdoff>,
}

struct Inner {
    state: Mutex<State>,
    /// Sipgate requests on the wire at once.
    requests: Arc<Semaphore>,
    /// SMS being sent or waiting to be, so that memory stays bounded under a storm.
    pending: Arc<Semaphore>,
    tasks: TaskTracker,
    runtime: Handle,
    metrics: Metrics,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: every update is a single call.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lives as long as the process, across config reloads, so that the ledger and limits hold.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

/// How one send ended, as the background task saw it.
#[derive(Debug)]
enum SendResult {
    Delivered { text_segments: usize },
    NotDelivered(FailureReason),
}

impl Deliverer {
    /// `runtime` runs the sends; it must outlive the HTTP server so that sends in flight finish.
    pub fn new(
        max_concurrency: usize,
        max_pending: usize,
        ledger_capacity: usize,
        runtime: Handle,
        metrics: Metrics,
    ) -> Self {
        Deliverer {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    ledger: Ledger::new(Duration::from_secs(600), ledger_capacity),
                    limiter: RateLimiter::default(),
                    holdoff: None,
                }),
                requests: Arc::new(Semaphore::new(max_concurrency.max(1))),
                pending: Arc::new(Semaphore::new(max_pending.max(1))),
                tasks: TaskTracker::new(),
                runtime,
                metrics,
            }),
        }
    }

    /// Why SMS currently fail fast, if they do.
    pub fn holdoff(&self) -> Option<(FailureReason, Duration)> {
        let now = Instant::now();
        self.inner
            .state()
            .holdoff
            .filter(|h| h.until > now)
            .map(|h| (h.reason, h.until - now))
    }

    /// A new config may have fixed what the hold-off was waiting for.
    pub fn clear_holdoff(&self) {
        self.inner.state().holdoff = None;
    }

    pub async fn deliver(
        &self,
        sender: &Sender,
        messages: Vec<Sms>,
        policy: Policy,
    ) -> Vec<SmsReport> {
        join_all(
            messages
                .into_iter()
                .map(|sms| self.deliver_one(sender, sms, policy)),
        )
        .await
    }

    /// Stops taking new sends and waits up to `grace` for those in flight.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok()
    }

    async fn deliver_one(&self, sender: &Sender, sms: Sms, policy: Policy) -> SmsReport {
        let inner = &self.inner;
        let completion = loop {
            let claim = {
                let mut state = inner.state();
                state.ledger.set_window(policy.dedup_window);
                state.ledger.claim(sms.key, Instant::now())
            };
            match claim {
                Claim::Claimed(completion) => break completion,
                Claim::AlreadySettled => return self.suppress(&sms, SuppressReason::Duplicate),
                Claim::InFlight(mut running) => {
                    // Another request (an Alertmanager retry, an HA peer) is sending this SMS.
                    match timeout_at(policy.deadline.into(), running.wait_for(Option::is_some))
                        .await
                    {
                        Ok(Ok(done)) if *done == Some(true) => {
                            return self.suppress(&sms, SuppressReason::Duplicate);
                        }
                        Ok(_) if Instant::now() < policy.deadline => continue,
                        _ => return self.fail(&sms, FailureReason::Timeout, "still being sent"),
                    }
                }
            }
        };
        let claim = ClaimGuard {
            inner: inner.clone(),
            key: sms.key,
            completion: Some(completion),
        };

        let now = Instant::now();
        let (held, reservation) = {
            let mut state = inner.state();
            if let Some(h) = state.holdoff.filter(|h| h.until > now) {
                drop(state);
                drop(claim);
                return self.fail(&sms, h.reason, "hold-off after a permanent Sipgate error");
            }
            match state
                .limiter
                .try_acquire(&sms.recipient, &policy.limits, now)
            {
                Some(reservation) => (state.limiter.take_held(&sms.recipient), reservation),
                None => {
                    drop(state);
                    claim.settle(true);
                    return self.suppress(&sms, SuppressReason::RateLimited);
                }
            }
        };
        let Ok(pending) = inner.pending.clone().try_acquire_owned() else {
            self.undo_reservation(&sms.recipient, reservation, held);
            drop(claim);
            return self.fail(&sms, FailureReason::Overloaded, "too many SMS pending");
        };
        let text = if held > 0 {
            fit(
                &format!("[{held} SMS held back] {}", sms.text),
                sms.max_segments,
            )
        } else {
            sms.text.clone()
        };
        let task = {
            let deliverer = self.clone();
            let sender = sender.clone();
            let sms = sms.clone();
            inner.tasks.spawn_on(
                async move {
                    deliverer
                        .send_with_retries(
                            sender,
                            sms,
                            text,
                            policy.deadline,
                            claim,
                            pending,
                            reservation,
                            held,
                        )
                        .await
                },
                &inner.runtime,
            )
        };
        match timeout_at(policy.deadline.into(), task).await {
            Ok(Ok(SendResult::Delivered { text_segments })) => SmsReport {
                route: sms.route.clone(),
                recipient: sms.recipient.clone(),
                outcome: match sender {
                    Sender::Sipgate(_) => Outcome::Sent,
                    Sender::DryRun => Outcome::DryRun,
                },
                reason: None,
                segments: text_segments,
            },
            Ok(Ok(SendResult::NotDelivered(reason))) => self.fail(&sms, reason, "not delivered"),
            Ok(Err(_)) => self.fail(&sms, FailureReason::Network, "send task failed"),
            Err(_) => self.fail(
                &sms,
                FailureReason::Timeout,
                "no answer from Sipgate by the response deadline; it is recorded when it comes",
            ),
        }
    }

    fn undo_reservation(&self, recipient: &str, reservation: Reservation, held: u64) {
        let mut state = self.inner.state();
        state.limiter.refund(recipient, reservation);
        state.limiter.restore_held(recipient, held);
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_with_retries(
        self,
        sender: Sender,
        sms: Sms,
        text: String,
        deadline: Instant,
        claim: ClaimGuard,
        _pending: OwnedSemaphorePermit,
        reservation: Reservation,
        held: u64,
    ) -> SendResult {
        let inner = &self.inner;
        let mut attempt: u32 = 0;
        let error = loop {
            let Ok(Ok(permit)) =
                timeout_at(deadline.into(), inner.requests.clone().acquire_owned()).await
            else {
                break SendError::NotStarted;
            };
            attempt += 1;
            let started = Instant::now();
            let result = sender.send(&sms, &text).await;
            drop(permit);
            if let Sender::Sipgate(_) = sender {
                inner
                    .metrics
                    .sipgate_request_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            let error = match result {
                Ok(()) => {
                    let segments = crate::sms::measure(&text).segments;
                    claim.settle(true);
                    if let Sender::Sipgate(_) = sender {
                        inner
                            .metrics
                            .sms_sent
                            .with_label_values(&[&sms.route, &sms.recipient])
                            .inc();
                        inner
                            .metrics
                            .sms_segments
                            .with_label_values(&[&sms.route])
                            .inc_by(segments as u64);
                        tracing::info!(
                            route = %sms.route,
                            recipient = %sms.recipient,
                            number = %sms.number,
                            segments,
                            attempts = attempt,
                            "SMS accepted by Sipgate"
                        );
                    }
                    return SendResult::Delivered {
                        text_segments: segments,
                    };
                }
                Err(e) => e,
            };
            let reason = error.reason();
            if reason.is_permanent() {
                break error;
            }
            let mut delay = retry_delay(attempt);
            if let SendError::Rejected {
                retry_after: Some(wait),
                ..
            } = &error
            {
                delay = delay.max(*wait);
            }
            if Instant::now() + delay >= deadline {
                break error;
            }
            tracing::warn!(
                route = %sms.route,
                recipient = %sms.recipient,
                reason = reason.as_str(),
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "Sipgate request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        };
        let reason = error.reason();
        self.undo_reservation(&sms.recipient, reservation, held);
        if reason.is_permanent() {
            let started = {
                let mut state = inner.state();
                let now = Instant::now();
                let new = state.holdoff.is_none_or(|h| h.until <= now);
                state.holdoff = Some(Holdoff {
                    reason,
                    until: now + PERMANENT_FAILURE_HOLDOFF,
                });
                new
            };
            if started {
                tracing::error!(
                    route = %sms.route,
                    recipient = %sms.recipient,
                    reason = reason.as_str(),
                    sipgate_body = error.body(),
                    holdoff_s = PERMANENT_FAILURE_HOLDOFF.as_secs(),
                    error = %error,
                    "SMS not delivered; operator action needed. Further SMS fail fast during the hold-off"
                );
            }
        } else {
            tracing::warn!(
                route = %sms.route,
                recipient = %sms.recipient,
                reason = reason.as_str(),
                attempts = attempt,
                sipgate_body = error.body(),
                error = %error,
                "SMS not delivered; the caller is asked to retry"
            );
        }
        drop(claim);
        SendResult::NotDelivered(reason)
    }

    fn suppress(&self, sms: &Sms, reason: SuppressReason) -> SmsReport {
        self.inner
            .metrics
            .sms_suppressed
            .with_label_values(&[&sms.route, reason.as_str()])
            .inc();
        tracing::info!(
            route = %sms.route,
            recipient = %sms.recipient,
            reason = reason.as_str(),
            "SMS held back"
        );
        SmsReport::suppressed(&sms.route, &sms.recipient, reason)
    }

    fn fail(&self, sms: &Sms, reason: FailureReason, why: &str) -> SmsReport {
        self.inner
            .metrics
            .sms_failed
            .with_label_values(&[&sms.route, reason.as_str()])
            .inc();
        tracing::debug!(
            route = %sms.route,
            recipient = %sms.recipient,
            reason = reason.as_str(),
            why,
            "SMS reported as not delivered"
        );
        SmsReport {
            route: sms.route.clone(),
            recipient: sms.recipient.clone(),
            outcome: Outcome::Failed,
            reason: Some(reason.as_str()),
            segments: sms.size.segments,
        }
    }
}

/// Exponential backoff with jitter (0.5x to 1.5x), so that retries of many SMS do not align.
fn retry_delay(attempt: u32) -> Duration {
    let base = FIRST_RETRY_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_RETRY_DELAY);
    base.mul_f64(0.5 + fastrand::f64())
}

/// An SMS claimed in the ledger. Settled when it went out; released otherwise, including when the
/// task holding it ends unexpectedly, so that a claim can never block an SMS forever.
struct ClaimGuard {
    inner: Arc<Inner>,
    key: ContentKey,
    completion: Option<watch::Sender<Option<bool>>>,
}

impl ClaimGuard {
    fn settle(mut self, delivered: bool) {
        self.inner.state().ledger.settle(self.key, Instant::now());
        if let Some(c) = self.completion.take() {
            c.send_replace(Some(delivered));
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(c) = self.completion.take() {
            self.inner.state().ledger.release(self.key);
            c.send_replace(Some(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_bounded() {
        for _ in 0..100 {
            let first = retry_delay(1);
            assert!(first >= Duration::from_millis(125) && first < Duration::from_millis(375));
            let late = retry_delay(30);
            assert!(late >= Duration::from_secs(1) && late < Duration::from_secs(3));
        }
    }
}
