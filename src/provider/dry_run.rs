//! Dry-run: every SMS is rendered and logged, none is sent. What runs without credentials.

use futures_util::future::{BoxFuture, FutureExt};

use super::{CredentialCheck, SendError, Sent, SmsProvider};
use crate::model::outcome::FailureReason;
use crate::text::compose::Sms;

#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun;

impl SmsProvider for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn leaves_the_process(&self) -> bool {
        false
    }

    fn send<'a>(&'a self, sms: &'a Sms, text: &'a str) -> BoxFuture<'a, Result<Sent, SendError>> {
        tracing::info!(
            route = %sms.route,
            recipient = %sms.recipient,
            text = %text,
            "dry-run: SMS not sent"
        );
        std::future::ready(Ok(Sent::Logged)).boxed()
    }

    fn has_credentials(&self) -> bool {
        false
    }

    fn check_credentials(&self) -> BoxFuture<'_, CredentialCheck> {
        std::future::ready(CredentialCheck::Valid).boxed()
    }

    fn operator_hint(&self, _: FailureReason) -> &'static str {
        "nothing is sent in dry-run mode"
    }
}
