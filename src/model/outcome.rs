//! The bounded vocabulary every layer shares: what became of an SMS and why. These are metric
//! labels and words in the answer to the caller, so the sets are closed and each word is stable.

use serde::Serialize;

/// What became of one SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Sent,
    DryRun,
    Failed,
    Suppressed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::DryRun => "dry_run",
            Outcome::Failed => "failed",
            Outcome::Suppressed => "suppressed",
        }
    }
}

/// Why an SMS was held back on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    Duplicate,
    RateLimited,
    NoRoute,
    SendResolved,
    /// The route is outside its active or inside a mute time interval.
    Muted,
    /// The recipient's quiet hours, on a route that does not ignore them.
    QuietHours,
}

impl SuppressReason {
    /// The reasons a route can produce; `NoRoute` belongs to no route.
    pub const OF_ROUTES: [SuppressReason; 5] = [
        SuppressReason::Duplicate,
        SuppressReason::RateLimited,
        SuppressReason::SendResolved,
        SuppressReason::Muted,
        SuppressReason::QuietHours,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::Duplicate => "duplicate",
            SuppressReason::RateLimited => "rate_limited",
            SuppressReason::NoRoute => "no_route",
            SuppressReason::SendResolved => "send_resolved",
            SuppressReason::Muted => "muted",
            SuppressReason::QuietHours => "quiet_hours",
        }
    }
}

/// Why an SMS was not delivered, whichever provider was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The provider refused the credentials.
    Auth,
    /// The account cannot pay for it.
    Payment,
    /// The account may not send this way (extension, booking, scope).
    Forbidden,
    /// The request itself was refused.
    ClientError,
    /// The address answered with a redirect (3xx): not Sipgate's API, whose SMS endpoint never
    /// redirects, but a wrong `api_url`, a proxy or a captive portal in between. Following it
    /// could turn a login page's `200` into an SMS counted as sent.
    Redirect,
    ServerError,
    RateLimited,
    Timeout,
    Network,
    /// Too much work queued here to start this SMS before the response deadline.
    Overloaded,
}

impl FailureReason {
    pub const ALL: [FailureReason; 10] = [
        FailureReason::Auth,
        FailureReason::Payment,
        FailureReason::Forbidden,
        FailureReason::ClientError,
        FailureReason::Redirect,
        FailureReason::ServerError,
        FailureReason::RateLimited,
        FailureReason::Timeout,
        FailureReason::Network,
        FailureReason::Overloaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Auth => "auth",
            FailureReason::Payment => "payment",
            FailureReason::Forbidden => "forbidden",
            FailureReason::ClientError => "client_error",
            FailureReason::Redirect => "redirect",
            FailureReason::ServerError => "server_error",
            FailureReason::RateLimited => "rate_limited",
            FailureReason::Timeout => "timeout",
            FailureReason::Network => "network",
            FailureReason::Overloaded => "overloaded",
        }
    }

    /// Retrying cannot help until an operator acts (token, balance, booking, the address, a
    /// bug).
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            FailureReason::Auth
                | FailureReason::Payment
                | FailureReason::Forbidden
                | FailureReason::ClientError
                | FailureReason::Redirect
        )
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

    pub fn failed(route: &str, recipient: &str, reason: FailureReason, segments: usize) -> Self {
        SmsReport {
            route: route.to_string(),
            recipient: recipient.to_string(),
            outcome: Outcome::Failed,
            reason: Some(reason.as_str()),
            segments,
        }
    }
}
