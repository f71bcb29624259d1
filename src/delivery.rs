//! Delivery rules: what "never lose, never duplicate, never flood" means for each SMS.
//!
//! - Each SMS is claimed in the ledger first; one already sent (or being sent) is not sent again.
//! - Rate limits may hold it back on purpose; the next SMS to that recipient says how many.
//! - The send runs as a background task: it retries transient failures while the response deadline
//!   allows, and a request already on the wire is never abandoned. The caller gets the outcome if
//!   it is known by the deadline, else a failure so that it retries, and the retry finds the
//!   outcome in the ledger.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::compose::{Sms, fit};
use crate::metrics::Metrics;
use crate::outcome::{FailureReason, Outcome, SmsReport, SuppressReason};
use crate::provider::{SendError, Sent, SmsProvider};
use crate::ratelimit::{Limits, Reservation};
use crate::state::{Claim, ClaimId, ContentKey, Settlement, StateError, StateStore};

/// After Sipgate refused the token, the balance or the extension, further SMS fail fast for this
/// long instead of hammering Sipgate with a request that cannot succeed.
pub const PERMANENT_FAILURE_HOLDOFF: Duration = Duration::from_secs(60);

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Why an SMS was not delivered: the provider's answer, or a rule of the delivery itself.
#[derive(Debug, thiserror::Error)]
enum NotDelivered {
    #[error(transparent)]
    Provider(#[from] SendError),
    #[error(
        "no {provider} request slot came free before the response deadline (delivery.max_concurrency)"
    )]
    NotStarted { provider: &'static str },
    #[error("not sent: {provider} refused an earlier SMS ({}); failing fast until the hold-off ends", reason.as_str())]
    HeldOff {
        provider: &'static str,
        reason: FailureReason,
    },
}

impl NotDelivered {
    fn reason(&self) -> FailureReason {
        match self {
            NotDelivered::Provider(e) => e.reason(),
            NotDelivered::NotStarted { .. } => FailureReason::Overloaded,
            NotDelivered::HeldOff { reason, .. } => *reason,
        }
    }

    fn body(&self) -> &str {
        match self {
            NotDelivered::Provider(e) => e.body(),
            _ => "",
        }
    }
}

/// The config-dependent rules for one notification.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// When the caller must have its answer.
    pub deadline: Instant,
    pub dedup_window: Duration,
    /// How long a claim holds: longer than a send with its retries and its last request.
    pub lease: Duration,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy)]
struct Holdoff {
    reason: FailureReason,
    until: Instant,
}

struct Inner {
    store: Arc<dyn StateStore>,
    /// Per replica: a hold-off protects the provider from this process's requests.
    holdoff: Mutex<Option<Holdoff>>,
    /// Provider requests on the wire at once.
    requests: Arc<Semaphore>,
    /// SMS being sent or waiting to be, so that memory stays bounded under a storm.
    pending: Arc<Semaphore>,
    tasks: TaskTracker,
    runtime: Handle,
    metrics: Metrics,
}

impl Inner {
    fn active_holdoff(&self, now: Instant) -> Option<Holdoff> {
        // A panic while holding the lock leaves consistent data: every update is one assignment.
        let holdoff = self.holdoff.lock().unwrap_or_else(|p| p.into_inner());
        holdoff.filter(|h| h.until > now)
    }

    fn set_holdoff(&self, holdoff: Option<Holdoff>) {
        *self.holdoff.lock().unwrap_or_else(|p| p.into_inner()) = holdoff;
    }

    /// Starts or extends the hold-off; true when none was active, so it is logged once.
    fn start_holdoff(&self, reason: FailureReason, now: Instant) -> bool {
        let mut holdoff = self.holdoff.lock().unwrap_or_else(|p| p.into_inner());
        let new = holdoff.is_none_or(|h| h.until <= now);
        *holdoff = Some(Holdoff {
            reason,
            until: now + PERMANENT_FAILURE_HOLDOFF,
        });
        new
    }
}

/// Lives as long as the process, so that the hold-off and the store's ledger and limits
/// outlast a config change.
#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

/// How one send ended, as the background task saw it.
#[derive(Debug)]
enum SendResult {
    Delivered { sent: Sent, segments: usize },
    NotDelivered(FailureReason),
}

/// What an SMS holds while it is being sent: its claim in the ledger, its rate-limit slot and
/// the held-back count it is to report. Each is `None` or 0 when the store could not be asked.
/// Given back explicitly (`give_back`) when the SMS did not go out; a holder that dies leaves
/// its claim to run out with its lease.
#[derive(Debug)]
struct Holding {
    key: ContentKey,
    claim: Option<ClaimId>,
    recipient: String,
    reservation: Option<Reservation>,
    held: u64,
}

impl Deliverer {
    /// `runtime` runs the sends; it must outlive the HTTP server so that sends in flight finish.
    pub fn new(
        store: Arc<dyn StateStore>,
        max_concurrency: usize,
        max_pending: usize,
        runtime: Handle,
        metrics: Metrics,
    ) -> Self {
        Deliverer {
            inner: Arc::new(Inner {
                store,
                holdoff: Mutex::new(None),
                requests: Arc::new(Semaphore::new(max_concurrency.max(1))),
                pending: Arc::new(Semaphore::new(max_pending.max(1))),
                tasks: TaskTracker::new(),
                runtime,
                metrics,
            }),
        }
    }

    /// The state store the ledger and the limits live in.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// Why SMS currently fail fast, and for how much longer.
    pub fn holdoff(&self) -> Option<(FailureReason, Duration)> {
        let now = Instant::now();
        self.inner
            .active_holdoff(now)
            .map(|h| (h.reason, h.until - now))
    }

    /// Ends a hold-off early, for when what it waited for may have been fixed.
    pub fn clear_holdoff(&self) {
        self.inner.set_holdoff(None);
    }

    pub async fn deliver(
        &self,
        provider: &Arc<dyn SmsProvider>,
        messages: Vec<Sms>,
        policy: Policy,
    ) -> Vec<SmsReport> {
        join_all(messages.into_iter().map(|sms| async move {
            let report = self.deliver_one(provider, &sms, policy).await;
            log_outcome(&sms, &report);
            report
        }))
        .await
    }

    /// Stops taking new sends and waits until `until` for those in flight.
    pub async fn shutdown(&self, until: Instant) -> bool {
        self.inner.tasks.close();
        timeout_at(until, self.inner.tasks.wait()).await.is_ok()
    }

    /// The ledger's word on `sms`: its claim, or the report when it is not to be sent now.
    async fn claim(&self, sms: &Sms, policy: Policy) -> Result<Option<ClaimId>, SmsReport> {
        let store = &self.inner.store;
        loop {
            let claim = match store.claim(sms.key, policy.lease).await {
                Ok(claim) => claim,
                Err(e) => {
                    // Never lose a page because the store is down: send without the ledger.
                    self.state_failed("claim", &e);
                    return Ok(None);
                }
            };
            match claim {
                Claim::Claimed(id) => return Ok(Some(id)),
                Claim::Settled(Settlement::Sent) => {
                    return Err(self.suppress(sms, SuppressReason::Duplicate));
                }
                Claim::Settled(Settlement::RateLimited) => {
                    return Err(self.suppress(sms, SuppressReason::RateLimited));
                }
                Claim::InFlight => {
                    // Another request (an Alertmanager retry, an HA peer) is sending this SMS:
                    // wait for it to end, then ask the ledger again.
                    match store.wait_for(sms.key, policy.deadline).await {
                        Ok(true) => {}
                        Ok(false) => return Err(self.fail(sms, FailureReason::Timeout)),
                        Err(e) => {
                            self.state_failed("wait", &e);
                            return Err(self.fail(sms, FailureReason::Timeout));
                        }
                    }
                }
            }
        }
    }

    async fn deliver_one(
        &self,
        provider: &Arc<dyn SmsProvider>,
        sms: &Sms,
        policy: Policy,
    ) -> SmsReport {
        let inner = &self.inner;
        let claim = match self.claim(sms, policy).await {
            Ok(claim) => claim,
            Err(report) => return report,
        };
        let mut holding = Holding {
            key: sms.key,
            claim,
            recipient: sms.recipient.clone(),
            reservation: None,
            held: 0,
        };
        if let Some(h) = inner.active_holdoff(Instant::now()) {
            self.give_back(holding).await;
            return self.fail(sms, h.reason);
        }
        match inner.store.take_rate(&sms.recipient, policy.limits).await {
            Ok(Some(reservation)) => holding.reservation = Some(reservation),
            Ok(None) => {
                self.settle(&holding, Settlement::RateLimited, policy.dedup_window)
                    .await;
                return self.suppress(sms, SuppressReason::RateLimited);
            }
            Err(e) => self.state_failed("rate_limit", &e),
        }
        match inner.store.take_held(&sms.recipient).await {
            Ok(held) => holding.held = held,
            Err(e) => self.state_failed("held_back", &e),
        }
        let Ok(pending) = inner.pending.clone().try_acquire_owned() else {
            self.give_back(holding).await;
            return self.fail(sms, FailureReason::Overloaded);
        };
        let noted = with_held_note(&sms.text, holding.held, sms.max_segments);
        if !provider.leaves_the_process() {
            // Nothing can outlive this request or a shutdown: the SMS is handled right here
            // instead of on the sender runtime.
            let _pending = pending;
            let text = noted.as_deref().unwrap_or(&sms.text);
            let result = self
                .send_with_retries(provider, sms, text, policy, holding)
                .await;
            return self.report(sms, result);
        }
        let task = {
            let deliverer = self.clone();
            let provider = provider.clone();
            let sms = sms.clone();
            inner.tasks.spawn_on(
                async move {
                    let _pending = pending;
                    let text = noted.as_deref().unwrap_or(&sms.text);
                    deliverer
                        .send_with_retries(&provider, &sms, text, policy, holding)
                        .await
                }
                .instrument(tracing::Span::current()),
                &inner.runtime,
            )
        };
        match timeout_at(policy.deadline, task).await {
            Ok(Ok(result)) => self.report(sms, result),
            // The task died (a bug): its claim runs out with the lease, and a retry sends.
            Ok(Err(_)) => self.fail(sms, FailureReason::Network),
            // Still on the wire: the task records the answer in the ledger when it comes.
            Err(_) => self.fail(sms, FailureReason::Timeout),
        }
    }

    /// Records in the store that the SMS is settled (sent, or held back on purpose).
    async fn settle(&self, holding: &Holding, settlement: Settlement, window: Duration) {
        if let Some(claim) = holding.claim
            && let Err(e) = self
                .inner
                .store
                .settle(holding.key, claim, settlement, window)
                .await
        {
            self.state_failed("settle", &e);
        }
    }

    /// The SMS did not go out: its claim, its rate-limit slot and the held-back count it was
    /// to report go back, so that the caller's retry finds everything as before.
    async fn give_back(&self, holding: Holding) {
        let store = &self.inner.store;
        if let Some(claim) = holding.claim
            && let Err(e) = store.release(holding.key, claim).await
        {
            self.state_failed("release", &e);
        }
        if let Some(reservation) = holding.reservation
            && let Err(e) = store.refund_rate(&holding.recipient, reservation).await
        {
            self.state_failed("rate_refund", &e);
        }
        if holding.held > 0
            && let Err(e) = store.restore_held(&holding.recipient, holding.held).await
        {
            self.state_failed("held_back", &e);
        }
    }

    fn state_failed(&self, operation: &'static str, error: &StateError) {
        tracing::error!(
            operation,
            store = self.inner.store.name(),
            error = %error,
            "state store failed; sending without the ledger or limits for this SMS"
        );
    }

    fn report(&self, sms: &Sms, result: SendResult) -> SmsReport {
        match result {
            SendResult::Delivered { sent, segments } => SmsReport {
                route: sms.route.clone(),
                recipient: sms.recipient.clone(),
                outcome: match sent {
                    Sent::Accepted => Outcome::Sent,
                    Sent::Logged => Outcome::DryRun,
                },
                reason: None,
                segments,
            },
            SendResult::NotDelivered(reason) => self.fail(sms, reason),
        }
    }

    /// Tries until Sipgate accepts the SMS, a permanent error, or no retry fits the deadline.
    async fn send_with_retries(
        &self,
        provider: &Arc<dyn SmsProvider>,
        sms: &Sms,
        text: &str,
        policy: Policy,
        holding: Holding,
    ) -> SendResult {
        let inner = &self.inner;
        let deadline = policy.deadline;
        let mut attempt: u32 = 0;
        let error = loop {
            let permit = match timeout_at(deadline, inner.requests.clone().acquire_owned()).await {
                Ok(Ok(permit)) if Instant::now() < deadline => permit,
                _ => {
                    break NotDelivered::NotStarted {
                        provider: provider.name(),
                    };
                }
            };
            // A hold-off may have begun while this SMS waited for its slot.
            if let Some(h) = inner.active_holdoff(Instant::now()) {
                break NotDelivered::HeldOff {
                    provider: provider.name(),
                    reason: h.reason,
                };
            }
            attempt += 1;
            let started = Instant::now();
            let result = provider.send(sms, text).await;
            drop(permit);
            if provider.leaves_the_process() {
                inner.metrics.provider_request(started.elapsed());
            }
            let error = match result {
                Ok(sent) => {
                    self.settle(&holding, Settlement::Sent, policy.dedup_window)
                        .await;
                    let segments = crate::sms::measure(text).segments;
                    match sent {
                        Sent::Accepted => {
                            self.record_sent(sms, segments, attempt, Instant::now() > deadline)
                        }
                        Sent::Logged => inner.metrics.sms_dry_run(&sms.route),
                    }
                    return SendResult::Delivered { sent, segments };
                }
                Err(e) => NotDelivered::Provider(e),
            };
            if error.reason().is_permanent() {
                break error;
            }
            let mut delay = retry_delay(attempt);
            if let NotDelivered::Provider(e) = &error
                && let Some(wait) = e.retry_after()
            {
                delay = delay.max(wait);
            }
            if delay >= deadline.saturating_duration_since(Instant::now()) {
                break error;
            }
            tracing::warn!(
                route = %sms.route,
                recipient = %sms.recipient,
                reason = error.reason().as_str(),
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "Sipgate request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        };
        self.record_not_delivered(sms, &error, attempt);
        self.give_back(holding).await;
        SendResult::NotDelivered(error.reason())
    }

    fn record_sent(&self, sms: &Sms, segments: usize, attempts: u32, late: bool) {
        self.inner
            .metrics
            .sms_sent(&sms.route, &sms.recipient, segments);
        if late {
            // The caller was told "not confirmed"; this is the only trace that it went out.
            tracing::info!(
                route = %sms.route,
                recipient = %sms.recipient,
                number = %sms.number,
                segments,
                attempts,
                "SMS accepted by Sipgate after the response deadline; a retry will not send it again"
            );
        } else {
            tracing::debug!(
                route = %sms.route,
                recipient = %sms.recipient,
                attempts,
                "SMS accepted by Sipgate"
            );
        }
    }

    /// Logs the failure, and starts (or extends) the hold-off when it concerns every SMS. Only
    /// a real answer from Sipgate does that, so a hold-off never extends itself.
    fn record_not_delivered(&self, sms: &Sms, error: &NotDelivered, attempts: u32) {
        let reason = error.reason();
        if let NotDelivered::Provider(e) = error
            && e.affects_every_sms()
        {
            if self.inner.start_holdoff(reason, Instant::now()) {
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
        } else if !matches!(error, NotDelivered::HeldOff { .. }) {
            tracing::warn!(
                route = %sms.route,
                recipient = %sms.recipient,
                reason = reason.as_str(),
                attempts,
                sipgate_body = error.body(),
                error = %error,
                "SMS not delivered"
            );
        }
    }

    fn suppress(&self, sms: &Sms, reason: SuppressReason) -> SmsReport {
        self.inner.metrics.sms_suppressed(&sms.route, reason, 1);
        SmsReport::suppressed(&sms.route, &sms.recipient, reason)
    }

    fn fail(&self, sms: &Sms, reason: FailureReason) -> SmsReport {
        self.inner.metrics.sms_failed(&sms.route, reason);
        SmsReport::failed(&sms.route, &sms.recipient, reason, sms.size.segments)
    }
}

/// The one log line per SMS of a notification.
fn log_outcome(sms: &Sms, report: &SmsReport) {
    let outcome = report.outcome.as_str();
    let reason = report.reason.unwrap_or("");
    if report.outcome == Outcome::Failed {
        tracing::warn!(
            route = %sms.route,
            recipient = %sms.recipient,
            number = %sms.number,
            segments = report.segments,
            outcome,
            reason,
            "sms"
        );
    } else {
        tracing::info!(
            route = %sms.route,
            recipient = %sms.recipient,
            number = %sms.number,
            segments = report.segments,
            outcome,
            reason,
            "sms"
        );
    }
}

/// The text with `[N SMS held back]` in front, so the recipient learns what the rate limit kept
/// from them (shorter forms when the budget is tight); `None` when nothing was held back.
fn with_held_note(text: &str, held: u64, max_segments: usize) -> Option<String> {
    if held == 0 {
        return None;
    }
    let long = format!("[{held} SMS held back] {text}");
    if crate::sms::measure(&long).segments <= max_segments {
        return Some(long);
    }
    Some(fit(&format!("[+{held} held] {text}"), max_segments))
}

/// Exponential backoff with jitter (0.5x to 1.5x), so that retries of many SMS do not align.
fn retry_delay(attempt: u32) -> Duration {
    let base = FIRST_RETRY_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_RETRY_DELAY);
    base.mul_f64(0.5 + fastrand::f64())
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
