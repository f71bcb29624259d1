//! The status page (`GET /`, behind `server.auth` as the API): who is on call and the next
//! handoffs, the open incidents, the last SMS this replica handled, and in plain words the health
//! of what the service depends on. A source that fails (the state store) leaves its section
//! saying so; the page itself is always answered.

use std::future::Future;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};

use super::incident::IncidentView;
use super::moment::Moment;
use super::{Layout, page};
use crate::app::{AppState, LastReload};
use crate::clock::Millis;
use crate::delivery::recent::{Handled, KEPT};
use crate::http::ApiError;
use crate::http::auth::Guarded;
use crate::live::{CredentialStatus, Live};
use crate::model::outcome::Outcome;
use crate::provider::CredentialCheck;
use crate::state::StateError;
use crate::text::plural::counted;

/// How long the page waits for the state store: past it, the sections that need the store say
/// so, and the rest is shown.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// Handoffs shown after the shift under way, as `/api/v1/oncall` shows them by default.
const HANDOFFS: usize = 3;

/// Incidents shown at most, the oldest first; `/api/v1/incidents` lists them all.
const INCIDENTS_SHOWN: usize = 50;

#[derive(Template)]
#[template(path = "web/status.html")]
struct StatusPage<'a> {
    layout: Layout,
    now: Moment,
    schedules: Vec<ScheduleLine<'a>>,
    /// The open incidents, or why they cannot be read.
    incidents: Result<Vec<IncidentView<'a>>, &'static str>,
    /// Open incidents not shown beyond `INCIDENTS_SHOWN`.
    more_incidents: usize,
    recent: Vec<SmsLine>,
    kept: usize,
    health: Health,
}

struct ScheduleLine<'a> {
    name: &'a str,
    on_call: &'a str,
    /// `None`: until further notice.
    until: Option<Moment>,
    next: Vec<Handoff<'a>>,
    time_zone: &'a str,
}

struct Handoff<'a> {
    at: Moment,
    who: &'a str,
}

/// One SMS of the ring: the person's name, never a number.
struct SmsLine {
    at: Moment,
    person: String,
    route: String,
    outcome: String,
    /// `2 segments`; none for one held back, which had none.
    segments: Option<String>,
    late: bool,
}

struct Health {
    /// `yes (sipgate, state: redis)` or `no: why`, as `/-/ready` says it.
    ready: String,
    store: String,
    watchdog: Option<WatchdogLine>,
    credentials: String,
    sending: &'static str,
    reload: Option<ReloadLine>,
    version: &'static str,
}

struct WatchdogLine {
    last: Option<Moment>,
    timeout: String,
}

struct ReloadLine {
    at: Moment,
    failed: Option<String>,
}

/// `GET /` and `HEAD /`.
pub async fn show(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let live = state.current();
    crate::http::authorize(&live, &request, Guarded::StatusPage)?;
    let now = state.clock.datetime();
    let escalation = crate::http::escalation(&state, &live);
    let store = state.deliverer.store();
    let (open_incidents, answers, last_heartbeat) = tokio::join!(
        within(escalation.open_incidents()),
        within(store.ping()),
        last_heartbeat(&state, &live),
    );
    let health = Health {
        ready: match crate::health::readiness(&state) {
            Ok(mode) => format!("yes ({mode})"),
            Err(why) => format!("no: {why}"),
        },
        store: match answers {
            Ok(()) => format!("{}, up", store.name()),
            Err(StateError::Unavailable(why)) => format!(
                "{}, down: {}; {}",
                store.name(),
                crate::redact::phone_numbers(&why),
                store.when_down()
            ),
        },
        watchdog: live.config.watchdog.as_ref().map(|watchdog| WatchdogLine {
            last: last_heartbeat.map(|at| Moment::utc_millis(at, now)),
            timeout: crate::text::duration::short(watchdog.timeout),
        }),
        credentials: credentials(live.credentials.status(), live.is_dry_run()),
        sending: sending(&live, state.force_dry_run()),
        reload: state
            .last_reload()
            .map(|LastReload { at, failed }| ReloadLine {
                at: Moment::utc_millis(at, now),
                failed,
            }),
        version: crate::version::LONG_VERSION,
    };
    let (incidents, more_incidents) = match &open_incidents {
        Ok(open) => (
            Ok(open
                .iter()
                .take(INCIDENTS_SHOWN)
                .map(|incident| IncidentView::of(incident, now))
                .collect()),
            open.len().saturating_sub(INCIDENTS_SHOWN),
        ),
        Err(_) => (Err("the state store does not answer"), 0),
    };
    Ok(page(
        StatusCode::OK,
        &StatusPage {
            layout: Layout {
                title: "Pager status".to_string(),
                root: "",
            },
            now: Moment::utc(now, now),
            schedules: schedules(&live, now),
            incidents,
            more_incidents,
            recent: state
                .deliverer
                .recent()
                .iter()
                .map(|handled| SmsLine::of(handled, now))
                .collect(),
            kept: KEPT,
            health,
        },
    ))
}

/// `asked`'s answer, or a failure once the store took `STORE_WAIT`.
async fn within<T>(asked: impl Future<Output = Result<T, StateError>>) -> Result<T, StateError> {
    tokio::time::timeout(STORE_WAIT, asked)
        .await
        .unwrap_or_else(|_| {
            Err(StateError::Unavailable(format!(
                "no answer within {}s",
                STORE_WAIT.as_secs()
            )))
        })
}

/// The last heartbeat any replica saw, or this replica's own while the store does not answer;
/// none without a watchdog.
async fn last_heartbeat(state: &AppState, live: &Live) -> Option<Millis> {
    live.config.watchdog.as_ref()?;
    let heartbeats = &state.heartbeats;
    tokio::time::timeout(STORE_WAIT, heartbeats.last())
        .await
        .unwrap_or_else(|_| heartbeats.last_here())
}

/// Each schedule: who is on call now, until when, and the next handoffs.
fn schedules(live: &Live, now: DateTime<Utc>) -> Vec<ScheduleLine<'_>> {
    live.config
        .schedules
        .values()
        .filter_map(|schedule| {
            let shifts = schedule.shifts(now, HANDOFFS);
            let (current, next) = shifts.split_first()?;
            Some(ScheduleLine {
                name: &schedule.name,
                on_call: current.who,
                until: current
                    .until
                    .map(|until| Moment::local(schedule, until, now)),
                next: next
                    .iter()
                    .map(|shift| Handoff {
                        at: Moment::local(schedule, shift.from, now),
                        who: shift.who,
                    })
                    .collect(),
                time_zone: schedule.time_zone.name(),
            })
        })
        .collect()
}

impl SmsLine {
    fn of(handled: &Handled, now: DateTime<Utc>) -> SmsLine {
        let report = &handled.report;
        let reason = report.reason.unwrap_or("unknown").replace('_', " ");
        SmsLine {
            at: Moment::utc_millis(handled.at, now),
            person: report.recipient.clone(),
            route: report.route.clone(),
            outcome: match report.outcome {
                Outcome::Sent => "sent".to_string(),
                Outcome::DryRun => "logged, not sent (dry-run)".to_string(),
                Outcome::Failed => format!("failed ({reason})"),
                Outcome::Suppressed => format!("held back ({reason})"),
            },
            segments: (report.outcome != Outcome::Suppressed)
                .then(|| counted(report.segments, "segment", "segments")),
            late: handled.late,
        }
    }
}

/// What Sipgate said of the credentials, in plain words.
fn credentials(status: CredentialStatus, dry_run: bool) -> String {
    let verdict = |check: &CredentialCheck| match check {
        CredentialCheck::Valid => "accepted by Sipgate".to_string(),
        CredentialCheck::Unverifiable(why) => format!("only partly verified: {why}"),
        CredentialCheck::Rejected(why) => format!("refused: {why}"),
        CredentialCheck::Unknown(why) => format!("not verified yet: {why}"),
    };
    match status {
        CredentialStatus::NotChecked if dry_run => "not checked (dry-run)".to_string(),
        CredentialStatus::NotChecked => {
            "not checked (sipgate.check_credentials is off)".to_string()
        }
        CredentialStatus::Checked(check) => verdict(&check),
        CredentialStatus::Checking {
            verdict: None,
            unknown: None,
        } => "being checked".to_string(),
        CredentialStatus::Checking {
            verdict: None,
            unknown: Some(why),
        } => format!("not verified yet: {why}"),
        CredentialStatus::Checking {
            verdict: Some(before),
            unknown,
        } => {
            let now = match unknown {
                None => "the reloaded ones are being checked".to_string(),
                Some(why) => format!("the reloaded ones are not verified yet: {why}"),
            };
            format!("{now}; before: {}", verdict(&before))
        }
    }
}

/// Where SMS go.
fn sending(live: &Live, forced_dry_run: bool) -> &'static str {
    match (live.is_dry_run(), forced_dry_run) {
        (false, _) => "SMS go to Sipgate",
        (true, true) => "dry-run (--dry-run): SMS are only logged",
        (true, false) => "dry-run (no Sipgate token in the config): SMS are only logged",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_are_told_in_plain_words() {
        let refused = || CredentialCheck::Rejected("Sipgate rejected the token".to_string());
        let cases = [
            (CredentialStatus::NotChecked, true, "not checked (dry-run)"),
            (
                CredentialStatus::NotChecked,
                false,
                "not checked (sipgate.check_credentials is off)",
            ),
            (
                CredentialStatus::Checked(CredentialCheck::Valid),
                false,
                "accepted by Sipgate",
            ),
            (
                CredentialStatus::Checked(refused()),
                false,
                "refused: Sipgate rejected the token",
            ),
            (
                CredentialStatus::Checking {
                    verdict: None,
                    unknown: None,
                },
                false,
                "being checked",
            ),
            (
                CredentialStatus::Checking {
                    verdict: None,
                    unknown: Some("HTTP 503".to_string()),
                },
                false,
                "not verified yet: HTTP 503",
            ),
            (
                CredentialStatus::Checking {
                    verdict: Some(CredentialCheck::Valid),
                    unknown: Some("HTTP 503".to_string()),
                },
                false,
                "the reloaded ones are not verified yet: HTTP 503; before: accepted by Sipgate",
            ),
        ];
        for (status, dry_run, words) in cases {
            assert_eq!(credentials(status, dry_run), words);
        }
    }
}
