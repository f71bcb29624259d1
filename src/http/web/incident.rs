//! An incident as both pages show it: its state in plain words, its alerts, who was paged at
//! which step and when, and what comes next. Built from the incident and the server's `now`
//! only; the alerts' values are shown as text, never as a link.

use chrono::{DateTime, Utc};

use super::moment::Moment;
use crate::escalation::incident::{Incident, Via};

/// Alerts shown of one incident at most; an alert storm makes a long page, not a useful one.
const ALERTS_SHOWN: usize = 20;

pub struct IncidentView<'a> {
    pub alertname: &'a str,
    pub route: &'a str,
    pub policy: &'a str,
    pub state: State,
    pub alerts: Vec<AlertLine<'a>>,
    /// Alerts not shown beyond `ALERTS_SHOWN`.
    pub more_alerts: usize,
    pub pages: Vec<PageLine>,
    pub next: Option<NextStep>,
    /// Every step was paged and nobody acknowledged.
    pub exhausted: bool,
    /// This service silenced the alerts in Alertmanager for an acknowledgement.
    pub silenced: bool,
}

/// `Firing since …`, `Acknowledged by alice at … through the SMS link`, `Resolved at …`.
pub struct State {
    /// For the stylesheet: `firing`, `acknowledged` or `resolved`.
    pub kind: &'static str,
    pub lead: String,
    pub at: Moment,
    pub tail: &'static str,
}

pub struct AlertLine<'a> {
    pub status: &'static str,
    pub name: &'a str,
    pub instance: Option<&'a str>,
    pub summary: Option<&'a str>,
}

pub struct PageLine {
    /// From 1, as people count.
    pub step: usize,
    /// From 1; `None` in the first round.
    pub round: Option<usize>,
    pub people: String,
    pub at: Moment,
}

pub struct NextStep {
    pub step: usize,
    pub round: Option<usize>,
    pub at: Moment,
}

/// Rounds from 0 as people count them, and the first one not at all.
fn round(round: u8) -> Option<usize> {
    (round > 0).then_some(usize::from(round) + 1)
}

impl<'a> IncidentView<'a> {
    pub fn of(incident: &'a Incident, now: DateTime<Utc>) -> Self {
        let moment = |at| Moment::utc_millis(at, now);
        let alerts = &incident.notification.alerts;
        IncidentView {
            alertname: incident.alertname(),
            route: &incident.route,
            policy: &incident.policy,
            state: State::of(incident, now),
            alerts: alerts
                .iter()
                .take(ALERTS_SHOWN)
                .map(|alert| AlertLine {
                    status: alert.status.as_str(),
                    name: alert
                        .labels
                        .get("alertname")
                        .map_or("alert", String::as_str),
                    instance: alert.labels.get("instance").map(String::as_str),
                    summary: alert
                        .annotations
                        .get("summary")
                        .or_else(|| alert.annotations.get("description"))
                        .map(String::as_str),
                })
                .collect(),
            more_alerts: alerts.len().saturating_sub(ALERTS_SHOWN),
            pages: incident
                .pages
                .iter()
                .map(|page| PageLine {
                    step: page.step + 1,
                    round: round(page.round),
                    people: page.people.join(", "),
                    at: moment(page.at),
                })
                .collect(),
            next: incident.next.map(|next| NextStep {
                step: next.step + 1,
                round: round(next.round),
                at: moment(next.due),
            }),
            exhausted: incident.exhausted,
            silenced: incident.silence.is_some(),
        }
    }
}

impl State {
    fn of(incident: &Incident, now: DateTime<Utc>) -> State {
        let moment = |at| Moment::utc_millis(at, now);
        match (&incident.ack, incident.ended_at) {
            (_, Some(ended)) => State {
                kind: "resolved",
                lead: "Resolved at".to_string(),
                at: moment(ended),
                tail: ".",
            },
            (Some(ack), None) => State {
                kind: "acknowledged",
                lead: match &ack.by {
                    Some(by) => format!("Acknowledged by {by} at"),
                    None => "Acknowledged at".to_string(),
                },
                at: moment(ack.at),
                tail: match ack.via {
                    Via::Link => " through the SMS link.",
                    Via::Silence => " by a silence in Alertmanager.",
                },
            },
            (None, None) => State {
                kind: "firing",
                lead: "Firing since".to_string(),
                at: moment(incident.opened_at),
                tail: ".",
            },
        }
    }
}
