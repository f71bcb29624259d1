//! Alertmanager's API v2, as the escalation asks it: silences made, renewed and expired for an
//! acknowledgement, and the alerts of an open incident watched, since a silenced group gets no
//! resolved notification (Alertmanager issue #226).
//!
//! The members of one cluster share silences by gossip, so any one of them will do: they are
//! asked in turn, from the one that answered last, until one answers (`transport`).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};

use crate::config::AlertmanagerConfig;

mod filter;
mod transport;
mod wire;

use transport::{Reply, Request, Transport};

/// A client of one Alertmanager cluster; cheap to clone, every clone shares which member
/// answered last.
#[derive(Clone)]
pub struct Alertmanager {
    transport: Transport,
}

impl fmt::Debug for Alertmanager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alertmanager")
            .field("urls", &self.transport.urls())
            .finish_non_exhaustive()
    }
}

/// A silence to create (`id` none) or to update (`id` some): equality matchers only, in the
/// same order at every update (Alertmanager replaces a silence whose matchers changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub id: Option<String>,
    pub matchers: Vec<(String, String)>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

/// An alert Alertmanager holds, and what mutes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertState {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// Ids of the silences that silence it.
    pub silenced_by: Vec<String>,
    /// Fingerprints of the alerts that inhibit it.
    pub inhibited_by: Vec<String>,
    /// `active`, `suppressed` (silenced or inhibited) or `unprocessed`.
    pub state: String,
}

/// A silence that is active now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceState {
    pub id: String,
    pub created_by: String,
    pub comment: String,
    pub ends_at: DateTime<Utc>,
}

/// What went wrong; messages name the member's host:port and the status or cause, never
/// credentials and never label values (they may be anything an alert carries).
#[derive(Debug, thiserror::Error)]
pub enum AlertmanagerError {
    #[error("cannot build the Alertmanager client: {0}")]
    Build(String),
    /// Refused before anything was sent.
    #[error("invalid Alertmanager request: {0}")]
    InvalidRequest(String),
    /// Every member failed with a connect error, a timeout or a 5xx: worth asking again later.
    #[error("no Alertmanager answered: {}", FailureList(.failures))]
    Unavailable { failures: Vec<Failure> },
    /// A 4xx (or a redirect): asking another member or again would get the same.
    #[error("Alertmanager at {host} refused {request}: HTTP {status}")]
    Refused {
        host: String,
        request: &'static str,
        status: u16,
    },
    #[error("Alertmanager at {host} answered {request} with more than {limit} bytes")]
    TooLarge {
        host: String,
        request: &'static str,
        limit: usize,
    },
    #[error("Alertmanager at {host} answered {request} with what is not its API v2: {cause}")]
    InvalidAnswer {
        host: String,
        request: &'static str,
        cause: String,
    },
}

impl AlertmanagerError {
    /// Whether asking again later may succeed (no member could be asked), as opposed to an
    /// answer that will stay the same.
    pub fn is_temporary(&self) -> bool {
        matches!(self, AlertmanagerError::Unavailable { .. })
    }
}

/// Why one member gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `host:port` of the member.
    pub host: String,
    pub cause: FailureCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCause {
    /// No answer within `alertmanager.timeout`.
    Timeout,
    /// Could not connect, or the connection broke.
    Unreachable(String),
    /// A 5xx.
    Status(u16),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            FailureCause::Timeout => {
                write!(f, "{}: no answer within alertmanager.timeout", self.host)
            }
            FailureCause::Unreachable(cause) => write!(f, "{}: {cause}", self.host),
            FailureCause::Status(status) => write!(f, "{}: HTTP {status}", self.host),
        }
    }
}

struct FailureList<'a>(&'a [Failure]);

impl fmt::Display for FailureList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

const POST_SILENCES: &str = "POST /api/v2/silences";
const DELETE_SILENCE: &str = "DELETE /api/v2/silence/{id}";
const GET_SILENCE: &str = "GET /api/v2/silence/{id}";
const GET_ALERTS: &str = "GET /api/v2/alerts";
const GET_SILENCES: &str = "GET /api/v2/silences";

impl Alertmanager {
    pub fn new(config: &AlertmanagerConfig) -> Result<Self, AlertmanagerError> {
        Ok(Alertmanager {
            transport: Transport::new(config)?,
        })
    }

    /// Creates a silence (id None) or updates/extends one (Some(id)); Ok(the silence id
    /// Alertmanager answers, which may be a new one when the old had expired).
    ///
    /// An update keeps the start Alertmanager recorded (it moves a start in the past to the
    /// moment it made the silence, and would replace a silence whose start changed by a new
    /// one); `starts_at` counts only for a new silence. An id Alertmanager no longer knows
    /// (it forgets expired silences after its retention) is made anew.
    pub async fn silence(&self, silence: &Silence) -> Result<String, AlertmanagerError> {
        if silence.matchers.is_empty() {
            return Err(AlertmanagerError::InvalidRequest(
                "a silence needs at least one matcher".to_string(),
            ));
        }
        if silence.ends_at <= silence.starts_at {
            return Err(AlertmanagerError::InvalidRequest(
                "a silence must end after it starts".to_string(),
            ));
        }
        let Some(id) = silence.id.as_deref() else {
            return self.post_silence(silence, None, silence.starts_at).await;
        };
        let Some(starts_at) = self.start_of_current(id).await? else {
            return self.post_silence(silence, None, silence.starts_at).await;
        };
        match self.post_silence(silence, Some(id), starts_at).await {
            // Gone in between, or on a member that has not heard of it yet.
            Err(AlertmanagerError::Refused { status: 404, .. }) => {
                self.post_silence(silence, None, silence.starts_at).await
            }
            answer => answer,
        }
    }

    /// When the silence `id` starts as Alertmanager recorded it, unless it expired or is unknown.
    async fn start_of_current(&self, id: &str) -> Result<Option<DateTime<Utc>>, AlertmanagerError> {
        let request = Request::new(Method::GET, GET_SILENCE, "/api/v2/silence/").path_segment(id);
        let reply = self.transport.exchange(&request).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let silence: wire::GettableSilence = reply.success(&request)?.json(&request)?;
        Ok(silence.current_start())
    }

    async fn post_silence(
        &self,
        silence: &Silence,
        id: Option<&str>,
        starts_at: DateTime<Utc>,
    ) -> Result<String, AlertmanagerError> {
        let body = wire::PostableSilence::new(silence, id, starts_at);
        let body = serde_json::to_vec(&body)
            .map_err(|e| AlertmanagerError::InvalidRequest(format!("cannot encode: {e}")))?;
        let request = Request::new(Method::POST, POST_SILENCES, "/api/v2/silences").body(body);
        let reply = self.transport.exchange(&request).await?;
        let answer: wire::SilenceId = reply.success(&request)?.json(&request)?;
        Ok(answer.silence_id)
    }

    /// Expires a silence (DELETE /api/v2/silence/{id}); an unknown/already expired id is Ok.
    pub async fn expire_silence(&self, id: &str) -> Result<(), AlertmanagerError> {
        if id.is_empty() {
            return Err(AlertmanagerError::InvalidRequest(
                "the silence id is empty".to_string(),
            ));
        }
        let request = Request::new(Method::DELETE, DELETE_SILENCE, "/api/v2/silence/")
            .path_segment(id)
            // Alertmanager up to at least 0.25 says an unknown id with a 500; later ones with a 404.
            .answered_by(|status, body| {
                status == StatusCode::INTERNAL_SERVER_ERROR && wire::says_silence_not_found(body)
            });
        let reply = self.transport.exchange(&request).await?;
        if reply.status == StatusCode::NOT_FOUND || wire::says_silence_not_found(&reply.body) {
            return Ok(());
        }
        reply.success(&request).map(|_| ())
    }

    /// The alerts Alertmanager holds that match every (name, value) equality matcher, active,
    /// silenced and inhibited alike. Alerts whose endsAt is in the past are left out (they
    /// resolved).
    pub async fn alerts(
        &self,
        matchers: &[(String, String)],
    ) -> Result<Vec<AlertState>, AlertmanagerError> {
        self.alerts_at(matchers, Utc::now()).await
    }

    /// `alerts` as seen at `now`.
    pub async fn alerts_at(
        &self,
        matchers: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertState>, AlertmanagerError> {
        let mut request = Request::new(Method::GET, GET_ALERTS, "/api/v2/alerts");
        for (name, value) in matchers {
            request = request.query("filter", filter::equal(name, value)?);
        }
        for flag in ["active", "silenced", "inhibited"] {
            request = request.query(flag, "true".to_string());
        }
        let reply = self.transport.exchange(&request).await?;
        let alerts: Vec<wire::GettableAlert> = reply.success(&request)?.json(&request)?;
        Ok(wire::unresolved(alerts, now))
    }

    /// The silence ids that are active now, with createdBy, for telling ours from others.
    pub async fn active_silences(&self) -> Result<Vec<SilenceState>, AlertmanagerError> {
        let request = Request::new(Method::GET, GET_SILENCES, "/api/v2/silences");
        let reply = self.transport.exchange(&request).await?;
        let silences: Vec<wire::GettableSilence> = reply.success(&request)?.json(&request)?;
        Ok(wire::active(silences))
    }
}

impl Reply {
    /// The reply when it is a 2xx, else `Refused`.
    fn success(self, request: &Request) -> Result<Reply, AlertmanagerError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(AlertmanagerError::Refused {
                host: self.host,
                request: request.name,
                status: self.status.as_u16(),
            })
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        self,
        request: &Request,
    ) -> Result<T, AlertmanagerError> {
        serde_json::from_slice(&self.body).map_err(|e| AlertmanagerError::InvalidAnswer {
            host: self.host,
            request: request.name,
            // Only where and what kind: serde's message would quote the values (label values).
            cause: format!(
                "{} at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Data => "unexpected JSON",
                    serde_json::error::Category::Eof => "cut-off JSON",
                    serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                        "no JSON"
                    }
                },
                e.line(),
                e.column()
            ),
        })
    }
}
