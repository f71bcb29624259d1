//! Sends composed SMS and reports one outcome per SMS; the caller's HTTP answer is built from these.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::compose::Sms;
use crate::metrics::Metrics;
use crate::sipgate::{FailureReason, SendError, SipgateClient};

/// Where SMS go: Sipgate, or the log when running dry.
#[derive(Debug, Clone)]
pub enum Sender {
    Sipgate(SipgateClient),
    DryRun,
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
    NoRoute,
    SendResolved,
}

impl SuppressReason {
    pub fn as_str(self) -> &'static str {
        match self {
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

pub struct Deliverer {
    sender: Sender,
    in_flight: Arc<Semaphore>,
    metrics: Metrics,
}

impl Deliverer {
    pub fn new(sender: Sender, max_concurrency: usize, metrics: Metrics) -> Self {
        Deliverer {
            sender,
            in_flight: Arc::new(Semaphore::new(max_concurrency)),
            metrics,
        }
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.sender, Sender::DryRun)
    }

    pub async fn deliver(&self, messages: Vec<Sms>) -> Vec<SmsReport> {
        join_all(messages.iter().map(|sms| self.deliver_one(sms))).await
    }

    async fn deliver_one(&self, sms: &Sms) -> SmsReport {
        let report = |outcome, reason: Option<FailureReason>| SmsReport {
            route: sms.route.clone(),
            recipient: sms.recipient.clone(),
            outcome,
            reason: reason.map(FailureReason::as_str),
            segments: sms.size.segments,
        };
        let client = match &self.sender {
            Sender::DryRun => {
                tracing::info!(
                    route = %sms.route,
                    recipient = %sms.recipient,
                    segments = sms.size.segments,
                    encoding = %sms.size.encoding,
                    text = %sms.text,
                    "dry-run: SMS not sent"
                );
                return report(Outcome::DryRun, None);
            }
            Sender::Sipgate(client) => client,
        };
        let result = match self.in_flight.acquire().await {
            Ok(_permit) => {
                let started = Instant::now();
                let result = client.send_sms(&sms.number, &sms.text).await;
                self.metrics
                    .sipgate_request_duration
                    .observe(started.elapsed().as_secs_f64());
                result
            }
            Err(_) => Err(SendError::Network("sender is shutting down".to_string())),
        };
        match result {
            Ok(()) => {
                self.metrics
                    .sms_sent
                    .with_label_values(&[&sms.route, &sms.recipient])
                    .inc();
                self.metrics
                    .sms_segments
                    .with_label_values(&[&sms.route])
                    .inc_by(sms.size.segments as u64);
                tracing::info!(
                    route = %sms.route,
                    recipient = %sms.recipient,
                    number = %sms.number,
                    segments = sms.size.segments,
                    "SMS accepted by Sipgate"
                );
                report(Outcome::Sent, None)
            }
            Err(e) => {
                let reason = e.reason();
                self.metrics
                    .sms_failed
                    .with_label_values(&[&sms.route, reason.as_str()])
                    .inc();
                log_failure(sms, &e);
                report(Outcome::Failed, Some(reason))
            }
        }
    }
}

fn log_failure(sms: &Sms, error: &SendError) {
    let reason = error.reason();
    let body = match error {
        SendError::Rejected { body, .. } => body.as_str(),
        _ => "",
    };
    if reason.is_permanent() {
        tracing::error!(
            route = %sms.route,
            recipient = %sms.recipient,
            reason = reason.as_str(),
            sipgate_body = body,
            error = %error,
            "SMS not delivered; operator action needed"
        );
    } else {
        tracing::warn!(
            route = %sms.route,
            recipient = %sms.recipient,
            reason = reason.as_str(),
            sipgate_body = body,
            error = %error,
            "SMS not delivered"
        );
    }
}
