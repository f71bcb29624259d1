//! The escalation engine: what a notification, a due step, an acknowledgement and a resolution
//! do to an incident and whom they text. Every change to an incident is a compare-and-swap in
//! the state store, and every SMS has a ledger key derived from the incident and the step, so
//! that replicas racing over one incident page each step once and never undo each other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use tokio::time::Instant;

use crate::alertmanager::{AlertmanagerError, Silence as AmSilence};
use crate::clock::{Millis, millis, millis_at};
use crate::delivery::{Deliverer, Policy as DeliveryPolicy};
use crate::escalation::code;
use crate::escalation::incident::{Ack, Incident, Next, OwnSilence, Page, Via};
use crate::escalation::page::{self, Missed, Trailer};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::model::alert::{Alert, AlertStatus, Notification, Source};
use crate::model::content_key::ContentKey;
use crate::model::outcome::{Outcome, SmsReport};
use crate::routing::policy::Policy;
use crate::routing::{Delivery, Route};
use crate::state::{StateError, StateStore, Swap};
use crate::text::compose::{Sms, compose, compose_with_trailer};

/// How long a silence of an acknowledgement lasts; renewed while its alerts fire.
const SILENCE_SPAN: chrono::Duration = chrono::Duration::hours(1);
/// `createdBy` of this service's silences.
const SILENCE_CREATOR: &str = "alertmanager-sipgate";

/// How often a change is tried again after another replica changed the incident first.
const ATTEMPTS: usize = 8;

/// Incident reads in flight at once when all open incidents are read.
const LOADS_IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    NoRandom(#[from] code::NoRandom),
    #[error("the incident kept changing under this replica; it tries again at its next look")]
    Contended,
}

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// Malformed, never issued, or its incident ended more than a day ago.
    #[error("unknown or expired acknowledgement link")]
    Unknown,
    #[error(transparent)]
    Escalation(#[from] EscalationError),
}

impl From<StateError> for AckError {
    fn from(e: StateError) -> Self {
        AckError::Escalation(e.into())
    }
}

/// What an acknowledgement link leads to.
#[derive(Debug, Clone)]
pub struct Visit {
    pub incident: Incident,
    /// Whose link it is.
    pub person: String,
}

/// What a notification did to the incidents of its escalating routes.
#[derive(Debug, Default)]
pub struct Notified {
    pub sms: Vec<SmsReport>,
    /// A change could not be recorded and nothing was sent instead: the sender must retry.
    pub unrecorded: bool,
}

/// What a POST to an acknowledgement link did.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub visit: Visit,
    /// False when someone (or a silence) had acknowledged before, or the incident had ended.
    pub now: bool,
    /// Whether the silence asked for was made; `None` when none was asked for (or possible).
    pub silenced: Option<Result<(), String>>,
}

/// One use of the engine: the config it runs on, the seams it sends through, and the time.
pub struct Escalation<'a> {
    pub live: &'a Live,
    pub deliverer: &'a Deliverer,
    pub metrics: &'a Metrics,
    pub delivery: DeliveryPolicy,
    pub now: DateTime<Utc>,
}

/// What one attempt at a change decides.
enum Edit<T> {
    /// Write the incident and return `T`.
    Write(Box<Incident>, T),
    /// Leave it as it is and return `T`.
    Keep(T),
}

impl<'a> Escalation<'a> {
    /// For a background job: delivery deadlines counted from now.
    pub fn at(
        live: &'a Live,
        deliverer: &'a Deliverer,
        metrics: &'a Metrics,
        now: DateTime<Utc>,
    ) -> Self {
        Escalation {
            live,
            deliverer,
            metrics,
            delivery: DeliveryPolicy::of(&live.config, Instant::now()),
            now,
        }
    }

    fn store(&self) -> &dyn StateStore {
        self.deliverer.store().as_ref()
    }

    fn now_ms(&self) -> Millis {
        millis_at(self.now)
    }

    /// The alerts `route` took from a notification: a firing group opens its incident (and pages
    /// the first step at once) or updates it; new alerts of an acknowledged incident go to whoever
    /// acknowledged; a resolved group ends it and tells everyone paged.
    pub async fn notify(&self, route: &Route, group: Notification) -> Notified {
        let Some(policy) = route.escalation.as_deref() else {
            return Notified::default();
        };
        let id = code::incident_id(&route.name, &group_identity(&group));
        if group.count(AlertStatus::Firing) == 0 {
            return match self.resolve(route, &id, group.alerts, None).await {
                Ok(sms) => Notified {
                    sms,
                    unrecorded: false,
                },
                Err(e) => {
                    // Who was paged is in the store: the caller retries until it answers.
                    tracing::warn!(route = %route.name, incident = %id, error = %e, "could not end the incident; the notification is to be sent again");
                    Notified {
                        sms: Vec::new(),
                        unrecorded: true,
                    }
                }
            };
        }
        let now = self.now_ms();
        let opened = self
            .change(&id, |current| match current {
                Some(mut incident) if incident.is_open() => {
                    let known = incident.firing().join("\u{0}");
                    let new: Vec<Alert> = group
                        .alerts
                        .iter()
                        .filter(|a| a.status == AlertStatus::Firing)
                        .filter(|a| !known.split('\u{0}').any(|f| f == a.fingerprint))
                        .cloned()
                        .collect();
                    let everyone_paged = || {
                        incident
                            .paged_people()
                            .iter()
                            .map(|p| p.to_string())
                            .collect()
                    };
                    let told = match (&incident.ack, incident.next) {
                        _ if new.is_empty() => Vec::new(),
                        (Some(ack), _) => match &ack.by {
                            Some(person) => vec![person.clone()],
                            None => everyone_paged(),
                        },
                        // Out of steps: nobody would hear of them otherwise.
                        (None, None) => everyone_paged(),
                        (None, Some(_)) => Vec::new(),
                    };
                    incident.notification = group.clone();
                    // Alerts that fire are held by Alertmanager, whatever a look found.
                    incident.missing_since = None;
                    Edit::Write(Box::new(incident), Some((told, new)))
                }
                _ => Edit::Write(
                    Box::new(Incident::open(
                        id.clone(),
                        &route.name,
                        policy,
                        group.clone(),
                        now,
                    )),
                    None,
                ),
            })
            .await;
        let mut reports = match opened {
            Ok(None) => {
                tracing::info!(route = %route.name, policy, incident = %id, "incident opened");
                Vec::new()
            }
            Ok(Some((told, new))) if !told.is_empty() => {
                self.tell_new_alerts(route, &group, &told, &new).await
            }
            Ok(Some(_)) => Vec::new(),
            Err(e) => {
                // A page is never held back because the store is down: the first step gets the
                // usual SMS, without a link nobody could use.
                tracing::warn!(route = %route.name, policy, error = %e, "incident not recorded; the first step is paged without escalation or acknowledgement link");
                return Notified {
                    sms: self.page_without_incident(route, policy, &group).await,
                    unrecorded: false,
                };
            }
        };
        match self.page_due(&id).await {
            Ok(paged) => reports.extend(paged),
            Err(e) => {
                // The store failed before the step went out (after, `page_due` answers with
                // what was sent): the usual SMS now, the escalation when the store answers.
                tracing::warn!(route = %route.name, incident = %id, error = %e, "the due step was not paged through the incident; its people get the usual SMS");
                reports.extend(self.page_without_incident(route, policy, &group).await);
            }
        }
        Notified {
            sms: reports,
            unrecorded: false,
        }
    }

    /// Pages the step of incident `id` that is due, if one is, and moves the incident on once
    /// every SMS of it went out (or was held back on purpose). A step that failed is tried
    /// again at the next call; its ledger keys keep an SMS that went out from going out twice.
    pub async fn page_due(&self, id: &str) -> Result<Vec<SmsReport>, EscalationError> {
        let now = self.now_ms();
        for _ in 0..ATTEMPTS {
            let Loaded {
                version: Some(version),
                incident: Some(mut incident),
            } = self.load(id).await?
            else {
                return Ok(Vec::new());
            };
            let Some(next) = incident.due(now) else {
                return Ok(Vec::new());
            };
            let config = &self.live.config;
            let (Some(route), Some(policy)) = (
                config.routes.iter().find(|r| r.name == incident.route),
                config.escalation_policies.get(&incident.policy),
            ) else {
                tracing::warn!(incident = %id, route = %incident.route, policy = %incident.policy, "the route or policy of an open incident is gone from the config; its escalation stops");
                self.change(id, |i| match i {
                    Some(mut i) if i.next.is_some() => {
                        i.next = None;
                        Edit::Write(Box::new(i), ())
                    }
                    _ => Edit::Keep(()),
                })
                .await?;
                return Ok(Vec::new());
            };
            let people = self.people_of_step(policy, next);
            if people.is_empty() {
                tracing::warn!(incident = %id, policy = %policy.name, step = next.step + 1, "the step reaches nobody in the phone book; the escalation moves on");
            }
            if incident.give_codes(&people)? {
                let value = encode(&incident);
                let written = self
                    .store()
                    .swap_incident(Swap {
                        key: id,
                        expected: Some(version),
                        value: &value,
                        ttl: incident.ttl(),
                        open: incident.is_open(),
                    })
                    .await?;
                if written.is_none() {
                    continue;
                }
            }
            let messages = people
                .iter()
                .filter_map(|person| self.page(route, &incident, next, person))
                .collect();
            let reports = self
                .deliverer
                .deliver(&self.live.outlet, messages, self.delivery)
                .await;
            let wait = policy
                .steps
                .get(next.step)
                .and_then(|s| s.wait)
                .map_or(0, millis);
            // When the step counts as paged: now, or for a step whose page kept failing, when
            // it was due, so that the next step keeps its time.
            let mut paged_at = now;
            if reports.iter().any(|r| r.outcome == Outcome::Failed) {
                // Tried again at every look, until the next step is due: a number that always
                // fails must not keep the escalation from the others.
                if now < next.due.saturating_add(wait) {
                    return Ok(reports);
                }
                paged_at = next.due;
                tracing::warn!(incident = %id, policy = %policy.name, step = next.step + 1, "a page of this step kept failing until the next step was due; the escalation moves on");
            }
            let moved = self
                .change(id, |i| match i {
                    Some(mut i) if i.next == Some(next) => {
                        i.paged(next, people.clone(), paged_at, policy);
                        let exhausted = i.exhausted;
                        Edit::Write(Box::new(i), Some((exhausted, None)))
                    }
                    // Acknowledged while this step went out: its people are on record, so
                    // that they hear who acknowledged and, later, that it resolved.
                    Some(mut i) if i.ack.is_some() && i.is_open() => {
                        let ack = i.ack.clone();
                        i.pages.push(Page {
                            step: next.step,
                            round: next.round,
                            at: now,
                            people: people.clone(),
                        });
                        Edit::Write(Box::new(i), Some((false, ack)))
                    }
                    _ => Edit::Keep(None),
                })
                .await;
            let moved = match moved {
                Ok(moved) => moved,
                Err(e) => {
                    // The pages went out; the next look finds the step still due, the ledger
                    // answers that its SMS were sent, and the incident moves on then.
                    tracing::warn!(incident = %id, error = %e, "step paged but not recorded; recorded at the next look");
                    return Ok(reports);
                }
            };
            let moved = match moved {
                Some((_, Some(ack))) => {
                    let text = ack_text(&incident, &ack);
                    let event = format!("ack:{}:{}", incident.id, incident.opened_at);
                    let late: Vec<Sms> = people
                        .iter()
                        .filter(|p| Some(p.as_str()) != ack.by.as_deref())
                        .filter_map(|p| self.plain(&incident.route, p, &text, &event))
                        .collect();
                    self.deliverer
                        .deliver(&self.live.outlet, late, self.delivery)
                        .await;
                    None
                }
                Some((exhausted, None)) => Some(exhausted),
                None => None,
            };
            if let Some(exhausted) = moved {
                self.metrics.escalation_page(&policy.name, next.step);
                tracing::info!(
                    incident = %id,
                    route = %route.name,
                    policy = %policy.name,
                    step = next.step + 1,
                    round = next.round + 1,
                    people = %people.join(","),
                    "escalation step paged"
                );
                if exhausted {
                    self.metrics.escalation_exhausted(&policy.name);
                    tracing::warn!(incident = %id, route = %route.name, policy = %policy.name, "escalation ran out of steps and nobody acknowledged");
                }
            }
            return Ok(reports);
        }
        Err(EscalationError::Contended)
    }

    /// The incident and person an acknowledgement link names, to show on its page.
    pub async fn visit(&self, code: &str) -> Result<Visit, AckError> {
        let id = code::incident_of(code).ok_or(AckError::Unknown)?;
        let incident = self
            .load(id)
            .await?
            .incident
            .filter(|incident| !incident.links_expired(self.now_ms()))
            .ok_or(AckError::Unknown)?;
        let person = incident
            .person_of(code)
            .ok_or(AckError::Unknown)?
            .to_string();
        Ok(Visit { incident, person })
    }

    /// The person of `code` acknowledges: the escalation stops, the others paged are told.
    pub async fn acknowledge(&self, code: &str, silence: bool) -> Result<Acknowledged, AckError> {
        let id = code::incident_of(code).ok_or(AckError::Unknown)?;
        let now = self.now_ms();
        let outcome = self
            .change(id, |current| {
                let Some(mut incident) = current.filter(|i| !i.links_expired(now)) else {
                    return Edit::Keep(None);
                };
                let Some(person) = incident.person_of(code).map(str::to_string) else {
                    return Edit::Keep(None);
                };
                if incident.acknowledge(Some(person.clone()), Via::Link, now) {
                    Edit::Write(Box::new(incident.clone()), Some((incident, person, true)))
                } else {
                    Edit::Keep(Some((incident, person, false)))
                }
            })
            .await
            .map_err(AckError::Escalation)?;
        let (incident, person, acknowledged) = outcome.ok_or(AckError::Unknown)?;
        let mut silenced = None;
        if acknowledged {
            self.acknowledged(&incident, Via::Link).await;
            if silence {
                silenced = self.silence(&incident, &person).await;
            }
        }
        Ok(Acknowledged {
            visit: Visit { incident, person },
            now: acknowledged,
            silenced,
        })
    }

    /// Silences the incident's alerts in Alertmanager until they resolve (renewed by `watch`);
    /// `None` without `alertmanager.urls`.
    async fn silence(&self, incident: &Incident, person: &str) -> Option<Result<(), String>> {
        self.live.alertmanager.as_ref()?;
        if silence_matchers(&incident.notification).is_empty() {
            return Some(Err(
                "the alert group has no labels to silence it by".to_string()
            ));
        }
        match self.post_silence(incident, None, person).await? {
            Ok(()) => {
                tracing::info!(incident = %incident.id, by = person, "alerts silenced until they resolve");
                Some(Ok(()))
            }
            Err(e) => {
                self.metrics.alertmanager_error("silence");
                tracing::warn!(incident = %incident.id, error = %e, "acknowledged, but the silence could not be made");
                Some(Err(e.to_string()))
            }
        }
    }

    /// Makes (`made` none) or extends this service's silence of `incident` for another span,
    /// and records it in the incident; `None` without `alertmanager.urls`. A silence Alertmanager
    /// took but the store did not is only logged: it ends by itself, just not renewed.
    async fn post_silence(
        &self,
        incident: &Incident,
        made: Option<&OwnSilence>,
        by: &str,
    ) -> Option<Result<(), AlertmanagerError>> {
        let alertmanager = self.live.alertmanager.as_ref()?;
        let silence = AmSilence {
            id: made.map(|s| s.id.clone()),
            // The same at every renewal: Alertmanager replaces a silence whose matchers change.
            matchers: match made {
                Some(made) if !made.matchers.is_empty() => made.matchers.clone(),
                _ => silence_matchers(&incident.notification),
            },
            starts_at: self.now,
            ends_at: self.now + SILENCE_SPAN,
            created_by: SILENCE_CREATOR.to_string(),
            comment: format!("Acknowledged by {by} via SMS"),
        };
        let id = match alertmanager.silence(&silence).await {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        let until = millis_at(silence.ends_at);
        let kept = self
            .change(&incident.id, |i| match i {
                // A renewal does not bring back a silence the incident no longer holds.
                Some(mut i) if i.is_open() && (made.is_none() || i.silence.is_some()) => {
                    i.silence = Some(OwnSilence {
                        matchers: silence.matchers.clone(),
                        id: id.clone(),
                        until,
                    });
                    Edit::Write(Box::new(i), ())
                }
                _ => Edit::Keep(()),
            })
            .await;
        if let Err(e) = kept {
            tracing::warn!(incident = %incident.id, error = %e, "silence made in Alertmanager but not recorded; it is not renewed");
        }
        Some(Ok(()))
    }

    /// Asks Alertmanager about an open incident's alerts: gone means resolved (Alertmanager
    /// sends no resolved notification for silenced alerts), all silenced by someone else's
    /// silence means acknowledged, and this service's own silence is renewed while they fire.
    /// Alertmanager down changes nothing: the escalation goes on.
    pub async fn watch(&self, incident: &Incident) {
        let Some(alertmanager) = self.live.alertmanager.as_ref() else {
            return;
        };
        // Grafana's and Healthchecks.io's alerts are not in Alertmanager.
        if incident.notification.source != Source::Alertmanager || !incident.is_open() {
            return;
        }
        let firing = incident.firing();
        let held = match alertmanager
            .alerts_at(&group_matchers(&incident.notification), self.now)
            .await
        {
            Ok(alerts) => alerts,
            Err(e) => {
                self.metrics.alertmanager_error("alerts");
                tracing::warn!(incident = %incident.id, error = %e, "Alertmanager not asked about the incident's alerts; the escalation goes on");
                return;
            }
        };
        let present: Vec<_> = held
            .iter()
            .filter(|a| firing.contains(&a.fingerprint.as_str()))
            .collect();
        let now = self.now_ms();
        if present.is_empty() {
            if !incident.seen_in_alertmanager {
                return;
            }
            let resolved_after = self
                .live
                .config
                .alertmanager
                .as_ref()
                .map_or(0, |a| millis(a.resolved_after));
            let since = incident.missing_since.unwrap_or(now);
            if now.saturating_sub(since) >= resolved_after {
                self.resolved_in_alertmanager(incident).await;
            } else if incident.missing_since.is_none() {
                self.note_alertmanager(incident, Some(now)).await;
            }
            return;
        }
        if !incident.seen_in_alertmanager || incident.missing_since.is_some() {
            self.note_alertmanager(incident, None).await;
        }
        let own = incident.silence.as_ref().map(|s| s.id.as_str());
        let silenced_by_others = present
            .iter()
            .all(|a| a.silenced_by.iter().any(|id| Some(id.as_str()) != own));
        if incident.ack.is_none() && silenced_by_others {
            let acked = self
                .change(&incident.id, |i| match i {
                    Some(mut i) => {
                        if i.acknowledge(None, Via::Silence, now) {
                            Edit::Write(Box::new(i.clone()), Some(i))
                        } else {
                            Edit::Keep(None)
                        }
                    }
                    None => Edit::Keep(None),
                })
                .await;
            match acked {
                Ok(Some(acked)) => self.acknowledged(&acked, Via::Silence).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(incident = %incident.id, error = %e, "acknowledgement by silence not recorded; tried again at the next look")
                }
            }
        }
        if let Some(silence) = &incident.silence
            && silence.until < millis_at(self.now + SILENCE_SPAN / 2)
        {
            self.renew(incident, silence).await;
        }
    }

    /// Records that Alertmanager holds the incident's alerts (`missing_since` none) or, since
    /// `missing_since`, none of them.
    async fn note_alertmanager(&self, incident: &Incident, missing_since: Option<Millis>) {
        let noted = self
            .change(&incident.id, |i| match i {
                Some(mut i) if i.is_open() => {
                    i.seen_in_alertmanager = true;
                    i.missing_since = missing_since;
                    Edit::Write(Box::new(i), ())
                }
                _ => Edit::Keep(()),
            })
            .await;
        if let Err(e) = noted {
            tracing::warn!(incident = %incident.id, error = %e, "what Alertmanager holds of the incident not recorded; noted again at the next look");
        }
    }

    /// Extends this service's silence of `incident` by another span.
    async fn renew(&self, incident: &Incident, silence: &OwnSilence) {
        let by = incident
            .ack
            .as_ref()
            .and_then(|a| a.by.as_deref())
            .unwrap_or("someone");
        if let Some(Err(e)) = self.post_silence(incident, Some(silence), by).await {
            self.metrics.alertmanager_error("silence");
            tracing::warn!(incident = %incident.id, error = %e, "silence not renewed; tried again at the next look");
        }
    }

    /// The incident's alerts are gone from Alertmanager: they resolved.
    async fn resolved_in_alertmanager(&self, incident: &Incident) {
        let Some(route) = self
            .live
            .config
            .routes
            .iter()
            .find(|r| r.name == incident.route)
        else {
            return;
        };
        // When a look first found them gone, not when this one did.
        let ends_at = incident
            .missing_since
            .and_then(|at| DateTime::from_timestamp_millis(i64::try_from(at).ok()?))
            .unwrap_or(self.now);
        let alerts = incident
            .notification
            .alerts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                if a.status == AlertStatus::Firing {
                    a.status = AlertStatus::Resolved;
                    a.ends_at = Some(ends_at);
                }
                a
            })
            .collect();
        let checked: Vec<String> = incident.firing().iter().map(|f| f.to_string()).collect();
        if let Err(e) = self
            .resolve(route, &incident.id, alerts, Some(&checked))
            .await
        {
            tracing::warn!(incident = %incident.id, error = %e, "incident not ended; tried again at the next look");
        }
    }

    /// Expires this service's silence of an incident that ended.
    async fn expire_silence(&self, incident: &Incident) {
        let (Some(alertmanager), Some(silence)) =
            (self.live.alertmanager.as_ref(), incident.silence.as_ref())
        else {
            return;
        };
        if let Err(e) = alertmanager.expire_silence(&silence.id).await {
            self.metrics.alertmanager_error("expire");
            tracing::warn!(incident = %incident.id, error = %e, "silence not expired; it ends by itself within the hour");
        }
    }

    /// Counts and logs an acknowledgement that was just written, and tells the others paged.
    async fn acknowledged(&self, incident: &Incident, via: Via) {
        let Some(ack) = &incident.ack else { return };
        let after = Duration::from_millis(ack.at.saturating_sub(incident.opened_at));
        self.metrics
            .acknowledged(via.as_str(), &incident.policy, after);
        tracing::info!(
            incident = %incident.id,
            route = %incident.route,
            policy = %incident.policy,
            by = ack.by.as_deref().unwrap_or("-"),
            via = via.as_str(),
            after_s = after.as_secs(),
            "incident acknowledged"
        );
        let notice = self
            .live
            .config
            .escalation_policies
            .get(&incident.policy)
            .is_none_or(|p| p.ack_notice);
        if !notice {
            return;
        }
        let text = ack_text(incident, ack);
        let event = format!("ack:{}:{}", incident.id, incident.opened_at);
        let messages = incident
            .paged_people()
            .into_iter()
            .filter(|person| Some(*person) != ack.by.as_deref())
            .filter_map(|person| self.plain(&incident.route, person, &text, &event))
            .collect();
        self.deliverer
            .deliver(&self.live.outlet, messages, self.delivery)
            .await;
    }

    /// Ends incident `id` because `alerts` resolved, and sends everyone paged the resolved
    /// SMS when the route sends resolved alerts.
    pub async fn resolve(
        &self,
        route: &Route,
        id: &str,
        alerts: Vec<Alert>,
        checked: Option<&[String]>,
    ) -> Result<Vec<SmsReport>, EscalationError> {
        let now = self.now_ms();
        let ended = self
            .change(id, |current| match current {
                Some(mut incident) if incident.is_open() => {
                    // A look ends it only if what it found gone is still all that fires: a
                    // notification may have added an alert since.
                    if let Some(checked) = checked
                        && !incident
                            .firing()
                            .iter()
                            .all(|f| checked.iter().any(|c| c == f))
                    {
                        return Edit::Keep(None);
                    }
                    incident.end(now);
                    let mut resolved = incident.notification.clone();
                    resolved.status = AlertStatus::Resolved;
                    resolved.alerts = alerts.clone();
                    incident.notification = resolved;
                    Edit::Write(Box::new(incident.clone()), Some((incident, true)))
                }
                // Ended before (a retry of this notification, or a look came first): its
                // resolved SMS again, which the ledger lets out once.
                Some(incident) if checked.is_none() => Edit::Keep(Some((incident, false))),
                _ => Edit::Keep(None),
            })
            .await?;
        let Some((incident, just_ended)) = ended else {
            return Ok(Vec::new());
        };
        if just_ended {
            tracing::info!(incident = %id, route = %route.name, policy = %incident.policy, "incident ended: its alerts resolved");
            self.expire_silence(&incident).await;
        }
        if !route.send_resolved {
            return Ok(Vec::new());
        }
        let alerts: Vec<&Alert> = incident.notification.alerts.iter().collect();
        let event = format!("resolved:{}:{}", incident.id, incident.opened_at);
        let messages = incident
            .paged_people()
            .into_iter()
            .filter_map(|person| {
                let number = self.live.config.recipients.get(person)?.clone();
                let delivery = Delivery {
                    route,
                    recipient: person,
                    alerts: alerts.clone(),
                    quiet: false,
                };
                Some(compose_with_trailer(
                    &self.live.config.templates,
                    number,
                    &incident.notification,
                    &delivery,
                    self.now,
                    "",
                    ContentKey::for_event(person, &event),
                ))
            })
            .collect();
        Ok(self
            .deliverer
            .deliver(&self.live.outlet, messages, self.delivery)
            .await)
    }

    /// The open incidents as the store has them now.
    pub async fn open_incidents(&self) -> Result<Vec<Incident>, StateError> {
        let ids = self.store().open_incidents().await?;
        // Several reads in flight: an alert storm opens hundreds of incidents, and one round
        // trip after the other would take the status page past its deadline.
        let mut incidents: Vec<Incident> = futures_util::stream::iter(ids)
            .map(|id| async move { self.load(&id).await.map(|loaded| loaded.incident) })
            .buffer_unordered(LOADS_IN_FLIGHT)
            .try_filter_map(|incident| async move { Ok(incident.filter(Incident::is_open)) })
            .try_collect()
            .await?;
        incidents.sort_by(|a, b| a.opened_at.cmp(&b.opened_at).then(a.id.cmp(&b.id)));
        Ok(incidents)
    }

    /// The people `next` pages now, each once, those in the phone book.
    fn people_of_step(&self, policy: &Policy, next: Next) -> Vec<String> {
        page::people_of_step(&self.live.config, policy, next.step, self.now)
    }

    /// The SMS of step `next` to `person`: the route's text about the group's firing alerts, a
    /// note who did not acknowledge from the second page on, and the link.
    fn page(&self, route: &Route, incident: &Incident, next: Next, person: &str) -> Option<Sms> {
        let trailer = Trailer {
            code: incident.codes.get(person)?,
            missed: incident.pages.first().map(|first| Missed {
                people: incident.paged_people().join(", "),
                since_first_page: Duration::from_secs(
                    self.now_ms().saturating_sub(first.at) / 1000,
                ),
            }),
        };
        let event = format!(
            "page:{}:{}:{}:{}",
            incident.id, incident.opened_at, next.round, next.step
        );
        page::compose_page(
            &self.live.config,
            route,
            &incident.notification,
            person,
            &trailer,
            self.now,
            ContentKey::for_event(person, &event),
        )
    }

    /// A short fixed text to `person` (no template), keyed by `event`.
    fn plain(&self, route: &str, person: &str, text: &str, event: &str) -> Option<Sms> {
        let number = self.live.config.recipients.get(person)?.clone();
        Some(Sms {
            route: route.to_string(),
            recipient: person.to_string(),
            number,
            size: crate::text::sms::measure(text),
            text: text.to_string(),
            max_segments: 1,
            key: ContentKey::for_event(person, event),
            quiet: false,
        })
    }

    /// New alerts of an acknowledged incident: the usual SMS about them to `people`.
    async fn tell_new_alerts(
        &self,
        route: &Route,
        group: &Notification,
        people: &[String],
        new: &[Alert],
    ) -> Vec<SmsReport> {
        let alerts: Vec<&Alert> = new.iter().collect();
        let messages = people
            .iter()
            .filter_map(|person| {
                let number = self.live.config.recipients.get(person)?.clone();
                let delivery = Delivery {
                    route,
                    recipient: person,
                    alerts: alerts.clone(),
                    quiet: false,
                };
                Some(compose(
                    &self.live.config.templates,
                    number,
                    group,
                    &delivery,
                    self.now,
                ))
            })
            .collect();
        self.deliverer
            .deliver(&self.live.outlet, messages, self.delivery)
            .await
    }

    /// The first step's people get the usual SMS, as a route with `to:` would send it.
    async fn page_without_incident(
        &self,
        route: &Route,
        policy: &str,
        group: &Notification,
    ) -> Vec<SmsReport> {
        let Some(policy) = self.live.config.escalation_policies.get(policy) else {
            return Vec::new();
        };
        let people = self.people_of_step(
            policy,
            Next {
                step: 0,
                round: 0,
                due: 0,
            },
        );
        let firing: Vec<Alert> = group
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .cloned()
            .collect();
        self.tell_new_alerts(route, group, &people, &firing).await
    }

    async fn load(&self, id: &str) -> Result<Loaded, StateError> {
        let Some(record) = self.store().incident(id).await? else {
            return Ok(Loaded {
                version: None,
                incident: None,
            });
        };
        let incident = serde_json::from_slice::<Incident>(&record.value)
            .inspect_err(|e| {
                // Written by a release that stored it otherwise: the next write replaces it.
                tracing::error!(incident = %id, error = %e, "an incident in the state store could not be read; it is treated as absent");
            })
            .ok();
        Ok(Loaded {
            version: Some(record.version),
            incident,
        })
    }

    /// Reads incident `id`, lets `edit` decide, and writes what it returns unless another
    /// replica wrote the incident since it was read; then reads again, a few times.
    async fn change<T>(
        &self,
        id: &str,
        mut edit: impl FnMut(Option<Incident>) -> Edit<T>,
    ) -> Result<T, EscalationError> {
        for _ in 0..ATTEMPTS {
            let Loaded { version, incident } = self.load(id).await?;
            match edit(incident) {
                Edit::Keep(result) => return Ok(result),
                Edit::Write(incident, result) => {
                    let value = encode(&incident);
                    let written = self
                        .store()
                        .swap_incident(Swap {
                            key: id,
                            expected: version,
                            value: &value,
                            ttl: incident.ttl(),
                            open: incident.is_open(),
                        })
                        .await?;
                    if written.is_some() {
                        return Ok(result);
                    }
                }
            }
        }
        Err(EscalationError::Contended)
    }
}

/// An incident as read from the store.
struct Loaded {
    /// The record's version, for the next write; `None` when there is no record.
    version: Option<u64>,
    /// `None` also for a record that could not be read: a write replaces it.
    incident: Option<Incident>,
}

/// `ACK DiskFull by alice`, to the others paged.
fn ack_text(incident: &Incident, ack: &Ack) -> String {
    match &ack.by {
        Some(by) => format!("ACK {} by {by}", incident.alertname()),
        None => format!("ACK {} by silence", incident.alertname()),
    }
}

fn encode(incident: &Incident) -> Vec<u8> {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_vec(incident).unwrap_or_default()
}

/// What makes two notifications the same group: Alertmanager's group key, or for a sender
/// without one, the set of its alerts.
fn group_identity(group: &Notification) -> String {
    if !group.group_key.is_empty() {
        return group.group_key.clone();
    }
    let mut fingerprints: Vec<&str> = group
        .alerts
        .iter()
        .map(|a| a.fingerprint.as_str())
        .collect();
    fingerprints.sort_unstable();
    fingerprints.join(",")
}

/// The labels that pick the group's alerts out of Alertmanager's: its group labels, or when it
/// has none, the labels its alerts share. The alerts found are then told apart by fingerprint.
fn group_matchers(group: &Notification) -> Vec<(String, String)> {
    let labels = if group.group_labels.is_empty() {
        &group.common_labels
    } else {
        &group.group_labels
    };
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What a silence of the group matches: every label its firing alerts share (the group labels
/// among them), so that it silences these alerts and not, say, every `DiskFull` of other teams
/// that a group by `alertname` alone would name.
fn silence_matchers(group: &Notification) -> Vec<(String, String)> {
    let mut firing = group
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing);
    let Some(first) = firing.next() else {
        return group_matchers(group);
    };
    let mut shared = first.labels.clone();
    for alert in firing {
        shared.retain(|name, value| alert.labels.get(name) == Some(value));
    }
    if shared.is_empty() {
        return group_matchers(group);
    }
    shared.into_iter().collect()
}

#[cfg(test)]
mod tests {
    //! The engine on the memory store and the recording provider, at explicit instants.

    use std::sync::Arc;

    use super::*;
    use crate::clock::TokioClock;
    use crate::state::MemoryStore;
    use crate::state::memory::DEFAULT_CAPACITY;
    use crate::testing::Fixture;

    const ALICE: &str = "+4915228817386";
    const BOB: &str = "+4915254599371";
    const CAROL: &str = "+4915799912345";

    const CONFIG: &str = r#"
recipients: {alice: "+4915228817386", bob: "+4915254599371", carol: "+4915799912345"}
web: {external_url: "https://pager.example.com"}
escalation_policies:
  critical:
    steps:
      - {to: [alice], wait: 10m}
      - {to: [bob], wait: 15m}
      - {to: [carol, bob], wait: 5m}
    repeat: 1
routes:
  - name: critical
    matchers: ['severity="critical"']
    escalation: critical
"#;

    const T0: &str = "2026-11-25T10:00:00Z";

    fn at(minutes: i64, seconds: i64) -> DateTime<Utc> {
        T0.parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::minutes(minutes)
            + chrono::Duration::seconds(seconds)
    }

    fn store() -> Arc<dyn StateStore> {
        Arc::new(MemoryStore::new(
            DEFAULT_CAPACITY,
            Arc::new(TokioClock::new()),
        ))
    }

    /// `DiskFull` on each of `instances`, firing or resolved, as Alertmanager posts the group.
    fn group(status: &str, instances: &[&str]) -> String {
        let alerts: Vec<String> = instances
            .iter()
            .map(|i| {
                format!(
                    r#"{{"status":"{status}","fingerprint":"f-{i}","startsAt":"2026-11-25T09:55:00Z",
                    "labels":{{"alertname":"DiskFull","instance":"{i}","severity":"critical"}},
                    "annotations":{{"summary":"Disk on {i} is full"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"status":"{status}","groupKey":"{{}}:{{alertname=\"DiskFull\"}}",
            "groupLabels":{{"alertname":"DiskFull"}},"commonLabels":{{"alertname":"DiskFull","severity":"critical"}},
            "alerts":[{}]}}"#,
            alerts.join(",")
        )
    }

    fn engine(f: &Fixture, now: DateTime<Utc>) -> Escalation<'_> {
        Escalation::at(&f.live, &f.deliverer, &f.metrics, now)
    }

    /// Pages what is due in every open incident at `now`, as the job does.
    async fn look(f: &Fixture, now: DateTime<Utc>) {
        let engine = engine(f, now);
        for incident in engine.open_incidents().await.unwrap() {
            engine.page_due(&incident.id).await.unwrap();
        }
    }

    /// The SMS sent since the last call, as (number, text).
    fn sent_since(f: &Fixture, seen: &mut usize) -> Vec<(String, String)> {
        let all = f.provider.sent();
        let new = all[*seen..].to_vec();
        *seen = all.len();
        new
    }

    /// The code of the link in `text`.
    fn code_in(text: &str) -> String {
        text.rsplit("/a/").next().unwrap().to_string()
    }

    fn page(text_before: &str, code: &str) -> String {
        format!("{text_before}\nAck: https://pager.example.com/a/{code}")
    }

    #[tokio::test(start_paused = true)]
    async fn each_step_is_paged_at_its_time_the_steps_repeat_and_then_stop() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        let report = f.run(&group("firing", &["db1"]), T0).await;
        assert!(report.all_delivered());
        let first = sent_since(&f, &mut seen);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].0, ALICE);
        let alice = code_in(&first[0].1);
        assert_eq!(alice.len(), code::LENGTH);
        assert_eq!(
            first[0].1,
            page(
                "FIRING DiskFull db1 since Nov 25 09:55 UTC: Disk on db1 is full",
                &alice
            )
        );

        look(&f, at(9, 59)).await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        // Late by 30 s, as a look may be: the note counts from the first page.
        look(&f, at(10, 30)).await;
        let second = sent_since(&f, &mut seen);
        let bob = code_in(&second[0].1);
        assert_eq!(
            second,
            vec![(
                BOB.to_string(),
                page(
                    "FIRING DiskFull db1 since Nov 25 09:55 UTC: Disk on db1 is full\nNot acknowledged by alice for 10m",
                    &bob
                )
            )]
        );
        // The next step counts from when this one was due, not from when it went out.
        look(&f, at(24, 59)).await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        look(&f, at(25, 0)).await;
        let third = sent_since(&f, &mut seen);
        let numbers: Vec<&str> = third.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(numbers, [CAROL, BOB]);
        assert!(third[1].1.ends_with(&format!(
            "Not acknowledged by alice, bob for 25m\nAck: https://pager.example.com/a/{bob}"
        )));
        // repeat: 1 runs the steps once more, after the last wait, with the same codes.
        look(&f, at(30, 0)).await;
        let again = sent_since(&f, &mut seen);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, ALICE);
        assert!(again[0].1.ends_with(&format!("/a/{alice}")));
        look(&f, at(40, 0)).await;
        look(&f, at(55, 0)).await;
        assert_eq!(
            sent_since(&f, &mut seen).len(),
            3,
            "bob, then carol and bob"
        );
        // Out of steps: nobody more, ever.
        look(&f, at(600, 0)).await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        let metrics = f.metrics.render();
        assert!(
            metrics.contains(
                "alertmanager_sipgate_escalation_pages_total{policy=\"critical\",step=\"1\"} 2"
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "alertmanager_sipgate_escalations_exhausted_total{policy=\"critical\"} 1"
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_acknowledgement_stops_the_escalation_and_tells_the_others() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        look(&f, at(10, 0)).await;
        let pages = sent_since(&f, &mut seen);
        let bob = code_in(&pages[1].1);
        let acked = engine(&f, at(12, 0))
            .acknowledge(&bob, false)
            .await
            .unwrap();
        assert!(acked.now);
        assert_eq!(acked.visit.person, "bob");
        assert_eq!(
            sent_since(&f, &mut seen),
            vec![(ALICE.to_string(), "ACK DiskFull by bob".to_string())]
        );
        // Twice is once; alice's link now says who did.
        let again = engine(&f, at(13, 0))
            .acknowledge(&code_in(&pages[0].1), false)
            .await
            .unwrap();
        assert!(!again.now);
        assert_eq!(again.visit.incident.ack.unwrap().by.as_deref(), Some("bob"));
        look(&f, at(25, 0)).await;
        look(&f, at(600, 0)).await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        let metrics = f.metrics.render();
        assert!(metrics.contains("alertmanager_sipgate_acknowledgements_total{via=\"link\"} 1"));
        assert!(metrics.contains(
            "alertmanager_sipgate_time_to_acknowledge_seconds_sum{policy=\"critical\"} 720"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolved_group_ends_the_incident_and_tells_everyone_paged() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        look(&f, at(10, 0)).await;
        sent_since(&f, &mut seen);
        let report = f
            .run(&group("resolved", &["db1"]), &at(11, 0).to_rfc3339())
            .await;
        assert!(report.all_delivered());
        let resolved = "RESOLVED DiskFull db1: Disk on db1 is full".to_string();
        assert_eq!(
            sent_since(&f, &mut seen),
            vec![
                (ALICE.to_string(), resolved.clone()),
                (BOB.to_string(), resolved)
            ]
        );
        look(&f, at(25, 0)).await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        assert!(
            engine(&f, at(25, 0))
                .open_incidents()
                .await
                .unwrap()
                .is_empty()
        );
        // The same group firing again is a new incident: step 1 again, a new code.
        f.run(&group("firing", &["db1"]), &at(30, 0).to_rfc3339())
            .await;
        let reopened = sent_since(&f, &mut seen);
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened[0].0, ALICE);
    }

    #[tokio::test(start_paused = true)]
    async fn new_alerts_of_an_acknowledged_group_go_to_who_acknowledged() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        let alice = code_in(&sent_since(&f, &mut seen)[0].1);
        engine(&f, at(2, 0))
            .acknowledge(&alice, false)
            .await
            .unwrap();
        // A repeat of the same alerts texts nobody; a new alert texts alice alone, no link.
        f.run(&group("firing", &["db1"]), &at(5, 0).to_rfc3339())
            .await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        f.run(&group("firing", &["db1", "db2"]), &at(6, 0).to_rfc3339())
            .await;
        assert_eq!(
            sent_since(&f, &mut seen),
            vec![(
                ALICE.to_string(),
                "FIRING DiskFull db2 since Nov 25 09:55 UTC: Disk on db2 is full".to_string()
            )]
        );
        look(&f, at(30, 0)).await;
        assert_eq!(sent_since(&f, &mut seen), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn replicas_sharing_a_store_page_each_step_once_and_an_ack_racing_a_step_wins() {
        let shared = store();
        let a = Fixture::on(CONFIG, shared.clone());
        let b = Fixture::on(CONFIG, shared);
        // Both replicas get the notification (two Alertmanagers) and look at the same time.
        let body = group("firing", &["db1"]);
        tokio::join!(a.run(&body, T0), b.run(&body, T0));
        tokio::join!(look(&a, at(10, 0)), look(&b, at(10, 0)));
        let all = |who: &str| {
            let mut sent: Vec<String> = [a.provider.sent(), b.provider.sent()]
                .concat()
                .into_iter()
                .filter(|(n, _)| n == who)
                .map(|(_, t)| t)
                .collect();
            sent.sort();
            sent
        };
        assert_eq!(all(ALICE).len(), 1);
        assert_eq!(all(BOB).len(), 1);
        // alice acknowledges at one replica while the other pages the next step.
        let alice = code_in(&all(ALICE)[0]);
        let at_a = engine(&a, at(25, 0));
        let (acked, _) = tokio::join!(at_a.acknowledge(&alice, false), look(&b, at(25, 0)));
        assert!(acked.unwrap().now);
        // Whether carol's page went out before the acknowledgement or not, nothing follows it.
        tokio::join!(look(&a, at(600, 0)), look(&b, at(600, 0)));
        assert!(all(CAROL).len() <= 1);
        assert_eq!(
            all(BOB).iter().filter(|t| t.starts_with("FIRING")).count(),
            all(CAROL).len() + 1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolved_group_the_store_cannot_end_is_to_be_sent_again_and_told_once() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use futures_util::FutureExt;

        use crate::state::StateError;
        use crate::state::faulty::{Faulty, Op};

        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        let memory = MemoryStore::new(DEFAULT_CAPACITY, Arc::new(TokioClock::new()));
        let store = Faulty::new(memory, move |op| {
            let fail = op == Op::Incident && flag.load(Ordering::SeqCst);
            let answer = if fail {
                Err(StateError::Unavailable("down".to_string()))
            } else {
                Ok(())
            };
            std::future::ready(answer).boxed()
        });
        let f = Fixture::on(CONFIG, Arc::new(store));
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        assert_eq!(sent_since(&f, &mut seen).len(), 1);
        down.store(true, Ordering::SeqCst);
        let report = f
            .run(&group("resolved", &["db1"]), &at(11, 0).to_rfc3339())
            .await;
        assert!(!report.all_delivered(), "Alertmanager must send it again");
        assert_eq!(sent_since(&f, &mut seen), vec![]);
        down.store(false, Ordering::SeqCst);
        let resolved = vec![(
            ALICE.to_string(),
            "RESOLVED DiskFull db1: Disk on db1 is full".to_string(),
        )];
        let report = f
            .run(&group("resolved", &["db1"]), &at(12, 0).to_rfc3339())
            .await;
        assert!(report.all_delivered());
        assert_eq!(sent_since(&f, &mut seen), resolved);
        // A retry of an ended incident's resolved notification: the ledger lets it out once.
        let report = f
            .run(&group("resolved", &["db1"]), &at(13, 0).to_rfc3339())
            .await;
        assert!(report.all_delivered());
        assert_eq!(sent_since(&f, &mut seen), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn new_alerts_of_an_incident_out_of_steps_go_to_everyone_paged() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        for minute in [10, 25, 30, 40, 55] {
            look(&f, at(minute, 0)).await;
        }
        assert!(engine(&f, at(60, 0)).open_incidents().await.unwrap()[0].exhausted);
        sent_since(&f, &mut seen);
        f.run(&group("firing", &["db1", "db2"]), &at(70, 0).to_rfc3339())
            .await;
        let text = "FIRING DiskFull db2 since Nov 25 09:55 UTC: Disk on db2 is full".to_string();
        assert_eq!(
            sent_since(&f, &mut seen),
            vec![
                (ALICE.to_string(), text.clone()),
                (BOB.to_string(), text.clone()),
                (CAROL.to_string(), text)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_number_that_always_fails_holds_its_step_only_until_the_next_is_due() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        look(&f, at(10, 0)).await;
        assert_eq!(sent_since(&f, &mut seen).len(), 2);
        // Step 3 pages carol and bob; carol's number is refused every time.
        f.provider.refuse(CAROL);
        look(&f, at(25, 0)).await;
        look(&f, at(29, 59)).await;
        let bob_only = sent_since(&f, &mut seen);
        assert_eq!(bob_only.len(), 1, "bob once, carol never: {bob_only:?}");
        assert_eq!(bob_only[0].0, BOB);
        // At 10:30 the next step (round 2's alice) is due: the escalation moves on.
        look(&f, at(30, 0)).await;
        look(&f, at(30, 0)).await;
        let next = sent_since(&f, &mut seen);
        assert_eq!(next.len(), 1, "{next:?}");
        assert_eq!(next[0].0, ALICE);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_and_malformed_codes_acknowledge_nothing() {
        let f = Fixture::on(CONFIG, store());
        let mut seen = 0;
        f.run(&group("firing", &["db1"]), T0).await;
        let alice = code_in(&sent_since(&f, &mut seen)[0].1);
        let forged = format!("{}{}", &alice[..12], "A".repeat(12));
        for code in [
            forged.as_str(),
            "",
            "../../etc",
            &"A".repeat(24),
            &alice[..23],
        ] {
            assert!(
                matches!(
                    engine(&f, at(1, 0)).acknowledge(code, false).await,
                    Err(AckError::Unknown)
                ),
                "{code:?}"
            );
        }
        look(&f, at(10, 0)).await;
        assert_eq!(
            sent_since(&f, &mut seen).len(),
            1,
            "bob is paged: nothing was acknowledged"
        );
    }

    /// Alertmanager's side of the engine: a fake Alertmanager on loopback, asked as the job asks.
    mod alertmanager {
        use std::net::TcpListener;

        use serde_json::{Value, json};
        use wiremock::matchers::{body_json, method, path, query_param};
        use wiremock::{Mock, MockServer, Request, ResponseTemplate};

        use super::*;

        /// `CONFIG` with the Alertmanagers at `urls`.
        fn watched(urls: &[String]) -> Fixture {
            let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
            let yaml = format!(
                "{CONFIG}alertmanager: {{urls: [{}], timeout: 5s}}\n",
                urls.join(", ")
            );
            Fixture::on(&yaml, store())
        }

        /// A loopback address nothing listens on.
        fn nobody() -> String {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        }

        /// Runs `work` with the paused clock held still while it waits for loopback answers,
        /// which take real time: waiting, the runtime would move the clock on to the client's
        /// timeout. A blocking task that runs keeps it still (tokio's "preventing auto-advance").
        async fn held_still<T>(work: impl Future<Output = T>) -> T {
            let (release, released) = std::sync::mpsc::channel::<()>();
            let hold = tokio::task::spawn_blocking(move || released.recv());
            let done = work.await;
            drop(release);
            let _ = hold.await;
            done
        }

        /// A look of the job at `now`: the due steps paged, every open incident watched.
        async fn watch(f: &Fixture, now: DateTime<Utc>) {
            held_still(async {
                let engine = engine(f, now);
                for incident in engine.open_incidents().await.unwrap() {
                    engine.page_due(&incident.id).await.unwrap();
                    engine.watch(&incident).await;
                }
            })
            .await;
        }

        async fn acknowledge(f: &Fixture, now: DateTime<Utc>, code: &str) -> Acknowledged {
            held_still(engine(f, now).acknowledge(code, true))
                .await
                .unwrap()
        }

        /// Alertmanager's `gettableAlert` of `DiskFull` on `instance`, silenced by `silences`.
        fn held(instance: &str, silences: &[&str]) -> Value {
            json!({
                "fingerprint": format!("f-{instance}"),
                "labels": {"alertname": "DiskFull", "instance": instance, "severity": "critical"},
                "annotations": {"summary": format!("Disk on {instance} is full")},
                "startsAt": "2026-11-25T09:55:00Z",
                "endsAt": "2026-11-25T12:00:00Z",
                "updatedAt": "2026-11-25T09:55:00Z",
                "receivers": [{"name": "sms"}],
                "status": {
                    "state": if silences.is_empty() { "active" } else { "suppressed" },
                    "silencedBy": silences,
                    "inhibitedBy": [],
                }
            })
        }

        /// From now on `GET /api/v2/alerts` of the group answers `alerts`; what was mocked and
        /// asked before is forgotten.
        async fn holding(am: &MockServer, alerts: Vec<Value>) {
            am.reset().await;
            Mock::given(method("GET"))
                .and(path("/api/v2/alerts"))
                .and(query_param("filter", r#"alertname="DiskFull""#))
                .and(query_param("active", "true"))
                .and(query_param("silenced", "true"))
                .and(query_param("inhibited", "true"))
                .respond_with(ResponseTemplate::new(200).set_body_json(alerts))
                .mount(am)
                .await;
        }

        /// The body of this service's silence of the `DiskFull` group, as posted.
        fn silence_body(id: Option<&str>, by: &str, starts: &str, ends: &str) -> Value {
            let mut body = json!({
                // Every label the firing alerts share: these alerts, not every DiskFull.
                "matchers": [
                    {"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true},
                    {"name": "instance", "value": "db1", "isRegex": false, "isEqual": true},
                    {"name": "severity", "value": "critical", "isRegex": false, "isEqual": true}
                ],
                "startsAt": starts,
                "endsAt": ends,
                "createdBy": "alertmanager-sipgate",
                "comment": format!("Acknowledged by {by} via SMS"),
            });
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            body
        }

        fn silenced_labels() -> Vec<(String, String)> {
            [
                ("alertname", "DiskFull"),
                ("instance", "db1"),
                ("severity", "critical"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
        }

        /// Answers a posted silence with `id`, once.
        async fn makes_silence(am: &MockServer, body: Value, id: &str) {
            Mock::given(method("POST"))
                .and(path("/api/v2/silences"))
                .and(body_json(body))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"silenceID": id})))
                .expect(1)
                .mount(am)
                .await;
        }

        async fn requests(am: &MockServer) -> Vec<String> {
            am.received_requests()
                .await
                .unwrap()
                .iter()
                .map(|r: &Request| format!("{} {}", r.method, r.url.path()))
                .collect()
        }

        /// The value of `series`, 0 while it has none.
        fn metric(f: &Fixture, series: &str) -> f64 {
            f.metrics
                .render()
                .lines()
                .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
                .unwrap_or(0.0)
        }

        #[tokio::test(start_paused = true)]
        async fn acknowledge_and_silence_posts_the_groups_silence_and_records_it() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            let alice = code_in(&sent_since(&f, &mut seen)[0].1);
            makes_silence(
                &am,
                silence_body(
                    None,
                    "alice",
                    "2026-11-25T10:02:00Z",
                    "2026-11-25T11:02:00Z",
                ),
                "s-1",
            )
            .await;
            let acked = acknowledge(&f, at(2, 0), &alice).await;
            assert!(acked.now);
            assert_eq!(acked.silenced, Some(Ok(())));
            let incident = engine(&f, at(2, 0)).visit(&alice).await.unwrap().incident;
            assert_eq!(
                incident.silence,
                Some(OwnSilence {
                    id: "s-1".to_string(),
                    until: millis_at(at(62, 0)),
                    matchers: silenced_labels(),
                })
            );
            assert_eq!(requests(&am).await, ["POST /api/v2/silences"]);
            am.verify().await;
        }

        #[tokio::test(start_paused = true)]
        async fn an_acknowledgement_holds_when_no_alertmanager_can_make_its_silence() {
            let am = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(500))
                .mount(&am)
                .await;
            let f = watched(&[nobody(), am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            let alice = code_in(&sent_since(&f, &mut seen)[0].1);
            let acked = acknowledge(&f, at(2, 0), &alice).await;
            assert!(acked.now);
            let Some(Err(error)) = acked.silenced else {
                panic!("{:?}", acked.silenced);
            };
            assert!(
                error.starts_with("no Alertmanager answered: 127.0.0.1:"),
                "{error}"
            );
            assert!(error.ends_with(": HTTP 500"), "{error}");
            assert!(!error.contains("DiskFull"), "{error}");
            assert_eq!(
                metric(
                    &f,
                    "alertmanager_sipgate_alertmanager_errors_total{operation=\"silence\"}"
                ),
                1.0
            );
            let incident = engine(&f, at(2, 0)).visit(&alice).await.unwrap().incident;
            assert_eq!(incident.ack.unwrap().by.as_deref(), Some("alice"));
            assert_eq!(incident.silence, None);
            look(&f, at(10, 0)).await;
            look(&f, at(600, 0)).await;
            assert_eq!(sent_since(&f, &mut seen), vec![], "the escalation stopped");
        }

        #[tokio::test(start_paused = true)]
        async fn a_silence_made_by_someone_else_over_all_the_alerts_acknowledges() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1", "db2"]), T0).await;
            holding(&am, vec![held("db1", &[]), held("db2", &[])]).await;
            watch(&f, at(10, 0)).await;
            assert_eq!(sent_since(&f, &mut seen).len(), 2, "alice, then bob");
            // Someone silences db1 only: not acknowledged, carol is paged at her time.
            holding(&am, vec![held("db1", &["theirs"]), held("db2", &[])]).await;
            watch(&f, at(12, 0)).await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
            // Then both: acknowledged by silence; everyone paged is told, nobody more is paged.
            holding(
                &am,
                vec![held("db1", &["theirs"]), held("db2", &["theirs", "more"])],
            )
            .await;
            watch(&f, at(13, 0)).await;
            let ack = "ACK DiskFull by silence".to_string();
            assert_eq!(
                sent_since(&f, &mut seen),
                vec![(ALICE.to_string(), ack.clone()), (BOB.to_string(), ack)]
            );
            watch(&f, at(25, 0)).await;
            watch(&f, at(100, 0)).await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
            assert_eq!(
                metric(
                    &f,
                    "alertmanager_sipgate_acknowledgements_total{via=\"silence\"}"
                ),
                1.0
            );
            let incident = engine(&f, at(100, 0)).open_incidents().await.unwrap();
            assert_eq!(incident[0].ack.as_ref().unwrap().via, Via::Silence);
        }

        #[tokio::test(start_paused = true)]
        async fn this_services_own_silence_is_not_an_acknowledgement_by_silence() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            watch(&f, at(10, 0)).await;
            let bob = code_in(&sent_since(&f, &mut seen)[1].1);
            makes_silence(
                &am,
                silence_body(None, "bob", "2026-11-25T10:11:00Z", "2026-11-25T11:11:00Z"),
                "ours",
            )
            .await;
            acknowledge(&f, at(11, 0), &bob).await;
            assert_eq!(
                sent_since(&f, &mut seen),
                vec![(ALICE.to_string(), "ACK DiskFull by bob".to_string())]
            );
            holding(&am, vec![held("db1", &["ours"])]).await;
            watch(&f, at(12, 0)).await;
            watch(&f, at(25, 0)).await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
            let incidents = engine(&f, at(25, 0)).open_incidents().await.unwrap();
            let ack = incidents[0].ack.as_ref().unwrap();
            assert_eq!((ack.by.as_deref(), ack.via), (Some("bob"), Via::Link));
            assert_eq!(
                metric(
                    &f,
                    "alertmanager_sipgate_acknowledgements_total{via=\"silence\"}"
                ),
                0.0
            );
        }

        #[tokio::test(start_paused = true)]
        async fn alerts_of_other_groups_in_the_answer_are_not_the_incidents() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            // An Alertmanager that ignores the filter: other groups' alerts, all silenced by
            // someone, beside the incident's own, unsilenced one.
            let mut other = held("web1", &["theirs"]);
            other["labels"]["alertname"] = json!("HighLatency");
            other["fingerprint"] = json!("f-other");
            holding(&am, vec![other.clone(), held("db1", &[])]).await;
            watch(&f, at(10, 0)).await;
            assert_eq!(sent_since(&f, &mut seen).len(), 2, "alice, then bob");
            // Only the others left: the incident's alert is gone, for resolved_after it resolved.
            holding(&am, vec![other]).await;
            watch(&f, at(11, 0)).await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
            watch(&f, at(14, 0)).await;
            let resolved =
                "RESOLVED DiskFull db1 at Nov 25 10:11 UTC: Disk on db1 is full".to_string();
            assert_eq!(
                sent_since(&f, &mut seen),
                vec![
                    (ALICE.to_string(), resolved.clone()),
                    (BOB.to_string(), resolved)
                ]
            );
            assert_eq!(
                metric(
                    &f,
                    "alertmanager_sipgate_acknowledgements_total{via=\"silence\"}"
                ),
                0.0
            );
        }

        #[tokio::test(start_paused = true)]
        async fn alerts_gone_from_alertmanager_end_the_incident_once_and_expire_its_silence() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            holding(&am, vec![held("db1", &[])]).await;
            watch(&f, at(10, 0)).await;
            let bob = code_in(&sent_since(&f, &mut seen)[1].1);
            makes_silence(
                &am,
                silence_body(None, "bob", "2026-11-25T10:11:00Z", "2026-11-25T11:11:00Z"),
                "s-1",
            )
            .await;
            acknowledge(&f, at(11, 0), &bob).await;
            sent_since(&f, &mut seen);
            // The silenced group resolves: Alertmanager sends no notification, its alert is gone.
            holding(&am, vec![]).await;
            Mock::given(method("DELETE"))
                .and(path("/api/v2/silence/s-1"))
                .respond_with(ResponseTemplate::new(200))
                .expect(1)
                .mount(&am)
                .await;
            watch(&f, at(20, 0)).await;
            assert_eq!(
                sent_since(&f, &mut seen),
                vec![],
                "missing, not yet for resolved_after"
            );
            watch(&f, at(23, 0)).await;
            // Resolved after resolved_after, as of when Alertmanager was first seen without them.
            let resolved =
                "RESOLVED DiskFull db1 at Nov 25 10:20 UTC: Disk on db1 is full".to_string();
            assert_eq!(
                sent_since(&f, &mut seen),
                vec![
                    (ALICE.to_string(), resolved.clone()),
                    (BOB.to_string(), resolved)
                ]
            );
            assert_eq!(
                requests(&am).await,
                [
                    "GET /api/v2/alerts",
                    "GET /api/v2/alerts",
                    "DELETE /api/v2/silence/s-1"
                ]
            );
            assert!(
                engine(&f, at(23, 0))
                    .open_incidents()
                    .await
                    .unwrap()
                    .is_empty()
            );
            // Neither the next look nor a late resolved notification tells anyone again.
            watch(&f, at(24, 0)).await;
            f.run(&group("resolved", &["db1"]), &at(25, 0).to_rfc3339())
                .await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
            assert_eq!(requests(&am).await.len(), 3);
            am.verify().await;
        }

        #[tokio::test(start_paused = true)]
        async fn an_alertmanager_that_never_held_the_alerts_resolves_nothing() {
            // Another cluster's Alertmanager, or one not told yet: its empty answer means nothing.
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            holding(&am, vec![]).await;
            for minute in [1, 5, 9] {
                watch(&f, at(minute, 0)).await;
            }
            look(&f, at(10, 0)).await;
            let sent = sent_since(&f, &mut seen);
            assert_eq!(sent.len(), 2, "alice, then bob: {sent:?}");
            assert_eq!(sent[1].0, BOB);
        }

        #[tokio::test(start_paused = true)]
        async fn alerts_missing_for_less_than_resolved_after_are_no_resolution() {
            // Alertmanager restarted (it keeps no alerts) until Prometheus sent them again.
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            holding(&am, vec![held("db1", &[])]).await;
            watch(&f, at(1, 0)).await;
            holding(&am, vec![]).await;
            watch(&f, at(2, 0)).await;
            holding(&am, vec![held("db1", &[])]).await;
            watch(&f, at(3, 0)).await;
            holding(&am, vec![]).await;
            // Missing since 4:00, 2m59s at 6:59: not yet; the clock restarted at 4:00.
            watch(&f, at(4, 0)).await;
            watch(&f, at(6, 59)).await;
            assert_eq!(sent_since(&f, &mut seen).len(), 1, "alice's page only");
            watch(&f, at(7, 0)).await;
            let sent = sent_since(&f, &mut seen);
            assert_eq!(sent.len(), 1, "{sent:?}");
            assert!(
                sent[0]
                    .1
                    .starts_with("RESOLVED DiskFull db1 at Nov 25 10:04 UTC"),
                "{sent:?}"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn the_escalation_goes_on_while_alertmanager_is_down() {
            let am = MockServer::start().await;
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(503))
                .mount(&am)
                .await;
            let f = watched(&[am.uri(), nobody()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            sent_since(&f, &mut seen);
            watch(&f, at(9, 59)).await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
            watch(&f, at(10, 0)).await;
            let paged = sent_since(&f, &mut seen);
            assert_eq!(paged.len(), 1);
            assert_eq!(paged[0].0, BOB);
            assert_eq!(
                metric(
                    &f,
                    "alertmanager_sipgate_alertmanager_errors_total{operation=\"alerts\"}"
                ),
                2.0
            );
            assert_eq!(
                engine(&f, at(10, 0)).open_incidents().await.unwrap().len(),
                1
            );
        }

        #[tokio::test(start_paused = true)]
        async fn our_silence_is_renewed_when_less_than_half_of_it_is_left() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            f.run(&group("firing", &["db1"]), T0).await;
            let alice = code_in(&sent_since(&f, &mut seen)[0].1);
            makes_silence(
                &am,
                silence_body(
                    None,
                    "alice",
                    "2026-11-25T10:02:00Z",
                    "2026-11-25T11:02:00Z",
                ),
                "s-1",
            )
            .await;
            acknowledge(&f, at(2, 0), &alice).await;
            holding(&am, vec![held("db1", &["s-1"])]).await;
            // 30 min left is half: not yet.
            watch(&f, at(32, 0)).await;
            assert_eq!(requests(&am).await, ["GET /api/v2/alerts"]);
            Mock::given(method("GET"))
                .and(path("/api/v2/silence/s-1"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "id": "s-1",
                    "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": false, "isEqual": true}],
                    "startsAt": "2026-11-25T10:02:00.123Z",
                    "endsAt": "2026-11-25T11:02:00Z",
                    "updatedAt": "2026-11-25T10:02:00.123Z",
                    "createdBy": "alertmanager-sipgate",
                    "comment": "Acknowledged by alice via SMS",
                    "status": {"state": "active"}
                })))
                .mount(&am)
                .await;
            makes_silence(
                &am,
                silence_body(
                    Some("s-1"),
                    "alice",
                    "2026-11-25T10:02:00.123Z",
                    "2026-11-25T11:32:01Z",
                ),
                "s-1",
            )
            .await;
            watch(&f, at(32, 1)).await;
            assert_eq!(
                requests(&am).await,
                [
                    "GET /api/v2/alerts",
                    "GET /api/v2/alerts",
                    "GET /api/v2/silence/s-1",
                    "POST /api/v2/silences"
                ]
            );
            let incident = engine(&f, at(33, 0)).visit(&alice).await.unwrap().incident;
            assert_eq!(
                incident.silence,
                Some(OwnSilence {
                    id: "s-1".to_string(),
                    until: millis_at(at(92, 1)),
                    matchers: silenced_labels(),
                })
            );
            // Renewed, it is not renewed again at the next look.
            watch(&f, at(33, 0)).await;
            assert_eq!(requests(&am).await.len(), 5);
            am.verify().await;
            assert_eq!(sent_since(&f, &mut seen), vec![]);
        }

        #[tokio::test(start_paused = true)]
        async fn an_incident_from_grafana_is_not_looked_up_in_alertmanager() {
            let am = MockServer::start().await;
            let f = watched(&[am.uri()]);
            let mut seen = 0;
            let grafana = group("firing", &["db1"]).replacen('{', r#"{"version":"1","#, 1);
            f.run(&grafana, T0).await;
            assert_eq!(sent_since(&f, &mut seen).len(), 1);
            watch(&f, at(10, 0)).await;
            assert_eq!(sent_since(&f, &mut seen)[0].0, BOB);
            assert_eq!(requests(&am).await, Vec::<String>::new());
        }
    }
}
