//! The running service's state: the loaded config with its provider, swapped as one unit on a
//! reload (`reload`), and what outlives a reload (the deliverer, the metrics).

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::Deliverer;
use crate::metrics::Metrics;
use crate::provider::sipgate::ClientError;
use crate::provider::{self, CredentialCheck, Outlet};
use crate::watchdog::heartbeat::Heartbeats;

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
    pub(crate) fn carry_over(&self, previous: &Credentials) {
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

pub struct AppState {
    live: ArcSwap<Live>,
    /// Whose time decides who is on call, what is muted and who is in quiet hours.
    pub clock: Arc<dyn Clock>,
    pub deliverer: Deliverer,
    pub metrics: Metrics,
    /// The last heartbeat, which the pipeline records and the watchdog's job reads.
    pub heartbeats: Arc<Heartbeats>,
    force_dry_run: bool,
    /// One reload at a time, so that two cannot interleave their swaps.
    reloading: Mutex<()>,
    /// Wakes the background jobs after a reload.
    pub reloaded: Arc<tokio::sync::Notify>,
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
        let heartbeats = Arc::new(Heartbeats::new(deliverer.store().clone(), metrics.clone()));
        AppState {
            live: ArcSwap::from_pointee(live),
            clock,
            deliverer,
            metrics,
            heartbeats,
            force_dry_run,
            reloading: Mutex::new(()),
            reloaded: Default::default(),
        }
    }

    /// The config a request runs on from start to end, even if a reload swaps it meanwhile.
    pub fn current(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Whether `--dry-run` forces dry-run whatever the config says (also after a reload).
    pub fn force_dry_run(&self) -> bool {
        self.force_dry_run
    }

    /// Holds off any other reload until dropped, so that two cannot interleave their swaps.
    pub(crate) fn one_reload_at_a_time(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reloading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `live` the config of the next requests; those in flight finish on theirs.
    pub(crate) fn replace(&self, live: Arc<Live>) {
        self.live.store(live);
    }
}
