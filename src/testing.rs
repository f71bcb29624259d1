//! Fakes and wiring shared by the unit tests of several modules: one recording provider and
//! one fixture of the service's pieces, instead of a copy in each module.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::alertmanager::Alertmanager;
use crate::config::Config;
use crate::delivery::Deliverer;
use crate::live::{Credentials, Live};
use crate::metrics::Metrics;
use crate::model::phone::PhoneNumber;
use crate::pipeline::{Report, run};
use crate::provider::{CredentialCheck, Outlet, SendError, SmsProvider};
use crate::state::StateStore;
use crate::state::monitored::Monitored;
use crate::watchdog::heartbeat::Heartbeats;

/// Accepts every SMS, except to the numbers it is told to refuse, and records (number, text)
/// of each it accepted, in order.
#[derive(Debug, Default)]
pub struct Recording {
    sent: Mutex<Vec<(String, String)>>,
    refused: Mutex<Vec<String>>,
}

impl Recording {
    pub fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().unwrap().clone()
    }

    /// From now on refuses every SMS to `number` (E.164) as Sipgate refuses a bad number.
    pub fn refuse(&self, number: &str) {
        self.refused.lock().unwrap().push(number.to_string());
    }
}

impl SmsProvider for Recording {
    fn send<'a>(
        &'a self,
        to: &'a PhoneNumber,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        if self.refused.lock().unwrap().iter().any(|n| n == to.e164()) {
            return std::future::ready(Err(SendError::Rejected {
                provider: "Recording",
                status: 400,
                reason: crate::model::outcome::FailureReason::ClientError,
                hint: "refused by the test",
                retry_after: None,
                account_wide: false,
                body: String::new(),
            }))
            .boxed();
        }
        let sent = (to.e164().to_string(), text.to_string());
        self.sent.lock().unwrap().push(sent);
        std::future::ready(Ok(())).boxed()
    }
    fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck> {
        std::future::ready(CredentialCheck::Valid).boxed()
    }
}

/// The service's pieces around one store: what `run` needs, and the fake provider.
pub struct Fixture {
    pub live: Live,
    pub deliverer: Deliverer,
    pub metrics: Metrics,
    pub heartbeats: Heartbeats,
    pub provider: Arc<Recording>,
}

impl Fixture {
    /// The service on config `yaml` and `store` (watched as the service watches it).
    pub fn on(yaml: &str, store: Arc<dyn StateStore>) -> Fixture {
        let config = Config::from_yaml(
            yaml,
            std::path::Path::new("t.yml"),
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap();
        let metrics = Metrics::new().unwrap();
        let provider = Arc::new(Recording::default());
        let store: Arc<dyn StateStore> = Arc::new(Monitored::new(store, metrics.clone()));
        // As `Live::new` builds it: an `alertmanager:` section in `yaml` is a client of it.
        let alertmanager = config
            .alertmanager
            .as_ref()
            .map(|am| Alertmanager::new(am).unwrap());
        Fixture {
            live: Live {
                outlet: Outlet::Provider {
                    name: "Recording",
                    provider: provider.clone(),
                },
                credentials: Credentials::new(false),
                config,
                alertmanager,
            },
            heartbeats: Heartbeats::new(store.clone(), metrics.clone()),
            deliverer: Deliverer::new(
                store,
                8,
                100,
                Handle::current(),
                metrics.clone(),
                Arc::new(crate::clock::TokioClock::new()),
            ),
            metrics,
            provider,
        }
    }

    /// Handles an Alertmanager body at `now` (RFC 3339).
    pub async fn run(&self, body: &str, now: &str) -> Report {
        let notification = crate::ingest::parse_alertmanager(body.as_bytes()).unwrap();
        run(
            &self.live,
            &self.deliverer,
            &self.metrics,
            &self.heartbeats,
            notification,
            Instant::now(),
            now.parse().unwrap(),
        )
        .await
    }

    /// The non-zero series of `sms_suppressed_total`, sorted.
    pub fn suppressed(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("alertmanager_sipgate_sms_suppressed_total"))
            .filter(|l| !l.ends_with(" 0"))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }
}
