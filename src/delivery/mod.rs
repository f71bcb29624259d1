//! Delivery rules: what "never lose, never duplicate, never flood" means for each SMS.
//!
//! - Each SMS is claimed in the ledger first; one already sent (or being sent) is not sent again.
//! - Rate limits may hold it back on purpose; the next SMS to that recipient says how many.
//! - The send runs as a background task: it retries transient failures while the response deadline
//!   allows, and a request already on the wire is never abandoned. The caller gets the outcome if
//!   it is known by the deadline, else a failure so that it retries, and the retry finds the
//!   outcome in the ledger.
//! - In dry-run nothing is sent: each SMS is logged where it was asked for, and recorded as sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::Config;
use crate::log_sampler::LogSampler;
use crate::metrics::Metrics;
use crate::model::content_key::ContentKey;
use crate::model::outcome::{FailureReason, Outcome, SmsReport, SuppressReason};
use crate::provider::{Outlet, SendError, SmsProvider};
use crate::ratelimit::Limits;
use crate::state::{Begin, ClaimId, Settlement, Start, StateError, StateStore, Taken};
use crate::text::compose::{Sms, with_held_note};

pub mod recent;

use recent::{Handled, RecentSms};

/// After Sipgate refused the token, the balance or the extension, further SMS fail fast for this
/// long instead of hammering Sipgate with a request that cannot succeed.
pub const PERMANENT_FAILURE_HOLDOFF: Duration = Duration::from_secs(60);

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// How soon recording a sent SMS is tried again after the store failed, doubling up to the max.
const FIRST_SETTLE_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_SETTLE_RETRY_DELAY: Duration = Duration::from_secs(8);

/// SMS sent but not recorded are logged at most this often, with their number.
const UNRECORDED_LOG_INTERVAL: Duration = Duration::from_secs(60);

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
    /// When the state store must have answered the claim: after it, the SMS goes out without
    /// the store, while there is still time to send before `deadline`.
    pub state_deadline: Instant,
    pub dedup_window: Duration,
    /// How long a claim holds: longer than a send with its retries and its last request.
    pub lease: Duration,
    pub limits: Limits,
}

/// How much longer than the longest send (retries until the deadline, then one last request)
/// a claim holds, so that a live holder never loses it to a retry.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

impl Policy {
    /// The delivery rules of `config` for SMS planned at `started`.
    pub fn of(config: &Config, started: Instant) -> Policy {
        let delivery = &config.delivery;
        Policy {
            deadline: started + delivery.response_deadline,
            state_deadline: started + delivery.state_budget(),
            dedup_window: delivery.dedup_window,
            lease: delivery.response_deadline + config.sipgate.timeout + LEASE_MARGIN,
            limits: delivery.rate_limit,
        }
    }
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
    /// The sends, which a shutdown waits for.
    tasks: TaskTracker,
    /// Telling the store which SMS went out (a notification's together) and giving back what
    /// was not sent, after the answer: tried again while the store fails, at most `pending`'s
    /// size of records at once (`retrying`), and once more at shutdown.
    records: TaskTracker,
    retrying: Arc<Semaphore>,
    stop_retrying: CancellationToken,
    /// SMS sent but not recorded: one line per interval for all of them.
    unrecorded: LogSampler,
    runtime: Handle,
    metrics: Metrics,
    /// How the last SMS ended, for the status page; `clock` says when.
    recent: RecentSms,
    clock: Arc<dyn Clock>,
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

/// What the store is asked for `sms` under `claim`.
fn begin_of(sms: &Sms, claim: ClaimId, policy: Policy) -> Begin<'_> {
    Begin {
        key: sms.key,
        claim,
        recipient: &sms.recipient,
        lease: policy.lease,
        window: policy.dedup_window,
        limits: policy.limits,
        hold: sms.quiet,
        answer_by: policy.state_deadline,
    }
}

/// How one send ended, as the background task saw it.
#[derive(Debug, Clone, Copy)]
enum SendResult {
    Delivered { segments: usize },
    NotDelivered(FailureReason),
}

/// What an SMS holds while it is being sent: its claim in the ledger, its rate-limit slot and
/// the held-back count it is to report (only the claim when the store did not answer). Settled or
/// given back (`give_back`) explicitly. Should neither happen (the task sending it panicked, a
/// caller holding it was cancelled), dropping it gives everything back from a task of its own, so
/// that nothing waits for the lease to run out and no slot or count is lost.
struct Holding {
    key: ContentKey,
    /// For the log line when it cannot be recorded.
    route: String,
    recipient: String,
    taken: Taken,
    /// When the store let it through: its lease counts from here.
    claimed_at: Instant,
    /// Set until settled or given back.
    unsettled: Option<Deliverer>,
}

impl Holding {
    /// What `sms` holds once the store let it through.
    fn of(deliverer: &Deliverer, sms: &Sms, taken: Taken) -> Self {
        Holding {
            key: sms.key,
            route: sms.route.clone(),
            recipient: sms.recipient.clone(),
            taken,
            claimed_at: Instant::now(),
            unsettled: Some(deliverer.clone()),
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Some(deliverer) = self.unsettled.take() {
            let holding = Holding {
                key: self.key,
                route: std::mem::take(&mut self.route),
                recipient: std::mem::take(&mut self.recipient),
                taken: self.taken,
                claimed_at: self.claimed_at,
                unsettled: None,
            };
            deliverer.give_back_later(holding);
        }
    }
}

impl Deliverer {
    /// `runtime` runs the sends; it must outlive the HTTP server so that sends in flight finish.
    /// `clock` is the service's: the times of the last SMS on the status page.
    pub fn new(
        store: Arc<dyn StateStore>,
        max_concurrency: usize,
        max_pending: usize,
        runtime: Handle,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Deliverer {
            inner: Arc::new(Inner {
                store,
                holdoff: Mutex::new(None),
                requests: Arc::new(Semaphore::new(max_concurrency.max(1))),
                pending: Arc::new(Semaphore::new(max_pending.max(1))),
                tasks: TaskTracker::new(),
                records: TaskTracker::new(),
                retrying: Arc::new(Semaphore::new(max_pending.max(1))),
                stop_retrying: CancellationToken::new(),
                unrecorded: LogSampler::new(UNRECORDED_LOG_INTERVAL),
                runtime,
                metrics,
                recent: RecentSms::default(),
                clock,
            }),
        }
    }

    /// How the last SMS this replica handled ended, the newest first.
    pub fn recent(&self) -> Vec<Handled> {
        self.inner.recent.newest_first()
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

    /// Sends the SMS of one notification. The store is asked for all of them in one call, and
    /// told of those that went out in one more, once every send has ended.
    pub async fn deliver(
        &self,
        outlet: &Outlet,
        messages: Vec<Sms>,
        policy: Policy,
    ) -> Vec<SmsReport> {
        let now = Instant::now();
        // An SMS held back for quiet hours is not sent, so no hold-off concerns it.
        let held_off: Vec<Option<Holdoff>> = messages
            .iter()
            .map(|sms| {
                (!sms.quiet)
                    .then(|| self.inner.active_holdoff(now))
                    .flatten()
            })
            .collect();
        let claims: Vec<ClaimId> = messages.iter().map(|_| ClaimId::random()).collect();
        let begins = messages
            .iter()
            .zip(&claims)
            .zip(&held_off)
            .filter(|(_, held_off)| held_off.is_none())
            .map(|((sms, claim), _)| begin_of(sms, *claim, policy))
            .collect();
        let mut firsts = self.begin_all(begins).await.into_iter();
        let (sent, answered, recorded) = self.record_together(policy);
        let reports = join_all(messages.iter().zip(claims).zip(held_off).map(
            |((sms, claim), held_off)| {
                let first = held_off.is_none().then(|| firsts.next()).flatten();
                let sent = sent.clone();
                async move {
                    let report = match (held_off, first) {
                        (Some(h), _) => self.fail(sms, h.reason),
                        (None, Some(first)) => {
                            self.deliver_one(outlet, sms, policy, (claim, first), sent)
                                .await
                        }
                        // Not reached: `begin_all` answers for every SMS it was asked for.
                        (None, None) => self.fail(sms, FailureReason::Timeout),
                    };
                    log_outcome(sms, &report);
                    self.handled(&report, false);
                    report
                }
            },
        ))
        .await;
        drop(sent);
        let _ = answered.send(());
        if matches!(outlet, Outlet::DryRun) {
            // Nothing outlives a dry run: the answer waits for the record, within the store's
            // share of the deadline, so that a retry finds it.
            let _ = timeout_at(policy.state_deadline, recorded).await;
        }
        reports
    }

    /// The store's first word on each SMS, asked in one call; the store's error for each when
    /// it failed.
    async fn begin_all(&self, begins: Vec<Begin<'_>>) -> Vec<Result<Start, StateError>> {
        let count = begins.len();
        match self.inner.store.begin_all(begins).await {
            Ok(starts) if starts.len() == count => starts.into_iter().map(Ok).collect(),
            Ok(starts) => {
                let error = StateError::Unavailable(format!(
                    "{} answers for {count} SMS from the store",
                    starts.len()
                ));
                vec![Err(error); count]
            }
            Err(e) => vec![Err(e); count],
        }
    }

    /// Stops taking new sends and waits until `until` for those in flight; then what could not
    /// be recorded yet gets one last try. True when every send ended.
    pub async fn shutdown(&self, until: Instant) -> bool {
        let inner = &self.inner;
        inner.tasks.close();
        let sent = timeout_at(until, inner.tasks.wait()).await.is_ok();
        inner.stop_retrying.cancel();
        inner.records.close();
        let _ = timeout_at(until, inner.records.wait()).await;
        sent
    }

    /// The store's word on `sms`: what it holds for it, or the report when it is not to be sent
    /// now. `first` is the store's first answer to the claim `claim`; after it, the store is
    /// asked again only while someone else is sending the SMS.
    async fn begin(
        &self,
        sms: &Sms,
        policy: Policy,
        (claim, first): (ClaimId, Result<Start, StateError>),
    ) -> Result<Taken, SmsReport> {
        let store = &self.inner.store;
        let mut begin = begin_of(sms, claim, policy);
        let mut answer = first;
        // Set once the store said another request is sending this SMS.
        let mut waited = false;
        loop {
            // Never lose a page because the store is down or too slow: send without the ledger
            // and limits (the store logs and counts the outage). The store may have taken the
            // claim before its answer got lost; settling or giving back that claim is harmless
            // if it did not.
            let Ok(start) = answer else {
                if waited {
                    // The store answered a moment ago that someone else is sending it: sending
                    // now could duplicate it. The caller's retry asks again.
                    return Err(self.fail(sms, FailureReason::Timeout));
                }
                if sms.quiet {
                    // Held back all the same; only the count for the next SMS is lost.
                    return Err(self.suppress(sms, SuppressReason::QuietHours));
                }
                return Ok(Taken {
                    claim,
                    reservation: None,
                    held: 0,
                });
            };
            match start {
                Start::Claimed(taken) if sms.quiet => {
                    // A store that did not hold it back as asked: still not sent.
                    self.give_back_later(Holding::of(self, sms, taken));
                    return Err(self.suppress(sms, SuppressReason::QuietHours));
                }
                Start::Claimed(taken) => return Ok(taken),
                Start::Settled(Settlement::Sent) => {
                    return Err(self.suppress(sms, SuppressReason::Duplicate));
                }
                Start::Settled(Settlement::RateLimited) | Start::RateLimited => {
                    return Err(self.suppress(sms, SuppressReason::RateLimited));
                }
                Start::Settled(Settlement::QuietHours) | Start::HeldBack => {
                    return Err(self.suppress(sms, SuppressReason::QuietHours));
                }
                Start::InFlight => {
                    // Another request (an Alertmanager retry, an HA peer) is sending this SMS:
                    // wait for it to end, then ask the store again.
                    if !matches!(store.wait_for(sms.key, policy.deadline).await, Ok(true)) {
                        return Err(self.fail(sms, FailureReason::Timeout));
                    }
                    waited = true;
                    // It will not be sent without the store's word now, so the store may take
                    // until the response deadline to give it.
                    begin.answer_by = policy.deadline;
                    answer = store.begin(begin).await;
                }
            }
        }
    }

    /// Sends `sms` unless the store's answer (`first`, to its claim) says otherwise; once it
    /// went out, what it holds goes to `sent`, to be recorded with the notification's others.
    async fn deliver_one(
        &self,
        outlet: &Outlet,
        sms: &Sms,
        policy: Policy,
        first: (ClaimId, Result<Start, StateError>),
        sent: mpsc::UnboundedSender<Holding>,
    ) -> SmsReport {
        let inner = &self.inner;
        let taken = match self.begin(sms, policy, first).await {
            Ok(taken) => taken,
            Err(report) => return report,
        };
        let holding = Holding::of(self, sms, taken);
        let Ok(pending) = inner.pending.clone().try_acquire_owned() else {
            self.give_back_later(holding);
            return self.fail(sms, FailureReason::Overloaded);
        };
        // What the recipient gets: the SMS, with what was held back from them in front.
        let text = with_held_note(&sms.text, holding.taken.held, sms.max_segments);
        let (name, provider) = match outlet {
            Outlet::DryRun => {
                // Nothing is sent, so nothing can outlive this request or a shutdown: the SMS is
                // handled right here instead of on the sender runtime; only recording it may go
                // on after the answer.
                let _pending = pending;
                return self.log_dry_run(sms, &text, holding, &sent);
            }
            Outlet::Provider { name, provider } => (*name, provider.clone()),
        };
        let (answer, answered) = oneshot::channel();
        {
            let deliverer = self.clone();
            let sms = sms.clone();
            let text = text.into_owned();
            inner.tasks.spawn_on(
                async move {
                    let result = deliverer
                        .send_with_retries(name, provider.as_ref(), &sms, &text, policy)
                        .await;
                    // Handed in before the caller learns the outcome, so that it is recorded
                    // with the notification's others; the caller learns it before the store
                    // does, so that recording it never makes the answer late, and a store that
                    // is down never holds a pending slot that the next SMS needs.
                    let unsent = match result {
                        SendResult::Delivered { .. } => {
                            deliverer.hand_in(&sent, holding);
                            None
                        }
                        SendResult::NotDelivered(_) => Some(holding),
                    };
                    drop(sent);
                    if answer.send(result).is_err() {
                        // The caller stopped waiting and was told it failed: how it ended.
                        deliverer.handled(&outcome_of(&sms, result), true);
                    }
                    drop(pending);
                    if let Some(holding) = unsent {
                        deliverer.give_back(holding).await;
                    }
                }
                .instrument(tracing::Span::current()),
                &inner.runtime,
            );
        }
        match timeout_at(policy.deadline, answered).await {
            Ok(Ok(result)) => self.report(sms, result),
            // The task died (a bug): what it held went back as it died, and a retry sends.
            Ok(Err(_)) => self.fail(sms, FailureReason::Network),
            // Still on the wire: the task records the answer in the ledger when it comes.
            Err(_) => self.fail(sms, FailureReason::Timeout),
        }
    }

    /// Dry-run: the SMS is logged and counted instead of sent, and recorded as a sent one is, so
    /// that the retry of its notification finds it.
    fn log_dry_run(
        &self,
        sms: &Sms,
        text: &str,
        holding: Holding,
        sent: &mpsc::UnboundedSender<Holding>,
    ) -> SmsReport {
        tracing::info!(
            route = %sms.route,
            recipient = %sms.recipient,
            text = %crate::redact::ack_codes(text),
            "dry-run: SMS not sent"
        );
        self.inner.metrics.sms_dry_run(&sms.route);
        let segments = crate::text::sms::measure(text).segments;
        self.hand_in(sent, holding);
        SmsReport {
            route: sms.route.clone(),
            recipient: sms.recipient.clone(),
            outcome: Outcome::DryRun,
            reason: None,
            segments,
        }
    }

    /// Where the SMS of one notification that went out are handed in (`hand_in`); the signal
    /// that its caller was answered; and the signal that the first try to record them ended.
    /// Those handed in by the answer are recorded in one call; one whose send ends later
    /// (after the deadline) is recorded when it ends.
    fn record_together(
        &self,
        policy: Policy,
    ) -> (
        mpsc::UnboundedSender<Holding>,
        oneshot::Sender<()>,
        oneshot::Receiver<()>,
    ) {
        let (sent, mut arriving) = mpsc::unbounded_channel::<Holding>();
        let (answered, mut answer_given) = oneshot::channel::<()>();
        let (tried, first_tried) = oneshot::channel();
        let deliverer = self.clone();
        self.inner.records.spawn_on(
            async move {
                let mut holdings = Vec::new();
                loop {
                    tokio::select! {
                        biased;
                        holding = arriving.recv() => match holding {
                            Some(holding) => holdings.push(holding),
                            None => break,
                        },
                        // Answered, or the caller went away.
                        _ = &mut answer_given => break,
                    }
                }
                while let Ok(holding) = arriving.try_recv() {
                    holdings.push(holding);
                }
                deliverer.record(holdings, policy, Some(tried));
                while let Some(holding) = arriving.recv().await {
                    let mut late = vec![holding];
                    while let Ok(holding) = arriving.try_recv() {
                        late.push(holding);
                    }
                    deliverer.record(late, policy, None);
                }
            }
            .instrument(tracing::Span::current()),
            &self.inner.runtime,
        );
        (sent, answered, first_tried)
    }

    /// An SMS that went out, for `record_together` to record: never given back.
    fn hand_in(&self, sent: &mpsc::UnboundedSender<Holding>, mut holding: Holding) {
        holding.unsettled = None;
        if let Err(mpsc::error::SendError(holding)) = sent.send(holding) {
            self.unrecorded(std::slice::from_ref(&holding));
        }
    }

    /// Records in the store that `holdings` went out, in one call; `tried` hears when the first
    /// try ended. When the store fails, tried again in the background with growing delays while
    /// their claims' leases last (a retry of the notification is a duplicate only once it is
    /// recorded), and once more at shutdown. The SMS went out all the same.
    fn record(&self, holdings: Vec<Holding>, policy: Policy, tried: Option<oneshot::Sender<()>>) {
        let Some(give_up) = holdings.iter().map(|h| h.claimed_at + policy.lease).min() else {
            return;
        };
        let deliverer = self.clone();
        self.inner.records.spawn_on(
            async move {
                let recorded = timeout_at(give_up, deliverer.settle_once(&holdings, policy)).await;
                if let Some(tried) = tried {
                    let _ = tried.send(());
                }
                if let Ok(true) = recorded {
                    return;
                }
                let inner = &deliverer.inner;
                let Ok(_retrying) = inner.retrying.clone().try_acquire_owned() else {
                    return deliverer.unrecorded(&holdings);
                };
                let mut delay = FIRST_SETTLE_RETRY_DELAY;
                loop {
                    let stop = &inner.stop_retrying;
                    if stop.is_cancelled() || Instant::now() + delay >= give_up {
                        return deliverer.unrecorded(&holdings);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => {}
                    }
                    if deliverer.settle_once(&holdings, policy).await {
                        return;
                    }
                    delay = (delay * 2).min(MAX_SETTLE_RETRY_DELAY);
                }
            }
            .instrument(tracing::Span::current()),
            &self.inner.runtime,
        );
    }

    async fn settle_once(&self, holdings: &[Holding], policy: Policy) -> bool {
        let settlements = holdings
            .iter()
            .map(|holding| crate::state::Settle {
                key: holding.key,
                claim: holding.taken.claim,
                settlement: Settlement::Sent,
                window: policy.dedup_window,
            })
            .collect();
        self.inner.store.settle_all(settlements).await.is_ok()
    }

    /// SMS went out that the store does not know of: a retry of their notification would send
    /// them again. Logged once per interval for all of them.
    fn unrecorded(&self, holdings: &[Holding]) {
        let sampler = &self.inner.unrecorded;
        for holding in holdings {
            if let Some(sample) = sampler.record(std::time::Instant::now(), "sent") {
                tracing::warn!(
                    route = %holding.route,
                    recipient = %holding.recipient,
                    unrecorded_since_last_line = sample.count,
                    at_most_one_line_per_s = sampler.interval().as_secs(),
                    "SMS Sipgate accepted could not be recorded in the state store; a retry of \
                     their notifications would send them again"
                );
            }
        }
    }

    /// The SMS did not go out: its claim, its rate-limit slot and the held-back count it was
    /// to report go back, so that the caller's retry finds everything as before.
    async fn give_back(&self, mut holding: Holding) {
        holding.unsettled = None;
        let _ = self
            .inner
            .store
            .give_back(crate::state::GiveBack {
                key: holding.key,
                recipient: &holding.recipient,
                taken: holding.taken,
            })
            .await;
    }

    /// As `give_back`, without keeping the caller waiting for the store.
    fn give_back_later(&self, holding: Holding) {
        let deliverer = self.clone();
        self.inner.records.spawn_on(
            async move { deliverer.give_back(holding).await },
            &self.inner.runtime,
        );
    }

    /// The caller's report of a send, its failure counted.
    fn report(&self, sms: &Sms, result: SendResult) -> SmsReport {
        match result {
            SendResult::Delivered { .. } => outcome_of(sms, result),
            SendResult::NotDelivered(reason) => self.fail(sms, reason),
        }
    }

    /// Keeps how an SMS ended for the status page; `late`: after its caller stopped waiting.
    /// Every SMS comes by here once as its caller is told, through `deliver` or `suppressed`,
    /// and once more when its send ends after that. A duplicate is not kept: it is the same SMS
    /// again (a retry, or the other Alertmanager of a pair), already kept as it ended.
    fn handled(&self, report: &SmsReport, late: bool) {
        if report.outcome == Outcome::Suppressed
            && report.reason == Some(SuppressReason::Duplicate.as_str())
        {
            return;
        }
        self.inner.recent.record(Handled {
            at: self.inner.clock.now(),
            report: report.clone(),
            late,
        });
    }

    /// Tries until Sipgate accepts the SMS, a permanent error, or no retry fits the deadline.
    /// `name` is the provider's in messages.
    async fn send_with_retries(
        &self,
        name: &'static str,
        provider: &dyn SmsProvider,
        sms: &Sms,
        text: &str,
        policy: Policy,
    ) -> SendResult {
        let inner = &self.inner;
        let deadline = policy.deadline;
        let mut attempt: u32 = 0;
        let error = loop {
            let permit = match timeout_at(deadline, inner.requests.clone().acquire_owned()).await {
                Ok(Ok(permit)) if Instant::now() < deadline => permit,
                _ => break NotDelivered::NotStarted { provider: name },
            };
            // A hold-off may have begun while this SMS waited for its slot.
            if let Some(h) = inner.active_holdoff(Instant::now()) {
                break NotDelivered::HeldOff {
                    provider: name,
                    reason: h.reason,
                };
            }
            attempt += 1;
            let started = Instant::now();
            let result = provider.send(&sms.number, text).await;
            drop(permit);
            inner.metrics.provider_request(started.elapsed());
            let error = match result {
                Ok(()) => {
                    let segments = crate::text::sms::measure(text).segments;
                    self.record_sent(sms, segments, attempt, Instant::now() > deadline);
                    return SendResult::Delivered { segments };
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

    /// Counts, keeps and reports an SMS its route held back on purpose (muted, resolved) before
    /// it reached `deliver`.
    pub fn suppressed(&self, route: &str, recipient: &str, reason: SuppressReason) -> SmsReport {
        let report = self.held_back(route, recipient, reason);
        self.handled(&report, false);
        report
    }

    /// Counts and reports an SMS held back on purpose: every one is counted here, whether the
    /// store (a duplicate, a rate limit, quiet hours) or its route (muted, resolved) held it.
    fn held_back(&self, route: &str, recipient: &str, reason: SuppressReason) -> SmsReport {
        self.inner.metrics.sms_suppressed(route, reason, 1);
        SmsReport::suppressed(route, recipient, reason)
    }

    fn suppress(&self, sms: &Sms, reason: SuppressReason) -> SmsReport {
        self.held_back(&sms.route, &sms.recipient, reason)
    }

    fn fail(&self, sms: &Sms, reason: FailureReason) -> SmsReport {
        self.inner.metrics.sms_failed(&sms.route, reason);
        SmsReport::failed(&sms.route, &sms.recipient, reason, sms.size.segments)
    }
}

/// How a send of `sms` ended, as its report says it; nothing counted.
fn outcome_of(sms: &Sms, result: SendResult) -> SmsReport {
    match result {
        SendResult::Delivered { segments } => SmsReport {
            route: sms.route.clone(),
            recipient: sms.recipient.clone(),
            outcome: Outcome::Sent,
            reason: None,
            segments,
        },
        SendResult::NotDelivered(reason) => {
            SmsReport::failed(&sms.route, &sms.recipient, reason, sms.size.segments)
        }
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

/// Exponential backoff with jitter (0.5x to 1.5x), so that retries of many SMS do not align.
fn retry_delay(attempt: u32) -> Duration {
    let base = FIRST_RETRY_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_RETRY_DELAY);
    base.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    //! The delivery rules on a scripted provider and tokio's paused clock: every wait below is
    //! virtual time, so these tests take milliseconds and decide nothing by the wall clock.

    use std::collections::VecDeque;

    use futures_util::future::{BoxFuture, FutureExt};

    use super::*;
    use crate::model::phone::PhoneNumber;
    use crate::provider::CredentialCheck;
    use crate::ratelimit::Rate;
    use crate::state::faulty::{Faulty, Op};
    use crate::state::monitored::Monitored;
    use crate::state::{MemoryStore, StateError};

    const ALICE: &str = "+4915228817386";
    const BOB: &str = "+4915254599371";

    /// How the fake answers one request: after `delay`, accepted or refused with a status; or
    /// not at all, when a bug `panics` the send.
    #[derive(Debug, Clone, Copy)]
    struct Answer {
        delay: Duration,
        status: u16,
        retry_after: Option<Duration>,
        panics: bool,
    }

    const OK: Answer = Answer {
        delay: Duration::ZERO,
        status: 204,
        retry_after: None,
        panics: false,
    };

    fn refuse(status: u16) -> Answer {
        Answer { status, ..OK }
    }

    /// A provider that plays a script of answers (then accepts everything), and records what
    /// it was asked to send and when.
    #[derive(Debug, Default)]
    struct Scripted {
        script: Mutex<VecDeque<Answer>>,
        sent: Mutex<Vec<(String, String, Instant)>>,
    }

    impl Scripted {
        fn new(script: impl IntoIterator<Item = Answer>) -> Arc<Self> {
            Arc::new(Scripted {
                script: Mutex::new(script.into_iter().collect()),
                sent: Mutex::default(),
            })
        }

        /// Where SMS go when they go to this provider.
        fn outlet(self: &Arc<Self>) -> Outlet {
            Outlet::Provider {
                name: "Fake",
                provider: self.clone(),
            }
        }

        /// (number, text) of every request, in order.
        fn requests(&self) -> Vec<(String, String)> {
            let sent = self.sent.lock().unwrap();
            sent.iter()
                .map(|(n, t, _)| (n.clone(), t.clone()))
                .collect()
        }

        fn times(&self) -> Vec<Instant> {
            self.sent
                .lock()
                .unwrap()
                .iter()
                .map(|(_, _, t)| *t)
                .collect()
        }
    }

    impl SmsProvider for Scripted {
        fn send<'a>(
            &'a self,
            to: &'a PhoneNumber,
            text: &'a str,
        ) -> BoxFuture<'a, Result<(), SendError>> {
            let answer = self.script.lock().unwrap().pop_front().unwrap_or(OK);
            self.sent.lock().unwrap().push((
                to.e164().to_string(),
                text.to_string(),
                Instant::now(),
            ));
            assert!(!answer.panics, "a bug in the send");
            async move {
                tokio::time::sleep(answer.delay).await;
                if answer.status < 300 {
                    return Ok(());
                }
                Err(SendError::Rejected {
                    provider: "Fake",
                    status: answer.status,
                    reason: match answer.status {
                        401 => FailureReason::Auth,
                        429 => FailureReason::RateLimited,
                        500.. => FailureReason::ServerError,
                        _ => FailureReason::ClientError,
                    },
                    hint: "",
                    retry_after: answer.retry_after,
                    account_wide: answer.status == 401,
                    body: String::new(),
                })
            }
            .boxed()
        }
        fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck> {
            std::future::ready(CredentialCheck::Valid).boxed()
        }
    }

    fn memory() -> MemoryStore {
        MemoryStore::new(
            crate::state::memory::DEFAULT_CAPACITY,
            Arc::new(crate::clock::TokioClock::new()),
        )
    }

    fn deliverer(max_concurrency: usize) -> Deliverer {
        let metrics = Metrics::new().unwrap();
        Deliverer::new(
            Arc::new(Monitored::new(Arc::new(memory()), metrics.clone())),
            max_concurrency,
            100,
            Handle::current(),
            metrics,
            Arc::new(crate::clock::TokioClock::new()),
        )
    }

    fn on_store(store: Arc<dyn StateStore>, max_pending: usize) -> Deliverer {
        let metrics = Metrics::new().unwrap();
        Deliverer::new(
            Arc::new(Monitored::new(store, metrics.clone())),
            8,
            max_pending,
            Handle::current(),
            metrics,
            Arc::new(crate::clock::TokioClock::new()),
        )
    }

    /// A store that answers every operation and keeps when it was asked.
    fn watched() -> Arc<Faulty> {
        Arc::new(Faulty::new(memory(), |_| {
            std::future::ready(Ok(())).boxed()
        }))
    }

    /// A store that stops answering from `from` until `until`, as a Redis stopped with SIGSTOP
    /// does: each claim, record, give-back, wait and ping then fails after `timeout` (the
    /// client's own timeout), or answers once the stall is over.
    fn stalled(from: Instant, until: Instant, timeout: Duration) -> Arc<Faulty> {
        Arc::new(Faulty::new(memory(), move |op| {
            async move {
                let asked = Instant::now();
                let stalls = !matches!(op, Op::ClaimOnce | Op::Mark | Op::Marked);
                if !stalls || asked < from || asked >= until {
                    return Ok(());
                }
                tokio::time::sleep_until(until.min(asked + timeout)).await;
                if Instant::now() < until {
                    return Err(StateError::Unavailable("stalled".to_string()));
                }
                Ok(())
            }
            .boxed()
        }))
    }

    fn sms(recipient: &str, text: &str) -> Sms {
        let payload = crate::ingest::parse_alertmanager(
            format!(
                r#"{{"status":"firing","groupKey":"g","alerts":[{{"status":"firing","fingerprint":"{text}","labels":{{}}}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        let alert = &payload.alerts[0];
        Sms {
            route: "critical".to_string(),
            recipient: recipient.to_string(),
            number: PhoneNumber::parse(if recipient == "bob" { BOB } else { ALICE }).unwrap(),
            text: text.to_string(),
            size: crate::text::sms::measure(text),
            max_segments: 1,
            key: ContentKey::new(recipient, "g", &[alert]),
            quiet: false,
        }
    }

    fn policy(deadline: Duration) -> Policy {
        Policy {
            deadline: Instant::now() + deadline,
            state_deadline: Instant::now() + deadline - (deadline / 2).min(Duration::from_secs(1)),
            dedup_window: Duration::from_secs(600),
            lease: deadline + Duration::from_secs(40),
            limits: Limits::default(),
        }
    }

    /// A 5 s deadline and at most `count` SMS per recipient and hour.
    fn per_recipient_per_hour(count: usize) -> Policy {
        Policy {
            limits: Limits {
                per_recipient: Some(Rate {
                    count,
                    period: Duration::from_secs(3600),
                }),
                total: None,
            },
            ..policy(Duration::from_secs(5))
        }
    }

    async fn send(d: &Deliverer, provider: &Arc<Scripted>, sms: Sms, policy: Policy) -> SmsReport {
        send_all(d, provider, vec![sms], policy).await.remove(0)
    }

    /// The SMS of one notification.
    async fn send_all(
        d: &Deliverer,
        provider: &Arc<Scripted>,
        notification: Vec<Sms>,
        policy: Policy,
    ) -> Vec<SmsReport> {
        d.deliver(&provider.outlet(), notification, policy).await
    }

    async fn dry_run(d: &Deliverer, sms: Sms, policy: Policy) -> SmsReport {
        d.deliver(&Outlet::DryRun, vec![sms], policy)
            .await
            .remove(0)
    }

    fn outcome(report: &SmsReport) -> (Outcome, Option<&'static str>) {
        (report.outcome, report.reason)
    }

    fn outcomes(reports: &[SmsReport]) -> Vec<(Outcome, Option<&'static str>)> {
        reports.iter().map(outcome).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_with_growing_delays_inside_the_deadline() {
        let fake = Scripted::new([refuse(503), refuse(500), refuse(502)]);
        let d = deliverer(8);
        let started = Instant::now();
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        let gaps: Vec<Duration> = fake.times().windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps.len(), 3, "three retries after three failures");
        // 250 ms, 500 ms, 1 s, each with a jitter of 0.5x to 1.5x.
        for (gap, base) in gaps.iter().zip([250u64, 500, 1000]) {
            let base = Duration::from_millis(base);
            assert!(*gap >= base / 2 && *gap < base * 3 / 2, "{gaps:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_longer_than_the_time_left_ends_the_retries() {
        let fake = Scripted::new([Answer {
            retry_after: Some(Duration::from_secs(30)),
            ..refuse(429)
        }]);
        let d = deliverer(8);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("rate_limited")));
        assert_eq!(fake.requests().len(), 1, "no retry against Retry-After");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_that_fits_is_waited_for() {
        let fake = Scripted::new([Answer {
            retry_after: Some(Duration::from_secs(2)),
            ..refuse(429)
        }]);
        let d = deliverer(8);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        let times = fake.times();
        assert!(times[1] - times[0] >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried_and_an_account_error_holds_off_every_sms() {
        let fake = Scripted::new([refuse(401)]);
        let d = deliverer(8);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("auth")));
        assert_eq!(fake.requests().len(), 1);

        // During the hold-off another SMS fails fast, without a request.
        let report = send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("auth")));
        assert_eq!(fake.requests().len(), 1);
        let (reason, left) = d.holdoff().unwrap();
        assert_eq!(reason, FailureReason::Auth);
        assert!(left <= PERMANENT_FAILURE_HOLDOFF);

        tokio::time::advance(PERMANENT_FAILURE_HOLDOFF).await;
        assert!(d.holdoff().is_none());
        let report = send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_past_the_deadline_is_not_abandoned_and_its_retry_is_a_duplicate() {
        let fake = Scripted::new([Answer {
            delay: Duration::from_secs(3),
            ..OK
        }]);
        let d = deliverer(8);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(1))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("timeout")));

        // The caller's retry comes while the first request is still on the wire: it waits
        // for it until its own deadline, and sends nothing itself.
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(1))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("timeout")));
        assert_eq!(fake.requests().len(), 1);

        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(1))).await;
        assert_eq!(outcome(&report), (Outcome::Suppressed, Some("duplicate")));
        assert_eq!(fake.requests().len(), 1);
        assert!(d.shutdown(Instant::now()).await, "nothing left in flight");
    }

    /// Each SMS of the ring as (recipient, outcome, reason, late), the newest first.
    fn kept(d: &Deliverer) -> Vec<(String, Outcome, Option<&'static str>, bool)> {
        d.recent()
            .into_iter()
            .map(|h| {
                (
                    h.report.recipient,
                    h.report.outcome,
                    h.report.reason,
                    h.late,
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn every_sms_is_kept_for_the_status_page_as_its_caller_was_told() {
        let fake = Scripted::new([OK, refuse(400)]);
        let d = deliverer(8);
        let started = d.inner.clock.now();
        send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(5))).await;
        send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        // Held back by its route before it reached the deliverer.
        d.suppressed("warnings", "bob", SuppressReason::Muted);
        dry_run(&d, sms("bob", "C"), policy(Duration::from_secs(5))).await;
        let own = |name: &str| name.to_string();
        assert_eq!(
            kept(&d),
            [
                (own("bob"), Outcome::DryRun, None, false),
                (own("bob"), Outcome::Suppressed, Some("muted"), false),
                // alice's second SMS A was a duplicate of the first: not kept again.
                (own("bob"), Outcome::Failed, Some("client_error"), false),
                (own("alice"), Outcome::Sent, None, false),
            ]
        );
        let at: Vec<u64> = d.recent().iter().map(|h| h.at - started).collect();
        assert_eq!(at, [1000, 1000, 1000, 0]);
        assert_eq!(d.recent()[3].report.route, "critical");
        assert_eq!(d.recent()[3].report.segments, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_ends_after_its_caller_left_is_kept_as_it_ended() {
        let fake = Scripted::new([
            Answer {
                delay: Duration::from_secs(3),
                ..OK
            },
            Answer {
                delay: Duration::from_secs(3),
                ..refuse(400)
            },
        ]);
        let d = deliverer(8);
        let started = d.inner.clock.now();
        send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(1))).await;
        send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(1))).await;
        let own = |name: &str| name.to_string();
        assert_eq!(
            kept(&d),
            [
                (own("bob"), Outcome::Failed, Some("timeout"), false),
                (own("alice"), Outcome::Failed, Some("timeout"), false),
            ]
        );
        assert!(d.shutdown(Instant::now() + Duration::from_secs(10)).await);
        assert_eq!(
            kept(&d),
            [
                (own("bob"), Outcome::Failed, Some("client_error"), true),
                (own("alice"), Outcome::Sent, None, true),
                (own("bob"), Outcome::Failed, Some("timeout"), false),
                (own("alice"), Outcome::Failed, Some("timeout"), false),
            ]
        );
        let at: Vec<u64> = d.recent().iter().map(|h| h.at - started).collect();
        assert_eq!(at, [4000, 3000, 2000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_for_a_send_in_flight_that_ends_in_time() {
        let fake = Scripted::new([Answer {
            delay: Duration::from_millis(600),
            ..OK
        }]);
        let d = deliverer(8);
        let first = {
            let (d, fake) = (d.clone(), fake.clone());
            tokio::spawn(async move {
                send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await
            })
        };
        // The first holds the claim before the second asks: the claim is taken before any
        // time passes, and the paused clock only moves when both wait.
        tokio::task::yield_now().await;
        let second = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&first.await.unwrap()), (Outcome::Sent, None));
        assert_eq!(outcome(&second), (Outcome::Suppressed, Some("duplicate")));
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_send_is_released_so_that_the_retry_sends_it() {
        let fake = Scripted::new([refuse(400)]);
        let d = deliverer(8);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("client_error")));
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_dedup_window_ends_and_a_repeat_goes_out() {
        let fake = Scripted::new([]);
        let d = deliverer(8);
        let window = Duration::from_secs(60);
        let with_window = || Policy {
            dedup_window: window,
            ..policy(Duration::from_secs(5))
        };
        for _ in 0..2 {
            send(&d, &fake, sms("alice", "A"), with_window()).await;
        }
        assert_eq!(fake.requests().len(), 1);
        tokio::time::advance(window).await;
        let report = send(&d, &fake, sms("alice", "A"), with_window()).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_holds_back_and_the_next_sms_says_how_many() {
        let fake = Scripted::new([]);
        let d = deliverer(8);
        let limited = || per_recipient_per_hour(2);
        let mut outcomes = Vec::new();
        for i in 0..5 {
            let report = send(&d, &fake, sms("alice", &format!("S{i}")), limited()).await;
            outcomes.push(outcome(&report));
        }
        let held = (Outcome::Suppressed, Some("rate_limited"));
        let sent = (Outcome::Sent, None);
        assert_eq!(outcomes, [sent, sent, held, held, held]);

        tokio::time::advance(Duration::from_secs(3600)).await;
        send(&d, &fake, sms("alice", "S9"), limited()).await;
        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[2].1, "[3 SMS held back] S9");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_that_did_not_send_goes_back_with_its_held_back_count() {
        // A is sent, B held back; an hour later C takes the slot and the count, and fails:
        // both go back, so D still gets the slot and says that one was held back.
        let fake = Scripted::new([OK, refuse(400)]);
        let d = deliverer(8);
        let limited = || per_recipient_per_hour(1);
        let report = send(&d, &fake, sms("alice", "A"), limited()).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        let report = send(&d, &fake, sms("alice", "B"), limited()).await;
        assert_eq!(
            outcome(&report),
            (Outcome::Suppressed, Some("rate_limited"))
        );
        tokio::time::advance(Duration::from_secs(3600)).await;
        let report = send(&d, &fake, sms("alice", "C"), limited()).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("client_error")));
        let report = send(&d, &fake, sms("alice", "D"), limited()).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        let texts: Vec<String> = fake.requests().into_iter().map(|(_, t)| t).collect();
        assert_eq!(texts, ["A", "[1 SMS held back] C", "[1 SMS held back] D"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_request_neither_loses_its_sms_nor_blocks_the_retry() {
        // The caller goes away (a dropped HTTP request) while its SMS waits for a request slot:
        // the send goes on without it, and the retry finds it sent instead of waiting for the
        // lease to run out.
        let fake = Scripted::new([Answer {
            delay: Duration::from_secs(3),
            ..OK
        }]);
        let d = deliverer(1);
        let busy = {
            let (d, fake) = (d.clone(), fake.clone());
            tokio::spawn(async move {
                send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(5))).await
            })
        };
        tokio::task::yield_now().await;
        let waiting = {
            let (d, fake) = (d.clone(), fake.clone());
            tokio::spawn(async move {
                send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await
            })
        };
        tokio::task::yield_now().await;
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        busy.await.unwrap();
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(1))).await;
        assert_eq!(
            outcome(&report),
            (Outcome::Suppressed, Some("duplicate")),
            "not held by the cancelled request"
        );
        let sent = |number: &str, text: &str| (number.to_string(), text.to_string());
        assert_eq!(fake.requests(), [sent(BOB, "B"), sent(ALICE, "A")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_dies_gives_its_claim_back() {
        // A bug kills the task sending A: what A held goes back, so that the retry sends it
        // instead of waiting for the lease to run out.
        let fake = Scripted::new([Answer { panics: true, ..OK }]);
        let d = deliverer(8);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("network")));
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(1))).await;
        assert_eq!(
            outcome(&report),
            (Outcome::Sent, None),
            "not held by the dead task's claim"
        );
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sms_of_a_notification_are_claimed_in_one_call_and_recorded_in_one_more() {
        // Sipgate answers the three in 100, 300 and 200 ms, and refuses the fourth: the three
        // are recorded together when the last of them went out, the fourth is given back.
        let fake = Scripted::new([
            Answer {
                delay: Duration::from_millis(100),
                ..OK
            },
            Answer {
                delay: Duration::from_millis(300),
                ..OK
            },
            Answer {
                delay: Duration::from_millis(200),
                ..OK
            },
            refuse(400),
        ]);
        let store = watched();
        let d = on_store(store.clone(), 100);
        let started = Instant::now();
        let notification = || {
            vec![
                sms("alice", "A"),
                sms("bob", "B"),
                sms("carol", "C"),
                sms("dave", "D"),
            ]
        };
        let reports = send_all(&d, &fake, notification(), policy(Duration::from_secs(5))).await;
        let sent = (Outcome::Sent, None);
        assert_eq!(
            outcomes(&reports),
            [sent, sent, sent, (Outcome::Failed, Some("client_error"))]
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let since = |op: Op| -> Vec<u128> {
            let asked = store.asked(op);
            asked.iter().map(|t| (*t - started).as_millis()).collect()
        };
        assert_eq!(since(Op::Begin), [0]);
        assert_eq!(since(Op::Settle), [300]);
        assert_eq!(since(Op::GiveBack), [0]);

        // The retry: one more call finds the three sent; the fourth is sent now.
        let reports = send_all(&d, &fake, notification(), policy(Duration::from_secs(5))).await;
        let duplicate = (Outcome::Suppressed, Some("duplicate"));
        assert_eq!(outcomes(&reports), [duplicate, duplicate, duplicate, sent]);
        assert_eq!(since(Op::Begin), [0, 1300]);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(since(Op::Settle), [300, 1300]);
        assert_eq!(fake.requests().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn what_went_out_by_the_answer_is_recorded_then_and_a_late_send_when_it_ends() {
        // Sipgate takes alice's SMS at once and bob's only after 8 s, past the 5 s deadline.
        let fake = Scripted::new([
            OK,
            Answer {
                delay: Duration::from_secs(8),
                ..OK
            },
        ]);
        let store = watched();
        let d = on_store(store.clone(), 100);
        let started = Instant::now();
        let notification = || vec![sms("alice", "A"), sms("bob", "B")];
        let reports = send_all(&d, &fake, notification(), policy(Duration::from_secs(5))).await;
        assert_eq!(
            outcomes(&reports),
            [(Outcome::Sent, None), (Outcome::Failed, Some("timeout"))]
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        let settles = |store: &Faulty| -> Vec<u64> {
            let asked = store.asked(Op::Settle);
            asked.iter().map(|t| (*t - started).as_secs()).collect()
        };
        assert_eq!(settles(&store), [5], "alice's, with the answer");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(settles(&store), [5, 8], "bob's, when it went out");

        let reports = send_all(&d, &fake, notification(), policy(Duration::from_secs(5))).await;
        let duplicate = (Outcome::Suppressed, Some("duplicate"));
        assert_eq!(outcomes(&reports), [duplicate, duplicate]);
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_sms_waits_for_no_request_slot() {
        // Sends of the config before a reload hold the one request slot; an SMS of the dry-run
        // config after it sends no request, so it is logged at once.
        let fake = Scripted::new([Answer {
            delay: Duration::from_secs(10),
            ..OK
        }]);
        let d = deliverer(1);
        let busy = {
            let (d, fake) = (d.clone(), fake.clone());
            tokio::spawn(async move {
                send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(2))).await
            })
        };
        tokio::task::yield_now().await;
        let started = Instant::now();
        let report = dry_run(&d, sms("alice", "A"), policy(Duration::from_secs(2))).await;
        assert_eq!(outcome(&report), (Outcome::DryRun, None));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(
            outcome(&busy.await.unwrap()),
            (Outcome::Failed, Some("timeout"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_sms_that_got_no_request_slot_in_time_is_sent_by_the_retry() {
        let fake = Scripted::new([Answer {
            delay: Duration::from_secs(10),
            ..OK
        }]);
        let d = deliverer(1);
        let provider = fake.outlet();
        let both = || vec![sms("alice", "A"), sms("bob", "B")];
        let reports = d
            .deliver(&provider, both(), policy(Duration::from_secs(2)))
            .await;
        let unconfirmed = (Outcome::Failed, Some("timeout"));
        assert_eq!(outcomes(&reports), [unconfirmed, unconfirmed]);
        assert_eq!(fake.requests().len(), 1, "one request slot");

        // The first request ends; the caller's retry sends only what is missing.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let reports = d
            .deliver(&provider, both(), policy(Duration::from_secs(2)))
            .await;
        assert_eq!(
            outcomes(&reports),
            [
                (Outcome::Suppressed, Some("duplicate")),
                (Outcome::Sent, None)
            ]
        );
        let numbers: Vec<String> = fake.requests().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, [ALICE, BOB]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_store_is_waited_for_no_longer_than_its_timeout_and_the_sms_is_recorded_later()
     {
        // The store's client gives up after 3 s; the store answers again after 20 s.
        let started = Instant::now();
        let store = stalled(
            started,
            started + Duration::from_secs(20),
            Duration::from_secs(3),
        );
        let fake = Scripted::new([]);
        let d = on_store(store.clone(), 100);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(
            outcome(&report),
            (Outcome::Sent, None),
            "sent without the store"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "answered when begin failed"
        );
        assert_eq!(fake.requests().len(), 1);

        // Recording it is tried again, with growing delays, until the store answers.
        tokio::time::sleep(Duration::from_secs(30)).await;
        let settles: Vec<u64> = store
            .asked(Op::Settle)
            .iter()
            .map(|t| (*t - started).as_secs())
            .collect();
        assert_eq!(settles, [3, 7, 12, 19]);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(
            outcome(&report),
            (Outcome::Suppressed, Some("duplicate")),
            "recorded once the store answered"
        );
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_slower_than_the_deadline_allows_is_cut_off_in_time_to_send() {
        // A client timeout longer than the deadline: the claim is given up when 1 s is left.
        let started = Instant::now();
        let store = stalled(
            started,
            started + Duration::from_secs(60),
            Duration::from_secs(10),
        );
        let fake = Scripted::new([]);
        let d = on_store(store, 100);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        assert_eq!(fake.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_does_not_wait_for_the_record_of_a_send() {
        // The store answers the claim, then stalls while Sipgate takes 1 s: recording the send
        // would take until after the deadline.
        let started = Instant::now();
        let store = stalled(
            started + Duration::from_millis(500),
            started + Duration::from_secs(60),
            Duration::from_millis(4500),
        );
        let fake = Scripted::new([Answer {
            delay: Duration::from_secs(1),
            ..OK
        }]);
        let d = on_store(store.clone(), 100);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "answered with Sipgate's answer"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(store.asked(Op::Settle).len(), 1, "recording it goes on");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_store_keeps_no_dry_run_answer_past_the_deadline() {
        // Sends handled in the request itself (dry-run): recording waits no longer than the
        // store's share of the deadline, then goes on in the background.
        let started = Instant::now();
        let store = stalled(
            started,
            started + Duration::from_secs(20),
            Duration::from_secs(3),
        );
        let d = on_store(store, 100);
        let report = dry_run(&d, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::DryRun, None));
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let report = dry_run(&d, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Suppressed, Some("duplicate")));
        let metrics = d.inner.metrics.render();
        assert!(
            metrics.contains("alertmanager_sipgate_sms_dry_run_total{route=\"critical\"} 1\n"),
            "logged once:\n{metrics}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn recording_a_send_holds_no_pending_slot() {
        // One pending slot; the store stalls after the first claim, so recording the first SMS
        // takes seconds: the second SMS must still get the slot.
        let started = Instant::now();
        let store = stalled(
            started + Duration::from_millis(100),
            started + Duration::from_secs(60),
            Duration::from_secs(3),
        );
        let fake = Scripted::new([Answer {
            delay: Duration::from_millis(200),
            ..OK
        }]);
        let d = on_store(store, 1);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        let report = send(&d, &fake, sms("bob", "B"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None), "not overloaded");
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn recording_is_given_up_when_the_lease_ends_and_at_shutdown() {
        // The store never answers again: recording is tried with growing delays until the
        // claim's lease (45 s from the claim at 3 s) would have ended.
        let started = Instant::now();
        let store = stalled(
            started,
            started + Duration::from_secs(1000),
            Duration::from_secs(3),
        );
        let fake = Scripted::new([]);
        let d = on_store(store.clone(), 100);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Sent, None));
        let settles = |store: &Faulty, started: Instant| -> Vec<u64> {
            let settles = store.asked(Op::Settle);
            settles.iter().map(|t| (*t - started).as_secs()).collect()
        };
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(settles(&store, started), [3, 7, 12, 19, 30, 41]);
        assert!(d.shutdown(Instant::now()).await);

        // A shutdown ends the waiting: one last try, then the process may go.
        let started = Instant::now();
        let store = stalled(
            started,
            started + Duration::from_secs(1000),
            Duration::from_secs(3),
        );
        let d = on_store(store.clone(), 100);
        send(&d, &fake, sms("alice", "B"), policy(Duration::from_secs(5))).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(d.shutdown(Instant::now() + Duration::from_secs(35)).await);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(14),
            "the last try's 3 s"
        );
        assert_eq!(settles(&store, started), [3, 7, 11]);
    }

    /// A store that says someone else is sending the SMS, then stops answering.
    #[derive(Debug, Default)]
    struct InFlightThenDown {
        asked: Mutex<u32>,
    }

    impl StateStore for InFlightThenDown {
        fn name(&self) -> &'static str {
            "in flight, then down"
        }
        fn begin<'a>(&'a self, _: Begin<'a>) -> BoxFuture<'a, Result<Start, StateError>> {
            let mut asked = self.asked.lock().unwrap();
            *asked += 1;
            let answer = if *asked == 1 {
                Ok(Start::InFlight)
            } else {
                Err(StateError::Unavailable("down".to_string()))
            };
            std::future::ready(answer).boxed()
        }
        fn settle(&self, _: crate::state::Settle) -> BoxFuture<'_, Result<(), StateError>> {
            std::future::ready(Ok(())).boxed()
        }
        fn give_back<'a>(
            &'a self,
            _: crate::state::GiveBack<'a>,
        ) -> BoxFuture<'a, Result<(), StateError>> {
            std::future::ready(Ok(())).boxed()
        }
        fn wait_for(&self, _: ContentKey, _: Instant) -> BoxFuture<'_, Result<bool, StateError>> {
            std::future::ready(Ok(true)).boxed()
        }
        fn claim_once<'a>(
            &'a self,
            _: &'a str,
            _: Duration,
        ) -> BoxFuture<'a, Result<bool, StateError>> {
            std::future::ready(Ok(true)).boxed()
        }
        fn mark<'a>(
            &'a self,
            _: &'a str,
            _: crate::clock::Millis,
            _: crate::state::Keep,
        ) -> BoxFuture<'a, Result<(), StateError>> {
            std::future::ready(Ok(())).boxed()
        }
        fn marked<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<crate::clock::Millis>, StateError>> {
            std::future::ready(Ok(None)).boxed()
        }
        fn incident<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<crate::state::Record>, StateError>> {
            std::future::ready(Err(StateError::Unavailable("down".to_string()))).boxed()
        }
        fn swap_incident<'a>(
            &'a self,
            _: crate::state::Swap<'a>,
        ) -> BoxFuture<'a, Result<Option<u64>, StateError>> {
            std::future::ready(Err(StateError::Unavailable("down".to_string()))).boxed()
        }
        fn open_incidents(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
            std::future::ready(Err(StateError::Unavailable("down".to_string()))).boxed()
        }
        fn ping(&self) -> BoxFuture<'_, Result<(), StateError>> {
            std::future::ready(Ok(())).boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_sms_another_request_was_sending_is_not_sent_when_the_store_then_fails() {
        // Sending it now could text it twice; the caller's retry asks again.
        let fake = Scripted::new([]);
        let d = on_store(Arc::new(InFlightThenDown::default()), 100);
        let report = send(&d, &fake, sms("alice", "A"), policy(Duration::from_secs(5))).await;
        assert_eq!(outcome(&report), (Outcome::Failed, Some("timeout")));
        assert!(fake.requests().is_empty());
    }

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
