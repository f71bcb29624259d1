//! Where SMS go: the `SmsProvider` seam, and the choice between it and dry-run. A provider only
//! sends a text to a number and checks its credentials; whether anything is sent at all is the
//! `Outlet` a config is wired with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::SipgateConfig;
use crate::model::outcome::FailureReason;
use crate::model::phone::PhoneNumber;

pub mod sipgate;

pub use sipgate::SipgateClient;

/// Where the SMS of a loaded config go. Dry-run is no provider: nothing leaves the process, so
/// nothing can fail, be retried, outlive the request or need credentials; the delivery rules log
/// such an SMS themselves, and nobody has to ask a provider what kind it is.
#[derive(Debug, Clone)]
pub enum Outlet {
    /// Every SMS is rendered and logged, none is sent: `--dry-run`, or a config without
    /// Sipgate credentials.
    DryRun,
    /// SMS go out through `provider`, called `name` in messages about them.
    Provider {
        name: &'static str,
        provider: Arc<dyn SmsProvider>,
    },
}

impl Outlet {
    /// Whether SMS are only logged.
    pub fn is_dry_run(&self) -> bool {
        matches!(self, Outlet::DryRun)
    }
}

/// Where a config sends: Sipgate with its credentials, or dry-run without them (or when
/// `force_dry_run`).
pub fn from_config(
    config: &SipgateConfig,
    force_dry_run: bool,
) -> Result<Outlet, sipgate::ClientError> {
    Ok(match (&config.credentials, force_dry_run) {
        (Some(credentials), false) => Outlet::Provider {
            name: sipgate::NAME,
            provider: Arc::new(SipgateClient::new(config, credentials)?),
        },
        _ => Outlet::DryRun,
    })
}

/// One SMS service. The delivery rules (retries, deadline, hold-off, ledger) are the caller's.
pub trait SmsProvider: fmt::Debug + Send + Sync {
    /// Sends `text`, as it is, to `to`: `Ok` once the service accepted it.
    fn send<'a>(
        &'a self,
        to: &'a PhoneNumber,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>>;

    /// Asks the service whether the configured credentials can send.
    fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck>;
}

/// Why a provider could not send an SMS.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{provider} answered HTTP {status} ({}): {hint}", reason.as_str())]
    Rejected {
        provider: &'static str,
        status: u16,
        reason: FailureReason,
        hint: &'static str,
        retry_after: Option<Duration>,
        /// The answer concerns the account or the endpoint, not this one SMS: every other SMS
        /// would get the same answer.
        account_wide: bool,
        /// The start of the answer's body, for the log; error bodies are undocumented.
        body: String,
    },
    #[error("no answer from {provider} in time")]
    Timeout { provider: &'static str },
    #[error("cannot reach {provider}: {detail}")]
    Network {
        provider: &'static str,
        detail: String,
    },
}

impl SendError {
    /// The provider that answered (or did not), as messages name it.
    pub fn provider(&self) -> &'static str {
        match self {
            SendError::Rejected { provider, .. }
            | SendError::Timeout { provider }
            | SendError::Network { provider, .. } => provider,
        }
    }

    pub fn reason(&self) -> FailureReason {
        match self {
            SendError::Rejected { reason, .. } => *reason,
            SendError::Timeout { .. } => FailureReason::Timeout,
            SendError::Network { .. } => FailureReason::Network,
        }
    }

    pub fn affects_every_sms(&self) -> bool {
        matches!(
            self,
            SendError::Rejected {
                account_wide: true,
                ..
            }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Rejected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The start of the service's answer, if there was one.
    pub fn body(&self) -> &str {
        match self {
            SendError::Rejected { body, .. } => body,
            _ => "",
        }
    }
}

/// What the service says about the configured credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    /// The credentials work.
    Valid,
    /// The credentials could only partly be confirmed (a missing read scope, say); sending may
    /// still work: a warning, not a failure.
    Unverifiable(String),
    /// The service refused them: no SMS can go out.
    Rejected(String),
    /// The service could not be asked (network, 5xx): try again later.
    Unknown(String),
}

impl CredentialCheck {
    /// The same answer with its text changed by `change`.
    pub fn map_text(self, change: impl FnOnce(String) -> String) -> Self {
        match self {
            CredentialCheck::Valid => CredentialCheck::Valid,
            CredentialCheck::Unverifiable(text) => CredentialCheck::Unverifiable(change(text)),
            CredentialCheck::Rejected(text) => CredentialCheck::Rejected(change(text)),
            CredentialCheck::Unknown(text) => CredentialCheck::Unknown(change(text)),
        }
    }

    /// Whether the service answered: everything but `Unknown`.
    pub fn is_definite(&self) -> bool {
        !matches!(self, CredentialCheck::Unknown(_))
    }

    /// Whether SMS can go out as far as this answer tells.
    pub fn allows_sending(&self) -> bool {
        matches!(
            self,
            CredentialCheck::Valid | CredentialCheck::Unverifiable(_)
        )
    }
}
