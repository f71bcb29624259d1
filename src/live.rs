//! A loaded config with where its SMS go and what Sipgate said of its credentials: what a request
//! or a background job runs on from start to end, swapped as one unit by a reload.

use std::sync::Mutex;

use crate::alertmanager::Alertmanager;
use crate::config::Config;
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
    /// Where SMS go: the provider built from the config, or dry-run.
    pub outlet: Outlet,
    pub credentials: Credentials,
    /// The client of `alertmanager.urls`, for silences and the alerts of open incidents.
    pub alertmanager: Option<Alertmanager>,
}

impl Live {
    /// Whether silences can be made and alerts watched.
    pub fn alertmanager_configured(&self) -> bool {
        self.alertmanager.is_some()
    }

    pub fn new(config: Config, force_dry_run: bool) -> Result<Live, ClientError> {
        let outlet = provider::from_config(&config.sipgate, force_dry_run)?;
        // Only a provider has credentials to check.
        let credentials =
            Credentials::new(!outlet.is_dry_run() && config.sipgate.check_credentials);
        // The config checked the URLs and read the CA; what is left to fail is the TLS setup,
        // and pages go out without Alertmanager as they do while it is down.
        let alertmanager = config.alertmanager.as_ref().and_then(|am| {
            Alertmanager::new(am)
                .inspect_err(|e| tracing::error!(error = %e, "Alertmanager client not built; acknowledgements make no silences and resolved alerts are not watched"))
                .ok()
        });
        Ok(Live {
            config,
            outlet,
            credentials,
            alertmanager,
        })
    }

    /// Whether SMS are only logged.
    pub fn is_dry_run(&self) -> bool {
        self.outlet.is_dry_run()
    }
}
