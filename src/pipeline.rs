//! One notification in, one report out: input limits, routing and composing (`plan`),
//! delivery, and what is counted and logged about it. No HTTP in here; the server only parses
//! the body before and turns the report into an answer after.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::app::Live;
use crate::config::Config;
use crate::delivery::{Deliverer, Policy};
use crate::metrics::{Metrics, Truncated};
use crate::model::alert::{Alert, AlertStatus, Notification};
use crate::model::outcome::{Outcome, SmsReport, SuppressReason};
use crate::routing;
use crate::text::compose::{Sms, compose};
use crate::watchdog::heartbeat::Heartbeats;

/// What became of each SMS of a notification, and of the alerts no route took.
#[derive(Debug)]
pub struct Report {
    pub sms: Vec<SmsReport>,
    pub unrouted_alerts: usize,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.sms
            .iter()
            .filter(|r| r.outcome == Outcome::Failed)
            .count()
    }

    /// Every SMS went out, was sent before, or was held back on purpose: the caller may
    /// forget the notification.
    pub fn all_delivered(&self) -> bool {
        self.failed() == 0
    }
}

/// An SMS held back on purpose before it was composed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub route: String,
    pub recipient: String,
    pub reason: SuppressReason,
}

/// Everything one notification leads to, before anything is sent.
#[derive(Debug)]
pub struct Plan {
    pub messages: Vec<Sms>,
    /// Held back by the route: it does not send resolved alerts, or it is muted now.
    pub held: Vec<Held>,
    /// Alerts that matched no route.
    pub unrouted: usize,
}

/// What `notification` leads to at `now`: who is on call, which routes are muted and who is in
/// quiet hours are all decided at that instant.
pub fn plan(config: &Config, notification: &Notification, now: DateTime<Utc>) -> Plan {
    let rules = routing::At::new(
        &config.schedules,
        &config.time_intervals,
        &config.quiet_hours,
        now,
    );
    let routing = routing::route(notification, &config.routes, &rules);
    Plan {
        messages: routing
            .deliveries
            .iter()
            .filter_map(|d| {
                let number = config.recipients.get(d.recipient)?.clone();
                Some(compose(&config.templates, number, notification, d, now))
            })
            .collect(),
        held: routing
            .held
            .iter()
            .map(|h| Held {
                route: h.route.name.clone(),
                recipient: h.recipient.to_string(),
                reason: h.reason,
            })
            .collect(),
        unrouted: routing.unrouted.len(),
    }
}

/// Handles a parsed notification on the config of `live`. `started` is when the request came
/// in (the response deadline counts from it); `now` is the wall-clock time for the texts.
pub async fn run(
    live: &Live,
    deliverer: &Deliverer,
    metrics: &Metrics,
    heartbeats: &Heartbeats,
    mut notification: Notification,
    started: Instant,
    now: DateTime<Utc>,
) -> Report {
    let policy = Policy::of(&live.config, started);
    // Heartbeats first, so that the input limits never cut them; the store records them while
    // the SMS go out.
    let (beats, record_heartbeat) = heartbeats.take(
        live.config.watchdog.as_ref(),
        &mut notification,
        now,
        policy.state_deadline,
    );
    count_input(&mut notification, live.config.server.max_alerts, metrics);
    let plan = plan(&live.config, &notification, now);
    if plan.unrouted > 0 {
        metrics.sms_suppressed("", SuppressReason::NoRoute, plan.unrouted);
        tracing::warn!(
            group_key = %crate::redact::phone_numbers(&notification.group_key),
            alerts = plan.unrouted,
            "alerts matched no route; nobody is texted about them"
        );
    }
    let (mut sms, ()) = tokio::join!(
        deliverer.deliver(&live.provider, plan.messages, policy),
        record_heartbeat
    );
    for held in &plan.held {
        metrics.sms_suppressed(&held.route, held.reason, 1);
        sms.push(SmsReport::suppressed(
            &held.route,
            &held.recipient,
            held.reason,
        ));
    }
    let report = Report {
        sms,
        unrouted_alerts: plan.unrouted,
    };
    if notification.alerts.is_empty() && !beats.is_empty() {
        log_heartbeats_only(&beats, started);
        return report;
    }
    let failed = report.failed();
    tracing::info!(
        source = notification.source.as_str(),
        receiver = %crate::redact::phone_numbers(&notification.receiver),
        group_key = %crate::redact::phone_numbers(&notification.group_key),
        alerts = notification.alerts.len(),
        // Only when there were any: most notifications carry none.
        heartbeats = (!beats.is_empty()).then_some(beats.len()),
        sms = report.sms.len(),
        failed,
        outcome = if failed == 0 { "success" } else { "failed" },
        duration_ms = started.elapsed().as_millis() as u64,
        "notification handled"
    );
    report
}

/// The one line about a notification that carried only the watchdog's alerts. Alertmanager
/// sends the heartbeat every `repeat_interval`, often every minute: at info it would bury the
/// lines about SMS, and the watchdog's own gauge and SMS already tell when heartbeats stop. A
/// resolved one alone is no heartbeat, and says so where the operator looks.
fn log_heartbeats_only(beats: &[Alert], started: Instant) {
    let duration_ms = started.elapsed().as_millis() as u64;
    if beats.iter().any(|a| a.status == AlertStatus::Firing) {
        tracing::debug!(heartbeats = beats.len(), duration_ms, "heartbeat received");
    } else {
        tracing::info!(
            heartbeats = beats.len(),
            duration_ms,
            "heartbeat alert resolved: that is no heartbeat; the watchdog pages when none comes within watchdog.timeout"
        );
    }
}

/// Applies the input limits and counts what arrived.
fn count_input(notification: &mut Notification, max_alerts: usize, metrics: &Metrics) {
    let cut = notification.limit(max_alerts);
    for (what, count) in [
        (Truncated::Alerts, cut.alerts),
        (Truncated::Values, cut.values),
    ] {
        if count > 0 {
            metrics.input_truncated(what, count);
            tracing::warn!(
                what = what.as_str(),
                count,
                "notification cut to the input limits"
            );
        }
    }
    for status in [AlertStatus::Firing, AlertStatus::Resolved] {
        let count = notification.count(status);
        if count > 0 {
            metrics.alerts_received(status, count);
        }
    }
}
