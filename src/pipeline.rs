//! One notification in, one report out: input limits, routing and composing (`plan`),
//! delivery, and what is counted and logged about it. No HTTP in here; the server only parses
//! the body before and turns the report into an answer after.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::config::Config;
use crate::delivery::{Deliverer, Policy};
use crate::escalation::Escalation;
use crate::live::Live;
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
    /// Incidents whose change the state store did not take, with nothing sent instead.
    pub unrecorded: usize,
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
        self.failed() == 0 && self.unrecorded == 0
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
    /// The groups that routes with an escalation policy took, for their incidents.
    pub escalations: Vec<Escalating>,
}

/// The alerts of a notification one escalating route took, as a notification of their own.
#[derive(Debug)]
pub struct Escalating {
    pub route: String,
    pub group: Notification,
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
        escalations: routing
            .escalated
            .iter()
            .map(|e| {
                let mut group = notification.clone();
                group.alerts = e.alerts.iter().map(|a| (*a).clone()).collect();
                if group.count(AlertStatus::Firing) == 0 {
                    group.status = AlertStatus::Resolved;
                }
                Escalating {
                    route: e.route.name.clone(),
                    group,
                }
            })
            .collect(),
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
    let escalation = Escalation {
        live,
        deliverer,
        metrics,
        delivery: policy,
        now,
    };
    let escalations = join_all(plan.escalations.into_iter().filter_map(|e| {
        let route = live.config.routes.iter().find(|r| r.name == e.route)?;
        Some(escalation.notify(route, e.group))
    }));
    let (mut sms, (), escalated) = tokio::join!(
        deliverer.deliver(&live.outlet, plan.messages, policy),
        record_heartbeat,
        escalations
    );
    let unrecorded = escalated.iter().filter(|e| e.unrecorded).count();
    sms.extend(escalated.into_iter().flat_map(|e| e.sms));
    sms.extend(
        plan.held
            .iter()
            .map(|held| deliverer.suppressed(&held.route, &held.recipient, held.reason)),
    );
    let report = Report {
        sms,
        unrouted_alerts: plan.unrouted,
        unrecorded,
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

#[cfg(test)]
mod tests {
    //! The pipeline on fakes of both seams: a provider that records what it was asked to send,
    //! and the memory store (or one that is down or stalls), on tokio's paused clock.

    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;
    use crate::clock::TokioClock;
    use crate::provider::Outlet;
    use crate::state::faulty::Faulty;
    use crate::state::memory::DEFAULT_CAPACITY;
    use crate::state::{MemoryStore, StateError, StateStore};
    use crate::testing::Fixture;

    const ALICE: &str = "+4915228817386";
    const BOB: &str = "+4915254599371";

    /// alice and bob (quiet at night); `critical` pages alice, `warnings` both, without resolved.
    const CONFIG: &str = r#"
recipients:
  alice: "+4915228817386"
  bob: {number: "+4915254599371", quiet_hours: [nights]}
time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}, {start_time: "00:00", end_time: "07:00"}]
routes:
  - name: critical
    matchers: ['severity="critical"']
    to: [alice]
  - name: warnings
    matchers: ['severity="warning"']
    to: [alice, bob]
    send_resolved: false
"#;

    /// 10:00 UTC, outside bob's quiet hours; `NIGHT` is inside them.
    const DAY: &str = "2026-11-25T10:00:00Z";
    const NIGHT: &str = "2026-11-25T23:00:00Z";

    /// The service's pieces on `CONFIG`.
    struct Pipeline;

    impl Pipeline {
        fn on(store: Arc<dyn StateStore>) -> Fixture {
            Fixture::on(CONFIG, store)
        }

        fn in_memory() -> Fixture {
            Pipeline::on(Arc::new(memory()))
        }
    }

    fn memory() -> MemoryStore {
        MemoryStore::new(DEFAULT_CAPACITY, Arc::new(TokioClock::new()))
    }

    /// One alert `DiskFull` on `db1` with `severity` and `status`, as Alertmanager posts it.
    fn notification(severity: &str, status: &str) -> String {
        format!(
            r#"{{"status":"{status}","groupKey":"{{}}:{{alertname=\"DiskFull\"}}","alerts":[{{
                "status":"{status}","fingerprint":"f1","startsAt":"2026-11-25T09:05:00Z",
                "labels":{{"alertname":"DiskFull","instance":"db1","severity":"{severity}"}},
                "annotations":{{"summary":"Disk on db1 is 95% full"}}}}]}}"#
        )
    }

    fn report_of(
        route: &str,
        recipient: &str,
        outcome: Outcome,
        reason: Option<&'static str>,
    ) -> SmsReport {
        SmsReport {
            route: route.to_string(),
            recipient: recipient.to_string(),
            outcome,
            reason,
            segments: if outcome == Outcome::Suppressed { 0 } else { 1 },
        }
    }

    const TEXT: &str = "FIRING DiskFull db1 since Nov 25 09:05 UTC: Disk on db1 is 95% full";

    #[tokio::test(start_paused = true)]
    async fn a_notification_is_texted_to_each_recipient_of_its_route() {
        let pipeline = Pipeline::in_memory();
        let report = pipeline.run(&notification("warning", "firing"), DAY).await;
        assert_eq!(
            report.sms,
            [
                report_of("warnings", "alice", Outcome::Sent, None),
                report_of("warnings", "bob", Outcome::Sent, None),
            ]
        );
        assert_eq!(report.unrouted_alerts, 0);
        assert!(report.all_delivered());
        assert_eq!(
            pipeline.provider.sent(),
            [
                (ALICE.to_string(), TEXT.to_string()),
                (BOB.to_string(), TEXT.to_string())
            ]
        );
        assert!(
            pipeline.suppressed().is_empty(),
            "{:?}",
            pipeline.suppressed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_notification_again_is_a_duplicate_and_sends_nothing() {
        let pipeline = Pipeline::in_memory();
        pipeline.run(&notification("critical", "firing"), DAY).await;
        let again = pipeline.run(&notification("critical", "firing"), DAY).await;
        assert_eq!(
            again.sms,
            [report_of(
                "critical",
                "alice",
                Outcome::Suppressed,
                Some("duplicate")
            )]
        );
        assert!(again.all_delivered());
        assert_eq!(
            pipeline.provider.sent(),
            [(ALICE.to_string(), TEXT.to_string())]
        );
        assert_eq!(
            pipeline.suppressed(),
            [r#"alertmanager_sipgate_sms_suppressed_total{reason="duplicate",route="critical"} 1"#]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn alerts_no_route_takes_are_counted_and_text_nobody() {
        let pipeline = Pipeline::in_memory();
        let report = pipeline.run(&notification("info", "firing"), DAY).await;
        assert_eq!(report.sms, []);
        assert_eq!(report.unrouted_alerts, 1);
        assert!(report.all_delivered());
        assert_eq!(pipeline.provider.sent(), []);
        assert_eq!(
            pipeline.suppressed(),
            [r#"alertmanager_sipgate_sms_suppressed_total{reason="no_route",route=""} 1"#]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_is_down_does_not_stop_the_page() {
        let down = Faulty::new(memory(), |_| {
            std::future::ready(Err(StateError::Unavailable("down".to_string()))).boxed()
        });
        let pipeline = Pipeline::on(Arc::new(down));
        let started = Instant::now();
        let report = pipeline.run(&notification("critical", "firing"), DAY).await;
        assert_eq!(
            report.sms,
            [report_of("critical", "alice", Outcome::Sent, None)]
        );
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no waiting for the store"
        );
        assert_eq!(
            pipeline.provider.sent(),
            [(ALICE.to_string(), TEXT.to_string())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_store_is_waited_for_only_until_its_share_of_the_deadline() {
        let stalled = Faulty::new(memory(), |_| std::future::pending().boxed());
        let pipeline = Pipeline::on(Arc::new(stalled));
        let started = Instant::now();
        let report = pipeline.run(&notification("critical", "firing"), DAY).await;
        assert_eq!(
            report.sms,
            [report_of("critical", "alice", Outcome::Sent, None)]
        );
        assert_eq!(
            started.elapsed(),
            pipeline.live.config.delivery.state_budget(),
            "sent when the store's share of the response deadline ran out"
        );
        assert_eq!(
            pipeline.provider.sent(),
            [(ALICE.to_string(), TEXT.to_string())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_hours_hold_back_only_the_sms_of_whoever_is_in_them() {
        let pipeline = Pipeline::in_memory();
        let report = pipeline
            .run(&notification("warning", "firing"), NIGHT)
            .await;
        assert_eq!(
            report.sms,
            [
                report_of("warnings", "alice", Outcome::Sent, None),
                report_of("warnings", "bob", Outcome::Suppressed, Some("quiet_hours")),
            ]
        );
        assert!(report.all_delivered());
        assert_eq!(
            pipeline.provider.sent(),
            [(ALICE.to_string(), TEXT.to_string())]
        );
        assert_eq!(
            pipeline.suppressed(),
            [
                r#"alertmanager_sipgate_sms_suppressed_total{reason="quiet_hours",route="warnings"} 1"#
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolved_alert_on_a_route_without_send_resolved_is_held_back() {
        let pipeline = Pipeline::in_memory();
        let report = pipeline
            .run(&notification("warning", "resolved"), DAY)
            .await;
        let held = |recipient| {
            report_of(
                "warnings",
                recipient,
                Outcome::Suppressed,
                Some("send_resolved"),
            )
        };
        assert_eq!(report.sms, [held("alice"), held("bob")]);
        assert!(report.all_delivered());
        assert_eq!(pipeline.provider.sent(), []);
        assert_eq!(
            pipeline.suppressed(),
            [
                r#"alertmanager_sipgate_sms_suppressed_total{reason="send_resolved",route="warnings"} 2"#
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_sms_after_quiet_hours_says_how_many_were_held_back() {
        let pipeline = Pipeline::in_memory();
        pipeline
            .run(&notification("warning", "firing"), NIGHT)
            .await;
        let morning = pipeline.run(&notification("warning", "firing"), DAY).await;
        assert_eq!(
            morning.sms,
            [
                report_of("warnings", "alice", Outcome::Suppressed, Some("duplicate")),
                report_of("warnings", "bob", Outcome::Sent, None),
            ]
        );
        assert_eq!(
            pipeline.provider.sent(),
            [
                (ALICE.to_string(), TEXT.to_string()),
                (BOB.to_string(), format!("[1 SMS held back] {TEXT}"))
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn in_dry_run_nothing_is_sent_and_each_sms_says_so() {
        let mut pipeline = Pipeline::in_memory();
        pipeline.live.outlet = Outlet::DryRun;
        let report = pipeline.run(&notification("warning", "firing"), DAY).await;
        assert_eq!(
            report.sms,
            [
                report_of("warnings", "alice", Outcome::DryRun, None),
                report_of("warnings", "bob", Outcome::DryRun, None),
            ]
        );
        assert!(report.all_delivered());
        assert_eq!(pipeline.provider.sent(), []);
        let again = pipeline.run(&notification("warning", "firing"), DAY).await;
        let duplicate = |recipient| {
            report_of(
                "warnings",
                recipient,
                Outcome::Suppressed,
                Some("duplicate"),
            )
        };
        assert_eq!(again.sms, [duplicate("alice"), duplicate("bob")]);
    }
}
