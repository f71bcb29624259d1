//! `GET /api/v1/incidents`: the open incidents as JSON, behind the same credentials as
//! `/alerts`; names, never numbers.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ApiError;
use super::auth::Guarded;
use crate::app::AppState;
use crate::clock::datetime as at;
use crate::escalation::Incident;

pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let live = state.current();
    super::authorize(&live, &request, Guarded::Incidents)?;
    let incidents = super::escalation(&state, &live)
        .open_incidents()
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let summaries: Vec<IncidentSummary<'_>> = incidents.iter().map(IncidentSummary::of).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "incidents": summaries })))
}

/// One open incident.
#[derive(Debug, Serialize)]
struct IncidentSummary<'a> {
    id: &'a str,
    route: &'a str,
    policy: &'a str,
    alertname: &'a str,
    opened_at: DateTime<Utc>,
    next_step: Option<usize>,
    next_at: Option<DateTime<Utc>>,
    paged: Vec<PagedSummary<'a>>,
    acknowledged: Option<AckSummary<'a>>,
    silenced: bool,
    exhausted: bool,
}

#[derive(Debug, Serialize)]
struct PagedSummary<'a> {
    step: usize,
    round: u8,
    at: DateTime<Utc>,
    people: &'a [String],
}

#[derive(Debug, Serialize)]
struct AckSummary<'a> {
    by: Option<&'a str>,
    via: &'static str,
    at: DateTime<Utc>,
}

impl<'a> IncidentSummary<'a> {
    fn of(incident: &'a Incident) -> Self {
        IncidentSummary {
            id: &incident.id,
            route: &incident.route,
            policy: &incident.policy,
            alertname: incident.alertname(),
            opened_at: at(incident.opened_at),
            next_step: incident.next.map(|n| n.step + 1),
            next_at: incident.next.map(|n| at(n.due)),
            paged: incident
                .pages
                .iter()
                .map(|p| PagedSummary {
                    step: p.step + 1,
                    round: p.round + 1,
                    at: at(p.at),
                    people: &p.people,
                })
                .collect(),
            acknowledged: incident.ack.as_ref().map(|a| AckSummary {
                by: a.by.as_deref(),
                via: a.via.as_str(),
                at: at(a.at),
            }),
            silenced: incident.silence.is_some(),
            exhausted: incident.exhausted,
        }
    }
}
