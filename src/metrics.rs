//! The service's own Prometheus metrics. Label values are route names, phone-book names and bounded
//! reasons only: never numbers, alert names or label values from alerts.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::outcome::{FailureReason, SuppressReason};

const NAMESPACE: &str = "alertmanager_sipgate";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub alerts_received: IntCounterVec,
    pub sms_sent: IntCounterVec,
    pub sms_failed: IntCounterVec,
    pub sms_suppressed: IntCounterVec,
    pub sms_segments: IntCounterVec,
    pub sms_dry_run: IntCounterVec,
    pub sipgate_request_duration: Histogram,
    pub input_truncated: IntCounterVec,
    pub panics: prometheus::IntCounter,
    pub config_last_reload_successful: IntGauge,
    pub sipgate_credentials_valid: IntGauge,
    pub config_last_reload_success_timestamp: Gauge,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
                let c = IntCounterVec::new(opts(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let requests = counter(
            "requests_total",
            "Inbound HTTP requests by endpoint and status code.",
            &["endpoint", "code"],
        )?;
        let alerts_received = counter(
            "alerts_received_total",
            "Alerts in notifications that parsed, by alert status.",
            &["status"],
        )?;
        let sms_sent = counter(
            "sms_sent_total",
            "SMS accepted by Sipgate, by route and phone-book name.",
            &["route", "recipient"],
        )?;
        let sms_failed = counter(
            "sms_failed_total",
            "SMS not delivered when a notification was answered, by route and reason.",
            &["route", "reason"],
        )?;
        let sms_suppressed = counter(
            "sms_suppressed_total",
            "SMS held back on purpose, by route and reason.",
            &["route", "reason"],
        )?;
        let sms_segments = counter(
            "sms_segments_total",
            "Billed SMS segments accepted by Sipgate, by route.",
            &["route"],
        )?;
        let sms_dry_run = counter(
            "sms_dry_run_total",
            "SMS logged instead of sent because the service runs in dry-run mode, by route.",
            &["route"],
        )?;
        let input_truncated = counter(
            "input_truncated_total",
            "Parts of notifications cut by the input limits: alerts over server.max_alerts, overlong values.",
            &["what"],
        )?;
        let panics = prometheus::IntCounter::with_opts(opts(
            "panics_total",
            "Requests that hit a bug and were answered 500; the process lived on.",
        ))?;
        registry.register(Box::new(panics.clone()))?;
        let sipgate_request_duration = Histogram::with_opts(
            HistogramOpts::new(
                "sipgate_request_duration_seconds",
                "Duration of Sipgate API requests.",
            )
            .namespace(NAMESPACE)
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        registry.register(Box::new(sipgate_request_duration.clone()))?;
        let config_last_reload_successful = IntGauge::with_opts(opts(
            "config_last_reload_successful",
            "Whether the last configuration load succeeded.",
        ))?;
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        let config_last_reload_success_timestamp = Gauge::with_opts(opts(
            "config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration load.",
        ))?;
        registry.register(Box::new(config_last_reload_success_timestamp.clone()))?;
        let sipgate_credentials_valid = IntGauge::with_opts(opts(
            "sipgate_credentials_valid",
            "Whether Sipgate accepted the token and SMS extension at the last check (1) or refused them (0).",
        ))?;
        registry.register(Box::new(sipgate_credentials_valid.clone()))?;
        let build_info = IntGaugeVec::new(
            opts("build_info", "Build information; the value is always 1."),
            &["version", "revision"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("ALERTMANAGER_SIPGATE_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            alerts_received,
            sms_sent,
            sms_failed,
            sms_suppressed,
            sms_segments,
            sms_dry_run,
            sipgate_request_duration,
            input_truncated,
            panics,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
            sipgate_credentials_valid,
        })
    }

    /// Creates every series a config can produce, at zero, so that rate() and increase() see the
    /// first event after a start instead of a series appearing at 1.
    pub fn initialize(&self, routes: &[crate::config::Route]) {
        for status in ["firing", "resolved"] {
            self.alerts_received.with_label_values(&[status]);
        }
        for what in ["alerts", "values"] {
            self.input_truncated.with_label_values(&[what]);
        }
        self.sms_suppressed
            .with_label_values(&["", SuppressReason::NoRoute.as_str()]);
        for route in routes {
            let name = route.name.as_str();
            self.sms_segments.with_label_values(&[name]);
            self.sms_dry_run.with_label_values(&[name]);
            for recipient in &route.recipients {
                self.sms_sent.with_label_values(&[name, recipient]);
            }
            for reason in FailureReason::ALL {
                self.sms_failed.with_label_values(&[name, reason.as_str()]);
            }
            for reason in SuppressReason::OF_ROUTES {
                self.sms_suppressed
                    .with_label_values(&[name, reason.as_str()]);
            }
        }
    }

    /// Marks a config load; the timestamp only moves on success, as in Prometheus and Alertmanager.
    pub fn config_loaded(&self, success: bool) {
        self.config_last_reload_successful.set(i64::from(success));
        if success {
            self.config_last_reload_success_timestamp
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_prefixed_families_and_process_metrics() {
        let m = Metrics::new().unwrap();
        m.sms_sent.with_label_values(&["critical", "alice"]).inc();
        m.config_loaded(true);
        let text = m.render();
        assert!(text.contains(
            "alertmanager_sipgate_sms_sent_total{recipient=\"alice\",route=\"critical\"} 1"
        ));
        assert!(text.contains("alertmanager_sipgate_config_last_reload_successful 1"));
        assert!(text.contains("alertmanager_sipgate_build_info{revision="));
        assert!(text.contains("\nprocess_resident_memory_bytes "));
    }
}
