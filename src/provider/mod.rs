//! Where SMS go: the `SmsProvider` seam. The Sipgate client and dry-run sit behind it; nothing
//! outside this module knows which one it talks to.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::config::SipgateConfig;
use crate::model::outcome::FailureReason;
use crate::text::compose::Sms;

pub mod dry_run;
pub mod sipgate;

pub use dry_run::DryRun;
pub use sipgate::SipgateClient;

/// The provider a config asks for: Sipgate with its credentials, or dry-run without them (or
/// when `force_dry_run`).
pub fn from_config(
    config: &SipgateConfig,
    force_dry_run: bool,
) -> Result<Arc<dyn SmsProvider>, sipgate::ClientError> {
    Ok(match (&config.credentials, force_dry_run) {
        (Some(credentials), false) => Arc::new(SipgateClient::new(config, credentials)?),
        _ => Arc::new(DryRun),
    })
}

/// One SMS service. `send` delivers one text to one phone-book entry; the delivery rules
/// (retries, deadline, hold-off, ledger) are the caller's.
pub trait SmsProvider: fmt::Debug + Send + Sync {
    /// For logs.
    fn name(&self) -> &'static str;

    /// Whether a send leaves this process. One that does can outlive the request that started
    /// it and a shutdown, so it runs where both can wait for it; one that does not (dry-run)
    /// runs right where it is asked for.
    fn leaves_the_process(&self) -> bool;

    /// Sends `text` (the SMS's own text, or it with a note in front) to the SMS's recipient.
    fn send<'a>(&'a self, sms: &'a Sms, text: &'a str) -> BoxFuture<'a, Result<Sent, SendError>>;

    /// Whether there are credentials to check with the service (`check_credentials`).
    fn has_credentials(&self) -> bool;

    /// Asks the service whether the configured credentials can send.
    fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck>;

    /// What the operator has to do about a failure, in this service's terms.
    fn operator_hint(&self, reason: FailureReason) -> &'static str;
}

/// What a successful send was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The service accepted the SMS.
    Accepted,
    /// Nothing was sent on purpose: the SMS was only logged (dry-run).
    Logged,
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
