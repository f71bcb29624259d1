//! The running service's state: the loaded config with its provider, swapped as one unit on a
//! reload, and what outlives a reload (the deliverer, the metrics).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::delivery::Deliverer;
use crate::metrics::Metrics;
use crate::provider::sipgate::ClientError;
use crate::provider::{self, CredentialCheck, Outlet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialStatus {
    /// Dry-run, or `sipgate.check_credentials: false`.
    NotChecked,
    /// No definite answer for this config yet. `verdict` is the last definite one, which after a
    /// reload may be the previous config's: it stands until Sipgate answers for this one, so
    /// that neither a reload nor a failed check makes a ready service unready by itself.
    /// `unknown` is why the last try got no answer.
    Checking {
        verdict: Option<CredentialCheck>,
        unknown: Option<String>,
    },
    /// A definite answer (never `Unknown`).
    Checked(CredentialCheck),
}

impl CredentialStatus {
    /// The last definite answer, of this config or the one before.
    pub fn verdict(&self) -> Option<&CredentialCheck> {
        match self {
            CredentialStatus::NotChecked => None,
            CredentialStatus::Checking { verdict, .. } => verdict.as_ref(),
            CredentialStatus::Checked(check) => Some(check),
        }
    }

    /// The status after `check`: a definite answer replaces the verdict, an `Unknown` one is
    /// only noted beside it.
    pub fn answered(&self, check: CredentialCheck) -> CredentialStatus {
        match check {
            CredentialCheck::Unknown(why) => CredentialStatus::Checking {
                verdict: self.verdict().cloned(),
                unknown: Some(why),
            },
            definite => CredentialStatus::Checked(definite),
        }
    }
}

/// The credential status of one loaded config; a reload starts from `Checking` with the
/// previous config's verdict.
#[derive(Debug)]
pub struct Credentials(Mutex<CredentialStatus>);

impl Credentials {
    /// `check`: the provider has credentials and the config asks for them to be checked.
    pub fn new(check: bool) -> Self {
        Credentials(Mutex::new(if check {
            CredentialStatus::Checking {
                verdict: None,
                unknown: None,
            }
        } else {
            CredentialStatus::NotChecked
        }))
    }

    pub fn status(&self) -> CredentialStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set(&self, status: CredentialStatus) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// Takes over the verdict of the config this one replaces, while its own check runs.
    ///
    /// Always, also when the token or api_url changed: a reload changes neither the network
    /// nor Sipgate, wrong new credentials get a definite refusal from the first check, and
    /// credentials are usually rotated on every replica at once, so starting from "checking"
    /// would take them all out of the load balancer together.
    fn carry_over(&self, previous: &Credentials) {
        let mut status = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let CredentialStatus::Checking { verdict, .. } = &mut *status {
            *verdict = previous.status().verdict().cloned();
        }
    }
}

/// A loaded config with where its SMS go; swapped as one unit.
pub struct Live {
    pub config: Config,
    /// The provider built from the config, or dry-run.
    pub provider: Outlet,
    pub credentials: Credentials,
}

impl Live {
    pub fn new(config: Config, force_dry_run: bool) -> Result<Live, ClientError> {
        let provider = provider::from_config(&config.sipgate, force_dry_run)?;
        // Only a provider has credentials to check.
        let credentials =
            Credentials::new(!provider.is_dry_run() && config.sipgate.check_credentials);
        Ok(Live {
            config,
            provider,
            credentials,
        })
    }

    /// Whether SMS are only logged.
    pub fn is_dry_run(&self) -> bool {
        self.provider.is_dry_run()
    }
}

/// Why a reload kept the running config.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(ConfigError),
    #[error("{0}")]
    Other(String),
}

impl ReloadError {
    /// One line for the failure and, for a config with problems, one line for each of them:
    /// escaped into a single field, a list of problems is a wall of `\n`.
    fn log(&self) {
        const FAILED: &str = "config reload failed; keeping the running config";
        match self {
            ReloadError::Config(config) => config.log(FAILED),
            other => tracing::error!(error = %other, "{FAILED}"),
        }
    }
}

pub struct AppState {
    live: ArcSwap<Live>,
    /// Whose time decides who is on call, what is muted and who is in quiet hours.
    pub clock: Arc<dyn Clock>,
    pub deliverer: Deliverer,
    pub metrics: Metrics,
    force_dry_run: bool,
    /// One reload at a time, so that two cannot interleave their swaps.
    reloading: Mutex<()>,
    /// Wakes what follows the config (the shift task) after a reload.
    pub reloaded: tokio::sync::Notify,
    /// Keeps a flood of refused requests from flooding the log.
    pub refusal_log: crate::http::auth::RefusalLog,
}

impl AppState {
    pub fn new(
        live: Live,
        deliverer: Deliverer,
        metrics: Metrics,
        force_dry_run: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        metrics.initialize(&live.config.routes);
        AppState {
            live: ArcSwap::from_pointee(live),
            clock,
            deliverer,
            metrics,
            force_dry_run,
            reloading: Mutex::new(()),
            reloaded: tokio::sync::Notify::new(),
            refusal_log: Default::default(),
        }
    }

    /// The config a request runs on from start to end, even if a reload swaps it meanwhile.
    pub fn current(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Reads the config file and templates again. On success the next requests use them while
    /// those in flight finish on the old ones; on failure the old config stays and the error is
    /// returned. The caller starts the credential check of the new config.
    pub fn reload(&self) -> Result<Arc<Live>, String> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.current();
        let loaded = Config::load(&old.config.path)
            .map_err(ReloadError::Config)
            .and_then(|config| {
                Live::new(config, self.force_dry_run).map_err(|e| ReloadError::Other(e.to_string()))
            });
        let loaded = loaded.and_then(|live| {
            match live.config.state.changed_from(&old.config.state) {
                None => Ok(live),
                Some(field) => Err(ReloadError::Other(format!(
                    "{field}: the state store changed ({} before, {} now); it is opened once, at \
                 start: restart to apply it",
                    old.config.state.backend(),
                    live.config.state.backend()
                ))),
            }
        });
        let live = match loaded {
            Ok(live) => {
                live.credentials.carry_over(&old.credentials);
                Arc::new(live)
            }
            Err(e) => {
                self.metrics.config_loaded(false);
                e.log();
                return Err(e.to_string());
            }
        };
        let (old_delivery, new_delivery) = (&old.config.delivery, &live.config.delivery);
        if (old_delivery.max_concurrency, old_delivery.max_pending)
            != (new_delivery.max_concurrency, new_delivery.max_pending)
        {
            tracing::warn!(
                "delivery.max_concurrency and delivery.max_pending take effect at the next start"
            );
        }
        if old.config.server.auth.is_some() && live.config.server.auth.is_none() {
            tracing::warn!(
                "the reloaded config has no server.auth: anyone who can reach the service can \
                 make it send SMS"
            );
        }
        self.metrics
            .routes_changed(&old.config.routes, &live.config.routes);
        self.live.store(live.clone());
        self.metrics.schedules_changed();
        // A permit, so that a task busy at this moment looks again right after.
        self.reloaded.notify_one();
        // A new token or account may have fixed what the hold-off waits for.
        self.deliverer.clear_holdoff();
        self.metrics.config_loaded(true);
        tracing::info!(
            config = %live.config.path.display(),
            routes = live.config.routes.len(),
            recipients = live.config.recipients.len(),
            "config reloaded"
        );
        Ok(live)
    }
}
