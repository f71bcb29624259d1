//! An escalation policy: whom to page first, how long to wait for an acknowledgement before the
//! next step, and how often to run the steps again when nobody answers.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::oncall::Schedule;
use crate::routing::target::Target;

/// The largest `repeat`: six rounds of pages nobody answers are enough to give up on.
pub const MAX_REPEAT: u8 = 5;

/// One entry of `escalation_policies:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    /// At least one.
    pub steps: Vec<Step>,
    /// How often the steps run again after the last one, at most `MAX_REPEAT`.
    pub repeat: u8,
    /// Whether the others paged get `ACK <alertname> by alice` when one acknowledges.
    pub ack_notice: bool,
}

/// Who is paged together, and how long they have to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// At least one.
    pub to: Vec<Target>,
    /// Before the next step (or, for the last step, before the steps run again). Set on every
    /// step but the last, and on the last one when the policy repeats.
    pub wait: Option<Duration>,
}

impl Policy {
    /// The plan of an incident opened at `at`, in words: each step with the people its targets
    /// reach when it would be paged, e.g. `primary (alice) now, then after 10m ops-lead;
    /// repeats 1 time`. Schedules are resolved at the instant of their step, as if nobody
    /// acknowledged.
    pub fn plan_at(&self, schedules: &BTreeMap<String, Schedule>, at: DateTime<Utc>) -> String {
        let mut plan = String::new();
        let mut paged_at = at;
        let mut waited = Duration::ZERO;
        for (i, step) in self.steps.iter().enumerate() {
            if i == 0 {
                plan.push_str(&step.describe_at(schedules, paged_at));
                plan.push_str(" now");
            } else {
                plan.push_str(&format!(
                    ", then after {} {}",
                    humantime::format_duration(waited),
                    step.describe_at(schedules, paged_at)
                ));
            }
            waited = step.wait.unwrap_or_default();
            paged_at = chrono::Duration::from_std(waited)
                .ok()
                .and_then(|wait| paged_at.checked_add_signed(wait))
                .unwrap_or(paged_at);
        }
        match self.repeat {
            0 => plan.push_str("; does not repeat"),
            1 => plan.push_str(&format!(
                "; repeats 1 time after {}",
                humantime::format_duration(waited)
            )),
            n => plan.push_str(&format!(
                "; repeats {n} times after {} each",
                humantime::format_duration(waited)
            )),
        }
        plan
    }
}

impl Step {
    /// `primary (alice), oncall (alice, bob), carol`: a person by name, a group or schedule with
    /// whom it reaches at `at`.
    fn describe_at(&self, schedules: &BTreeMap<String, Schedule>, at: DateTime<Utc>) -> String {
        self.to
            .iter()
            .map(|target| match target {
                Target::Person(name) => name.clone(),
                _ => format!(
                    "{} ({})",
                    target.name(),
                    target.people_at(schedules, at).join(", ")
                ),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn plan(policy: &str) -> String {
        let config = Config::from_yaml(
            &format!(
                "recipients: {{alice: \"+4915228817386\", bob: \"+4915254599371\"}}\n\
                 groups: {{both: [bob, alice]}}\n\
                 routes: [{{name: r, to: [alice]}}]\n\
                 escalation_policies: {{p: {policy}}}\n"
            ),
            Path::new("test.yml"),
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        config.escalation_policies["p"].plan_at(&config.schedules, chrono::DateTime::UNIX_EPOCH)
    }

    #[test]
    fn the_plan_says_whom_each_step_pages_and_how_often_it_repeats() {
        assert_eq!(
            plan("{steps: [{to: [alice]}]}"),
            "alice now; does not repeat"
        );
        assert_eq!(
            plan("{steps: [{to: [alice], wait: 5m}, {to: [both], wait: 1h30m}], repeat: 3}"),
            "alice now, then after 5m both (bob, alice); repeats 3 times after 1h 30m each"
        );
    }
}
