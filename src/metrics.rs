//! The service's own Prometheus metrics. Label values are route names, phone-book names and bounded
//! reasons only: never numbers, alert names or label values from alerts.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::alert::AlertStatus;
use crate::model::outcome::{FailureReason, SuppressReason};
use crate::routing::Route;
use crate::routing::policy::Policy;

const NAMESPACE: &str = "alertmanager_sipgate";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// The service's registry. Callers use the typed methods below; the label order of each family
/// is known only here.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    sms: SmsFamilies,
    service: ServiceFamilies,
    escalation: EscalationFamilies,
}

/// Incidents and their escalation.
#[derive(Clone)]
struct EscalationFamilies {
    incidents_open: IntGaugeVec,
    pages: IntCounterVec,
    exhausted: IntCounterVec,
    acknowledgements: IntCounterVec,
    time_to_acknowledge: HistogramVec,
    alertmanager_errors: IntCounterVec,
}

impl EscalationFamilies {
    fn register(r: &Registry) -> Result<Self, MetricsError> {
        Ok(EscalationFamilies {
            incidents_open: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "incidents_open",
                        "Incidents whose alerts still fire, by escalating route.",
                    ),
                    &["route"],
                )?,
            )?,
            pages: counter_vec(
                r,
                "escalation_pages_total",
                "Escalation steps paged, by policy and step (1 is the first), every round counted.",
                &["policy", "step"],
            )?,
            exhausted: counter_vec(
                r,
                "escalations_exhausted_total",
                "Incidents whose policy ran out of steps without an acknowledgement, by policy.",
                &["policy"],
            )?,
            acknowledgements: counter_vec(
                r,
                "acknowledgements_total",
                "Incidents acknowledged, by how: link (the page of an SMS) or silence (made in Alertmanager by someone).",
                &["via"],
            )?,
            time_to_acknowledge: registered(
                r,
                HistogramVec::new(
                    HistogramOpts::from(opts(
                        "time_to_acknowledge_seconds",
                        "From the first page of an incident to its acknowledgement, by policy.",
                    ))
                    .buckets(vec![
                        30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
                    ]),
                    &["policy"],
                )?,
            )?,
            alertmanager_errors: counter_vec(
                r,
                "alertmanager_errors_total",
                "Requests to Alertmanager's API that failed, by operation (silence, expire, alerts); escalation goes on without it.",
                &["operation"],
            )?,
        })
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// What became of SMS.
#[derive(Clone)]
struct SmsFamilies {
    sent: IntCounterVec,
    failed: IntCounterVec,
    suppressed: IntCounterVec,
    segments: IntCounterVec,
    dry_run: IntCounterVec,
    provider_request_duration: Histogram,
}

/// The service itself: requests, input, config, health.
#[derive(Clone)]
struct ServiceFamilies {
    requests: IntCounterVec,
    alerts_received: IntCounterVec,
    input_truncated: IntCounterVec,
    panics: IntCounter,
    config_last_reload_successful: IntGauge,
    config_last_reload_success_timestamp: Gauge,
    sipgate_credentials_valid: IntGauge,
    state_up: IntGauge,
    state_errors: IntCounterVec,
    state_evictable: IntGauge,
    state_evicted_keys: IntCounter,
    oncall: IntGaugeVec,
    watchdog_last_seen: Gauge,
    watchdog_silent: IntGauge,
}

/// What the service asked of its state store, for `state_errors_total{operation}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOperation {
    /// Claim an SMS, take its rate-limit slot and held-back count.
    Begin,
    Settle,
    GiveBack,
    /// Wait for an SMS another request is sending.
    Wait,
    ClaimOnce,
    /// Record or read a heartbeat.
    Mark,
    /// Read, write or list incidents of escalations.
    Incident,
    Ping,
}

impl StateOperation {
    pub const ALL: [StateOperation; 8] = [
        StateOperation::Begin,
        StateOperation::Settle,
        StateOperation::GiveBack,
        StateOperation::Wait,
        StateOperation::ClaimOnce,
        StateOperation::Mark,
        StateOperation::Incident,
        StateOperation::Ping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateOperation::Begin => "begin",
            StateOperation::Settle => "settle",
            StateOperation::GiveBack => "give_back",
            StateOperation::Wait => "wait",
            StateOperation::ClaimOnce => "claim_once",
            StateOperation::Mark => "mark",
            StateOperation::Incident => "incident",
            StateOperation::Ping => "ping",
        }
    }
}

/// What the input limits cut from a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncated {
    /// Alerts over `server.max_alerts`.
    Alerts,
    /// Label and annotation values over their length limits.
    Values,
}

impl Truncated {
    pub fn as_str(self) -> &'static str {
        match self {
            Truncated::Alerts => "alerts",
            Truncated::Values => "values",
        }
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

/// Registers `collector` and hands it back.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, MetricsError> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    registered(registry, IntCounterVec::new(opts(name, help), labels)?)
}

impl SmsFamilies {
    fn register(r: &Registry) -> Result<Self, MetricsError> {
        Ok(SmsFamilies {
            sent: counter_vec(
                r,
                "sms_sent_total",
                "SMS accepted by Sipgate, by route and phone-book name.",
                &["route", "recipient"],
            )?,
            failed: counter_vec(
                r,
                "sms_failed_total",
                "SMS not delivered when a notification was answered, by route and reason.",
                &["route", "reason"],
            )?,
            suppressed: counter_vec(
                r,
                "sms_suppressed_total",
                "SMS held back on purpose, by route and reason.",
                &["route", "reason"],
            )?,
            segments: counter_vec(
                r,
                "sms_segments_total",
                "Billed SMS segments accepted by Sipgate, by route.",
                &["route"],
            )?,
            dry_run: counter_vec(
                r,
                "sms_dry_run_total",
                "SMS logged instead of sent because the service runs in dry-run mode, by route.",
                &["route"],
            )?,
            provider_request_duration: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "sipgate_request_duration_seconds",
                        "Duration of Sipgate API requests.",
                    )
                    .namespace(NAMESPACE)
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                )?,
            )?,
        })
    }
}

impl ServiceFamilies {
    fn register(r: &Registry) -> Result<Self, MetricsError> {
        let gauge = |name: &str, help: &str| IntGauge::with_opts(opts(name, help));
        Ok(ServiceFamilies {
            requests: counter_vec(
                r,
                "requests_total",
                "Inbound HTTP requests by endpoint and status code.",
                &["endpoint", "code"],
            )?,
            alerts_received: counter_vec(
                r,
                "alerts_received_total",
                "Alerts in notifications that parsed, by alert status.",
                &["status"],
            )?,
            input_truncated: counter_vec(
                r,
                "input_truncated_total",
                "Parts of notifications cut by the input limits: alerts over server.max_alerts, overlong values.",
                &["what"],
            )?,
            panics: registered(
                r,
                IntCounter::with_opts(opts(
                    "panics_total",
                    "Requests that hit a bug and were answered 500; the process lived on.",
                ))?,
            )?,
            config_last_reload_successful: registered(
                r,
                gauge(
                    "config_last_reload_successful",
                    "Whether the last configuration load succeeded.",
                )?,
            )?,
            config_last_reload_success_timestamp: registered(
                r,
                Gauge::with_opts(opts(
                    "config_last_reload_success_timestamp_seconds",
                    "Timestamp of the last successful configuration load.",
                ))?,
            )?,
            sipgate_credentials_valid: registered(
                r,
                gauge(
                    "sipgate_credentials_valid",
                    "Whether Sipgate accepted the token and SMS extension at the last check (1) or refused them (0).",
                )?,
            )?,
            state_up: registered(
                r,
                gauge(
                    "state_up",
                    "Whether the state store (ledger, rate limits) answered the last operation in time (1) or not (0); at 0 SMS are sent without dedup and limits.",
                )?,
            )?,
            state_errors: counter_vec(
                r,
                "state_errors_total",
                "State store operations that failed or timed out, by operation.",
                &["operation"],
            )?,
            state_evictable: registered(
                r,
                gauge(
                    "state_evictable",
                    "Whether the state store may evict the service's keys under memory pressure (1: a Redis maxmemory-policy other than noeviction), which makes it forget sent SMS.",
                )?,
            )?,
            state_evicted_keys: registered(
                r,
                IntCounter::with_opts(opts(
                    "state_evicted_keys_total",
                    "Keys the state store's Redis evicted for memory (any keys, not only the service's) while this process watched it.",
                ))?,
            )?,
            oncall: registered(
                r,
                IntGaugeVec::new(
                    opts(
                        "oncall",
                        "1 for who is on call in a schedule now, 0 for its other people.",
                    ),
                    &["schedule", "recipient"],
                )?,
            )?,
            watchdog_last_seen: registered(
                r,
                Gauge::with_opts(opts(
                    "watchdog_last_seen_timestamp_seconds",
                    "When the last watchdog heartbeat arrived (at any replica sharing the state).",
                ))?,
            )?,
            watchdog_silent: registered(
                r,
                gauge(
                    "watchdog_silent",
                    "1 while no watchdog heartbeat came for longer than watchdog.timeout.",
                )?,
            )?,
        })
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let metrics = Metrics {
            sms: SmsFamilies::register(&registry)?,
            service: ServiceFamilies::register(&registry)?,
            escalation: EscalationFamilies::register(&registry)?,
            registry: registry.clone(),
        };
        let build_info = registered(
            &registry,
            IntGaugeVec::new(
                opts("build_info", "Build information; the value is always 1."),
                &["version", "revision"],
            )?,
        )?;
        build_info
            .with_label_values(&[crate::version::VERSION, crate::version::REVISION])
            .set(1);
        metrics.service.state_up.set(1);
        for operation in StateOperation::ALL {
            metrics
                .service
                .state_errors
                .with_label_values(&[operation.as_str()]);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// Creates every series a config can produce, at zero, so that rate() and increase() see the
    /// first event after a start instead of a series appearing at 1.
    pub fn initialize(&self, routes: &[Route]) {
        for status in [AlertStatus::Firing, AlertStatus::Resolved] {
            self.service
                .alerts_received
                .with_label_values(&[status.as_str()]);
        }
        for what in [Truncated::Alerts, Truncated::Values] {
            self.service
                .input_truncated
                .with_label_values(&[what.as_str()]);
        }
        self.sms
            .suppressed
            .with_label_values(&["", SuppressReason::NoRoute.as_str()]);
        for route in routes {
            for_each_series(self, route, |family, labels| {
                family.with_label_values(labels);
            });
        }
    }

    /// After a reload: the series of routes and recipients the new config no longer has go
    /// away (they would otherwise stay at their last value forever), the new ones start at zero.
    /// A request still running on the old config may count once more into a removed series;
    /// that series then stays until the next restart.
    pub fn routes_changed(&self, old: &[Route], new: &[Route]) {
        // Removing a series that is not there is fine, hence the ignored results.
        for route in old {
            match new.iter().find(|r| r.name == route.name) {
                None => for_each_series(self, route, |family, labels| {
                    let _ = family.remove_label_values(labels);
                }),
                Some(kept) => {
                    for recipient in &route.may_page {
                        if !kept.may_page.contains(recipient) {
                            let _ = self.sms.sent.remove_label_values(&[&route.name, recipient]);
                        }
                    }
                }
            }
        }
        self.initialize(new);
    }

    pub fn request(&self, endpoint: &str, code: u16) {
        self.service
            .requests
            .with_label_values(&[endpoint, &code.to_string()])
            .inc();
    }

    pub fn alerts_received(&self, status: AlertStatus, count: usize) {
        self.service
            .alerts_received
            .with_label_values(&[status.as_str()])
            .inc_by(count as u64);
    }

    pub fn input_truncated(&self, what: Truncated, count: usize) {
        self.service
            .input_truncated
            .with_label_values(&[what.as_str()])
            .inc_by(count as u64);
    }

    /// An SMS the provider accepted, with the segments it is billed as.
    pub fn sms_sent(&self, route: &str, recipient: &str, segments: usize) {
        self.sms.sent.with_label_values(&[route, recipient]).inc();
        self.sms
            .segments
            .with_label_values(&[route])
            .inc_by(segments as u64);
    }

    pub fn sms_dry_run(&self, route: &str) {
        self.sms.dry_run.with_label_values(&[route]).inc();
    }

    pub fn sms_failed(&self, route: &str, reason: FailureReason) {
        self.sms
            .failed
            .with_label_values(&[route, reason.as_str()])
            .inc();
    }

    /// SMS held back on purpose; `route` is empty for alerts that matched none.
    pub fn sms_suppressed(&self, route: &str, reason: SuppressReason, count: usize) {
        self.sms
            .suppressed
            .with_label_values(&[route, reason.as_str()])
            .inc_by(count as u64);
    }

    pub fn provider_request(&self, took: Duration) {
        self.sms
            .provider_request_duration
            .observe(took.as_secs_f64());
    }

    pub fn panic(&self) {
        self.service.panics.inc();
    }

    pub fn state_up(&self, up: bool) {
        self.service.state_up.set(i64::from(up));
    }

    pub fn state_evictable(&self, evictable: bool) {
        self.service.state_evictable.set(i64::from(evictable));
    }

    pub fn state_evicted_keys(&self, count: u64) {
        self.service.state_evicted_keys.inc_by(count);
    }

    pub fn state_error(&self, operation: StateOperation) {
        self.service
            .state_errors
            .with_label_values(&[operation.as_str()])
            .inc();
    }

    /// Who of `people` is on call in `schedule`.
    pub fn on_call(&self, schedule: &str, people: &[&str], who: &str) {
        for person in people {
            self.service
                .oncall
                .with_label_values(&[schedule, person])
                .set(i64::from(*person == who));
        }
    }

    /// After a reload: schedules and people may be gone; the next `on_call` sets what is there.
    pub fn schedules_changed(&self) {
        self.service.oncall.reset();
    }

    /// Creates the series of the policies at zero.
    pub fn initialize_escalation(&self, policies: &BTreeMap<String, Policy>) {
        for via in ["link", "silence"] {
            self.escalation.acknowledgements.with_label_values(&[via]);
        }
        for policy in policies.values() {
            self.escalation.exhausted.with_label_values(&[&policy.name]);
            for step in 1..=policy.steps.len() {
                self.escalation
                    .pages
                    .with_label_values(&[&policy.name, &step.to_string()]);
            }
        }
    }

    /// The open incidents per escalating route, as the state store lists them now.
    pub fn incidents_open(&self, routes: &[Route], open: &[&str]) {
        for route in routes.iter().filter(|r| r.escalation.is_some()) {
            let count = open.iter().filter(|r| **r == route.name).count();
            self.escalation
                .incidents_open
                .with_label_values(&[&route.name])
                .set(count as i64);
        }
    }

    /// `step` counted from 0.
    pub fn escalation_page(&self, policy: &str, step: usize) {
        self.escalation
            .pages
            .with_label_values(&[policy, &(step + 1).to_string()])
            .inc();
    }

    pub fn escalation_exhausted(&self, policy: &str) {
        self.escalation.exhausted.with_label_values(&[policy]).inc();
    }

    pub fn acknowledged(&self, via: &str, policy: &str, after: Duration) {
        self.escalation
            .acknowledgements
            .with_label_values(&[via])
            .inc();
        self.escalation
            .time_to_acknowledge
            .with_label_values(&[policy])
            .observe(after.as_secs_f64());
    }

    pub fn alertmanager_error(&self, operation: &str) {
        self.escalation
            .alertmanager_errors
            .with_label_values(&[operation])
            .inc();
    }

    /// A heartbeat at `at_millis`; the gauge never goes back.
    pub fn watchdog_seen(&self, at_millis: u64) {
        let gauge = &self.service.watchdog_last_seen;
        gauge.set(gauge.get().max(at_millis as f64 / 1000.0));
    }

    pub fn watchdog_silent(&self, silent: bool) {
        self.service.watchdog_silent.set(i64::from(silent));
    }

    pub fn credentials_valid(&self, valid: bool) {
        self.service.sipgate_credentials_valid.set(i64::from(valid));
    }

    /// Marks a config load; the timestamp only moves on success, as in Prometheus and Alertmanager.
    pub fn config_loaded(&self, success: bool) {
        self.service
            .config_last_reload_successful
            .set(i64::from(success));
        if success {
            self.service
                .config_last_reload_success_timestamp
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which this registry cannot hold.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Calls `each` with every family and label set that `route` has series in.
fn for_each_series(
    metrics: &Metrics,
    route: &Route,
    mut each: impl FnMut(&IntCounterVec, &[&str]),
) {
    let name = route.name.as_str();
    each(&metrics.sms.segments, &[name]);
    each(&metrics.sms.dry_run, &[name]);
    for recipient in &route.may_page {
        each(&metrics.sms.sent, &[name, recipient]);
    }
    for reason in FailureReason::ALL {
        each(&metrics.sms.failed, &[name, reason.as_str()]);
    }
    for reason in SuppressReason::OF_ROUTES {
        each(&metrics.sms.suppressed, &[name, reason.as_str()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_prefixed_families_and_process_metrics() {
        let m = Metrics::new().unwrap();
        m.sms_sent("critical", "alice", 1);
        m.config_loaded(true);
        let text = m.render();
        assert!(text.contains(
            "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"critical\"} 1"
        ));
        assert!(text.contains("alertmanager_sipgate_config_last_reload_successful 1"));
        assert!(text.contains("alertmanager_sipgate_build_info{revision="));
        assert!(text.contains("\nprocess_resident_memory_bytes "));
    }

    fn routes(yaml: &str) -> Vec<Route> {
        let config = crate::config::Config::from_yaml(
            yaml,
            std::path::Path::new("t.yml"),
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap();
        config.routes
    }

    #[test]
    fn a_reload_removes_the_series_of_what_it_removed() {
        let book = "recipients: {alice: \"+4915228817386\", bob: \"+4915254599371\"}\n";
        let before = routes(&format!(
            "{book}routes: [{{name: a, to: [alice, bob]}}, {{name: b, to: [bob]}}]"
        ));
        let after = routes(&format!("{book}routes: [{{name: a, to: [alice]}}]"));
        let m = Metrics::new().unwrap();
        m.initialize(&before);
        m.sms_sent("b", "bob", 1);
        let text = m.render();
        assert!(text.contains(r#"sms_sent_total{recipient="bob",route="b"} 1"#));
        assert!(text.contains(r#"sms_sent_total{recipient="bob",route="a"} 0"#));

        m.routes_changed(&before, &after);
        let text = m.render();
        assert!(!text.contains(r#"route="b""#), "{text}");
        assert!(!text.contains(r#"recipient="bob""#), "{text}");
        assert!(text.contains(r#"sms_sent_total{recipient="alice",route="a"} 0"#));
        assert!(text.contains(r#"sms_failed_total{reason="auth",route="a"} 0"#));
    }
}
