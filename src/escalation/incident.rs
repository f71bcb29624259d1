//! An incident: one alert group on one route with an escalation policy, from its first firing
//! notification until its alerts resolved. What it remembers, and how it moves from step to
//! step; no I/O here, so that every rule is a plain function of the incident and the time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Millis, millis};
use crate::escalation::code;
use crate::model::alert::{AlertStatus, Notification};
use crate::routing::policy::Policy;

/// How long an open incident is kept after its last change: a repeat notification of a group
/// that still fires writes it again long before.
pub const OPEN_TTL: Duration = Duration::from_secs(30 * 86_400);
/// How late a step may go out and the next still count from when it was due.
const LATE: Duration = Duration::from_secs(60);
/// How long an ended incident, and so its acknowledgement links, are kept.
pub const ENDED_TTL: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub route: String,
    pub policy: String,
    pub opened_at: Millis,
    /// The group as last notified: the text of every later step shows its current alerts.
    pub notification: Notification,
    /// The next step to page; `None` once acknowledged, ended or out of steps.
    pub next: Option<Next>,
    /// The steps paged so far, in order.
    pub pages: Vec<Page>,
    /// Each person paged, with the code of their link.
    pub codes: BTreeMap<String, String>,
    pub ack: Option<Ack>,
    /// The silence this service made for an acknowledgement, while it holds.
    pub silence: Option<OwnSilence>,
    pub ended_at: Option<Millis>,
    /// The steps ran out and nobody acknowledged.
    pub exhausted: bool,
    /// Alertmanager was seen holding its alerts: only then does their absence mean anything
    /// (an Alertmanager of another cluster, or one not yet told, holds none).
    #[serde(default)]
    pub seen_in_alertmanager: bool,
    /// Since when Alertmanager holds none of its alerts; they count as resolved after
    /// `alertmanager.resolved_after`.
    #[serde(default)]
    pub missing_since: Option<Millis>,
}

/// A step due to be paged: `step` of the policy in round `round` (0 is the first run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Next {
    pub step: usize,
    pub round: u8,
    pub due: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub step: usize,
    pub round: u8,
    pub at: Millis,
    pub people: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Whose link; `None` for a silence someone made in Alertmanager.
    pub by: Option<String>,
    pub via: Via,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Link,
    Silence,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Link => "link",
            Via::Silence => "silence",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnSilence {
    pub id: String,
    pub until: Millis,
    /// As made, for every renewal.
    #[serde(default)]
    pub matchers: Vec<(String, String)>,
}

impl Incident {
    /// A new incident whose first step is due at once.
    pub fn open(
        id: String,
        route: &str,
        policy: &str,
        notification: Notification,
        now: Millis,
    ) -> Self {
        Incident {
            id,
            route: route.to_string(),
            policy: policy.to_string(),
            opened_at: now,
            notification,
            next: Some(Next {
                step: 0,
                round: 0,
                due: now,
            }),
            pages: Vec::new(),
            codes: BTreeMap::new(),
            ack: None,
            silence: None,
            ended_at: None,
            exhausted: false,
            seen_in_alertmanager: false,
            missing_since: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Whether its links no longer lead to it: a day after it ended. The store forgets it then
    /// too, by its own clock; this holds by the service's.
    pub fn links_expired(&self, now: Millis) -> bool {
        self.ended_at
            .is_some_and(|ended| now >= ended.saturating_add(millis(ENDED_TTL)))
    }

    /// How long the store keeps it after a write now.
    pub fn ttl(&self) -> Duration {
        if self.is_open() { OPEN_TTL } else { ENDED_TTL }
    }

    /// The step to page at `now`, if one is due.
    pub fn due(&self, now: Millis) -> Option<Next> {
        self.next.filter(|next| next.due <= now && self.is_open())
    }

    /// Gives each of `people` a code who has none yet; true when one was added.
    pub fn give_codes(&mut self, people: &[String]) -> Result<bool, code::NoRandom> {
        let mut added = false;
        for person in people {
            if !self.codes.contains_key(person) {
                self.codes.insert(person.clone(), code::new_code(&self.id)?);
                added = true;
            }
        }
        Ok(added)
    }

    /// Records that `paged` went out and moves on: the next step after its wait, counted from
    /// when this step was due (not when it went out, unless that was over a minute later), so
    /// that the times do not drift; after the last step the first again while rounds are left,
    /// then nothing.
    pub fn paged(&mut self, paged: Next, people: Vec<String>, now: Millis, policy: &Policy) {
        if self.next != Some(paged) {
            return;
        }
        self.pages.push(Page {
            step: paged.step,
            round: paged.round,
            at: now,
            people,
        });
        let wait = policy
            .steps
            .get(paged.step)
            .and_then(|step| step.wait)
            .map_or(0, millis);
        // A step that went out much later than due (the provider down, no replica running)
        // leaves the next one its whole wait, rather than paging it right behind.
        let base = if now.saturating_sub(paged.due) > millis(LATE) {
            now
        } else {
            paged.due
        };
        let due = base.saturating_add(wait);
        self.next = if paged.step + 1 < policy.steps.len() {
            Some(Next {
                step: paged.step + 1,
                round: paged.round,
                due,
            })
        } else if paged.round < policy.repeat {
            Some(Next {
                step: 0,
                round: paged.round + 1,
                due,
            })
        } else {
            self.exhausted = true;
            None
        };
    }

    /// Stops the escalation; false when it was acknowledged or ended already.
    pub fn acknowledge(&mut self, by: Option<String>, via: Via, now: Millis) -> bool {
        if self.ack.is_some() || !self.is_open() {
            return false;
        }
        self.ack = Some(Ack { by, via, at: now });
        self.next = None;
        true
    }

    /// All its alerts resolved; false when it had ended already.
    pub fn end(&mut self, now: Millis) -> bool {
        if !self.is_open() {
            return false;
        }
        self.ended_at = Some(now);
        self.next = None;
        true
    }

    /// Everyone paged so far, in the order they were first paged.
    pub fn paged_people(&self) -> Vec<&str> {
        let mut people: Vec<&str> = Vec::new();
        for page in &self.pages {
            for person in &page.people {
                if !people.contains(&person.as_str()) {
                    people.push(person);
                }
            }
        }
        people
    }

    /// The person whose code `code` is.
    pub fn person_of(&self, code: &str) -> Option<&str> {
        self.codes
            .iter()
            .find(|(_, kept)| code::same(code, kept))
            .map(|(person, _)| person.as_str())
    }

    /// The fingerprints of the alerts that fire.
    pub fn firing(&self) -> Vec<&str> {
        self.notification
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|a| a.fingerprint.as_str())
            .collect()
    }

    /// The alert name the texts use for the whole incident.
    pub fn alertname(&self) -> &str {
        let n = &self.notification;
        n.common_labels
            .get("alertname")
            .or_else(|| n.group_labels.get("alertname"))
            .or_else(|| n.alerts.iter().find_map(|a| a.labels.get("alertname")))
            .map_or("alert", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::alert::Alert;
    use crate::routing::Target;
    use crate::routing::policy::Step;

    const MIN: Millis = 60_000;

    fn policy(waits: &[Option<u64>], repeat: u8) -> Policy {
        Policy {
            name: "p".into(),
            steps: waits
                .iter()
                .enumerate()
                .map(|(i, wait)| Step {
                    to: vec![Target::Person(format!("person{i}"))],
                    wait: wait.map(|m| Duration::from_secs(m * 60)),
                })
                .collect(),
            repeat,
            ack_notice: true,
        }
    }

    fn incident() -> Incident {
        let notification = Notification::of(vec![Alert::firing(&[("alertname", "DiskFull")])]);
        Incident::open("id".into(), "r", "p", notification, 1_000)
    }

    /// Pages every due step until none is left; the (step, round, due) of each.
    fn run(incident: &mut Incident, policy: &Policy) -> Vec<(usize, u8, Millis)> {
        let mut paged = Vec::new();
        while let Some(next) = incident.next {
            paged.push((next.step, next.round, next.due));
            incident.paged(next, vec![], next.due + 5, policy);
        }
        paged
    }

    #[test]
    fn steps_come_after_their_waits_from_when_each_was_due_and_repeat() {
        let p = policy(&[Some(10), Some(15), Some(5)], 1);
        let mut i = incident();
        assert_eq!(
            run(&mut i, &p),
            vec![
                (0, 0, 1_000),
                (1, 0, 1_000 + 10 * MIN),
                (2, 0, 1_000 + 25 * MIN),
                (0, 1, 1_000 + 30 * MIN),
                (1, 1, 1_000 + 40 * MIN),
                (2, 1, 1_000 + 55 * MIN),
            ]
        );
        assert!(i.exhausted);
        assert_eq!(i.due(u64::MAX), None);
    }

    #[test]
    fn without_repeat_the_last_step_ends_the_escalation() {
        let p = policy(&[Some(10), None], 0);
        let mut i = incident();
        assert_eq!(
            run(&mut i, &p),
            vec![(0, 0, 1_000), (1, 0, 1_000 + 10 * MIN)]
        );
        assert!(i.exhausted);
    }

    #[test]
    fn a_step_is_due_only_from_its_time_on() {
        let p = policy(&[Some(10), None], 0);
        let mut i = incident();
        let first = i.due(1_000).unwrap();
        i.paged(first, vec!["person0".into()], 1_000, &p);
        assert_eq!(i.due(1_000 + 10 * MIN - 1), None);
        assert_eq!(i.due(1_000 + 10 * MIN).map(|n| n.step), Some(1));
    }

    #[test]
    fn a_step_that_went_out_long_after_it_was_due_leaves_the_next_its_whole_wait() {
        let p = policy(&[Some(10), Some(10), None], 0);
        let mut i = incident();
        // Sipgate was down for 20 minutes: step 1 went out at 21 minutes.
        let first = i.due(1_000).unwrap();
        i.paged(first, vec![], 1_000 + 21 * MIN, &p);
        assert_eq!(i.next.map(|n| n.due), Some(1_000 + 31 * MIN));
        // Late by a minute at most: counted from when it was due.
        let second = i.next.unwrap();
        i.paged(second, vec![], second.due + MIN, &p);
        assert_eq!(i.next.map(|n| n.due), Some(second.due + 10 * MIN));
    }

    #[test]
    fn a_step_recorded_twice_moves_on_once() {
        let p = policy(&[Some(10), Some(10), None], 0);
        let mut i = incident();
        let first = i.due(1_000).unwrap();
        i.paged(first, vec![], 1_000, &p);
        i.paged(first, vec![], 1_001, &p);
        assert_eq!(i.next.map(|n| n.step), Some(1));
        assert_eq!(i.pages.len(), 1);
    }

    #[test]
    fn an_acknowledgement_stops_the_escalation_and_counts_once() {
        let p = policy(&[Some(10), None], 0);
        let mut i = incident();
        i.paged(i.due(1_000).unwrap(), vec!["person0".into()], 1_000, &p);
        assert!(i.acknowledge(Some("person0".into()), Via::Link, 2_000));
        assert!(!i.acknowledge(None, Via::Silence, 3_000));
        assert_eq!(i.due(u64::MAX), None);
        assert_eq!(i.ack.as_ref().unwrap().by.as_deref(), Some("person0"));
        assert!(!i.exhausted);
    }

    #[test]
    fn an_ended_incident_pages_nobody_and_takes_no_acknowledgement() {
        let mut i = incident();
        assert!(i.end(5_000));
        assert!(!i.end(6_000));
        assert_eq!(i.due(u64::MAX), None);
        assert!(!i.acknowledge(Some("a".into()), Via::Link, 7_000));
        assert_eq!(i.ttl(), ENDED_TTL);
        assert!(!i.links_expired(5_000 + 86_400_000 - 1));
        assert!(i.links_expired(5_000 + 86_400_000));
    }

    #[test]
    fn codes_are_given_once_per_person_and_find_their_person() {
        let mut i = incident();
        let people = vec!["alice".to_string(), "bob".to_string()];
        assert!(i.give_codes(&people).unwrap());
        assert!(!i.give_codes(&people[..1]).unwrap());
        let alice = i.codes["alice"].clone();
        assert_eq!(i.person_of(&alice), Some("alice"));
        assert_eq!(i.person_of(&i.codes["bob"].clone()), Some("bob"));
        assert_eq!(i.person_of("x"), None);
    }
}
