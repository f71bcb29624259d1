//! The `escalation_policies:` section: whom each step pages, how long it waits for an
//! acknowledgement, and how often the steps run again.

use serde::Deserialize;
use std::collections::BTreeMap;

use super::field::{name_is_valid, parse_duration};
use super::problem::{Problem, problem};
use super::routes::{Targets, resolve};
use crate::routing::policy::MAX_REPEAT;
use crate::routing::policy::{Policy, Step};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    steps: Vec<RawStep>,
    /// Wider than `u8`, so that `repeat: 300` or `-1` is told the range rather than a type.
    repeat: Option<i64>,
    /// `ACK <alertname> by alice` to the others paged; on unless `false`.
    ack_notice: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    #[serde(default)]
    to: Vec<String>,
    wait: Option<String>,
}

pub(super) fn policies(
    raw: BTreeMap<String, RawPolicy>,
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Policy> {
    let mut out = BTreeMap::new();
    for (name, raw) in raw {
        let at = format!("escalation_policies.{name}");
        name_is_valid(&name, &at, problems);
        let repeat = repeat(raw.repeat, &at, problems);
        if raw.steps.is_empty() {
            problem(
                problems,
                format!("{at}.steps"),
                "a policy needs at least one step",
            );
        }
        let last = raw.steps.len().saturating_sub(1);
        let steps = raw
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let at = format!("{at}.steps[{i}]");
                // With a bad repeat, the last wait is not blamed for it.
                let after = match (i == last, repeat) {
                    (false, _) => After::NextStep,
                    (true, Some(0)) => After::Nothing,
                    (true, Some(repeat)) => After::Repeat(repeat),
                    (true, None) => After::Unknown,
                };
                step(raw, &at, after, targets, problems)
            })
            .collect();
        out.insert(
            name.clone(),
            Policy {
                name,
                steps,
                repeat: repeat.unwrap_or(0),
                ack_notice: raw.ack_notice.unwrap_or(true),
            },
        );
    }
    out
}

/// `repeat:` under `at`, 0 when absent; none (and a problem) when out of range.
fn repeat(written: Option<i64>, at: &str, problems: &mut Vec<Problem>) -> Option<u8> {
    let written = written.unwrap_or(0);
    match u8::try_from(written) {
        Ok(repeat) if repeat <= MAX_REPEAT => Some(repeat),
        _ => {
            problem(
                problems,
                format!("{at}.repeat"),
                format!("must be between 0 and {MAX_REPEAT}, got {written}"),
            );
            None
        }
    }
}

/// What follows a step once its wait is over.
enum After {
    NextStep,
    /// The last step of a policy that does not repeat.
    Nothing,
    /// The last step: the steps run again, this many times.
    Repeat(u8),
    /// The last step of a policy whose `repeat` is invalid.
    Unknown,
}

/// The step at `at`. Its wait leads to the next step, or for the last step to the steps again:
/// required where something follows, refused on the last step of a policy that does not repeat,
/// where it would wait for nothing and only mislead whoever reads the config.
fn step(
    raw: RawStep,
    at: &str,
    after: After,
    targets: &Targets<'_>,
    problems: &mut Vec<Problem>,
) -> Step {
    if raw.to.is_empty() {
        problem(
            problems,
            format!("{at}.to"),
            "a step needs at least one recipient, group or schedule",
        );
    }
    let to = resolve(at, &raw.to, targets, problems);
    let field = format!("{at}.wait");
    let wait = match (raw.wait.as_deref().map(parse_duration), after) {
        (Some(Ok(_)), After::Nothing) => {
            problem(
                problems,
                field,
                "nothing follows the last step without repeat; remove wait, or set repeat to \
                 run the steps again after it",
            );
            None
        }
        (Some(Ok(wait)), _) => Some(wait),
        (Some(Err(e)), _) => {
            problem(problems, field, e);
            None
        }
        (None, After::NextStep) => {
            problem(
                problems,
                field,
                "missing: how long the step waits for an acknowledgement before the next one, \
                 e.g. 10m",
            );
            None
        }
        (None, After::Nothing | After::Unknown) => None,
        (None, After::Repeat(repeat)) => {
            problem(
                problems,
                field,
                format!(
                    "missing: with repeat: {repeat} the last step waits this long for an \
                     acknowledgement before the steps run again, e.g. 10m"
                ),
            );
            None
        }
    };
    Step { to, wait }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{load, problems};
    use crate::routing::Target;
    use crate::routing::policy::{Policy, Step};

    /// A phone book, a group and a schedule, and `policies` under `escalation_policies:`.
    fn with_policies(policies: &str) -> String {
        format!(
            "recipients: {{alice: \"+4915228817386\", bob: \"+4915254599371\", carol: \"+4915254599372\"}}\n\
             groups: {{ops: [bob, carol]}}\n\
             schedules: {{primary: {{rotation: {{members: [alice, bob], shift: 1w, start: '2026-01-05T09:00'}}}}}}\n\
             routes: [{{name: r, to: [alice]}}]\n\
             escalation_policies:\n{policies}"
        )
    }

    #[test]
    fn a_policy_resolves_each_step_to_persons_groups_and_schedules() {
        let config = load(&with_policies(
            "  critical:\n\
             \x20   steps:\n\
             \x20     - {to: [primary], wait: 10m}\n\
             \x20     - {to: [ops, alice], wait: 15m}\n\
             \x20     - {to: [carol], wait: 1h}\n\
             \x20   repeat: 2\n\
             \x20 simple: {steps: [{to: [alice]}]}\n",
        ))
        .unwrap();
        assert_eq!(
            config.escalation_policies["critical"],
            Policy {
                name: "critical".to_string(),
                steps: vec![
                    Step {
                        to: vec![Target::Schedule("primary".to_string())],
                        wait: Some(Duration::from_secs(600)),
                    },
                    Step {
                        to: vec![
                            Target::Group {
                                name: "ops".to_string(),
                                members: vec!["bob".to_string(), "carol".to_string()],
                            },
                            Target::Person("alice".to_string()),
                        ],
                        wait: Some(Duration::from_secs(900)),
                    },
                    Step {
                        to: vec![Target::Person("carol".to_string())],
                        wait: Some(Duration::from_secs(3600)),
                    },
                ],
                repeat: 2,
                ack_notice: true,
            }
        );
        let simple = &config.escalation_policies["simple"];
        assert_eq!(simple.repeat, 0);
        assert_eq!(simple.steps[0].wait, None);
    }

    #[test]
    fn each_bad_step_is_named_at_its_field() {
        let listed = |policies: &str| problems(&with_policies(policies));
        assert_eq!(
            listed("  p: {steps: [{to: [alice, dave], wait: 5m}, {to: [bob]}]}\n"),
            ["escalation_policies.p.steps[0].to[1]: unknown recipient, group or schedule \"dave\""]
        );
        assert_eq!(
            listed("  p: {steps: []}\n"),
            ["escalation_policies.p.steps: a policy needs at least one step"]
        );
        assert_eq!(
            listed("  p: {repeat: 1}\n"),
            ["escalation_policies.p.steps: a policy needs at least one step"]
        );
        assert_eq!(
            listed("  p: {steps: [{to: [], wait: 5m}, {to: [bob]}]}\n"),
            [
                "escalation_policies.p.steps[0].to: a step needs at least one recipient, group or schedule"
            ]
        );
        assert_eq!(
            listed("  p: {steps: [{to: [alice]}, {to: [bob]}]}\n"),
            [
                "escalation_policies.p.steps[0].wait: missing: how long the step waits for an \
              acknowledgement before the next one, e.g. 10m"
            ]
        );
        assert_eq!(
            listed("  p: {steps: [{to: [alice], wait: 0s}, {to: [bob]}]}\n"),
            ["escalation_policies.p.steps[0].wait: duration \"0s\" must be greater than zero"]
        );
        assert_eq!(
            listed("  p: {steps: [{to: [alice], wait: soon}, {to: [bob]}]}\n"),
            [
                "escalation_policies.p.steps[0].wait: invalid duration \"soon\" (expected number at 0); \
              use e.g. \"5s\", \"10m\", \"1h\""
            ]
        );
    }

    #[test]
    fn the_last_wait_is_the_pause_before_a_repeat() {
        let listed = |policies: &str| problems(&with_policies(policies));
        assert_eq!(
            listed("  p: {steps: [{to: [alice], wait: 5m}, {to: [bob]}], repeat: 1}\n"),
            [
                "escalation_policies.p.steps[1].wait: missing: with repeat: 1 the last step waits \
              this long for an acknowledgement before the steps run again, e.g. 10m"
            ]
        );
        assert_eq!(
            listed("  p: {steps: [{to: [alice], wait: 5m}, {to: [bob], wait: 5m}]}\n"),
            [
                "escalation_policies.p.steps[1].wait: nothing follows the last step without repeat; \
              remove wait, or set repeat to run the steps again after it"
            ]
        );
        let config = load(&with_policies(
            "  p: {steps: [{to: [alice], wait: 5m}, {to: [bob], wait: 20m}], repeat: 5}\n",
        ))
        .unwrap();
        assert_eq!(
            config.escalation_policies["p"].steps[1].wait,
            Some(Duration::from_secs(1200))
        );
    }

    #[test]
    fn repeat_is_between_0_and_5() {
        for repeat in ["6", "-1", "300"] {
            assert_eq!(
                problems(&with_policies(&format!(
                    "  p: {{steps: [{{to: [alice], wait: 5m}}], repeat: {repeat}}}\n"
                ))),
                [format!(
                    "escalation_policies.p.repeat: must be between 0 and 5, got {repeat}"
                )]
            );
        }
        assert_eq!(
            problems(&with_policies(
                "  p: {steps: [{to: [alice], wait: 5m}], repeat: twice}\n"
            )),
            ["escalation_policies.p.repeat: invalid type: string, expected i64"]
        );
    }

    #[test]
    fn unknown_keys_and_bad_names_of_policies_are_refused() {
        assert_eq!(
            problems(&with_policies(
                "  p: {steps: [{to: [alice]}], repeats: 1}\n"
            )),
            [
                "escalation_policies.p.repeats: unknown field `repeats`, expected one of `steps`, `repeat`, `ack_notice`"
            ]
        );
        assert_eq!(
            problems(&with_policies("  p: {steps: [{to: [alice], delay: 5m}]}\n")),
            [
                "escalation_policies.p.steps[0].delay: unknown field `delay`, expected `to` or `wait`"
            ]
        );
        assert_eq!(
            problems(&with_policies(
                "  \"night shift\": {steps: [{to: [alice]}]}\n"
            )),
            [
                "escalation_policies.night shift: invalid name; names may use letters, digits, '_', '-' and '.'"
            ]
        );
    }
}
