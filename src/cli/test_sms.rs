//! `test-sms`: one SMS sent now to a name from the config, the operator's first check that a
//! Sipgate token works. It goes through the same provider as every alert SMS, but outside the
//! delivery rules: no state store (the running service may hold the state file's lock), no
//! rate limits, quiet hours, time intervals or retries.

use std::fmt;
use std::process::ExitCode;

use anyhow::Context;

use chrono::{DateTime, Utc};

use super::{TestSms, load_config, usage_error};
use crate::config::Config;
use crate::model::phone::PhoneNumber;
use crate::provider::{self, Outlet, SendError};
use crate::text::sms::{self, SmsSize};

/// A host name longer than this is cut, so that the default text stays one segment.
const MAX_HOST_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TestSmsError {
    /// Names only: the phone book's numbers never appear in an error.
    #[error(
        "unknown recipient, group or schedule {name:?} for '--to <NAME>'; recipients: {}; \
         groups: {}; schedules: {}",
        listed(recipients),
        listed(groups),
        listed(schedules)
    )]
    UnknownName {
        name: String,
        recipients: Vec<String>,
        groups: Vec<String>,
        schedules: Vec<String>,
    },
    #[error("the text is empty without its control characters and spaces")]
    EmptyText,
    #[error(
        "the text needs {} segments ({}, {} characters), more than --max-segments {max}",
        size.segments, size.encoding, size.chars
    )]
    OverBudget { size: SmsSize, max: usize },
}

fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Someone from the phone book.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub number: PhoneNumber,
}

impl fmt::Display for Person {
    /// The name and the masked number: what an operator needs to tell people apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.number.masked())
    }
}

/// What `--to` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Recipient,
    Group(String),
    /// Whoever is on call in it now.
    Schedule(String),
}

/// Who gets the SMS, and why them.
#[derive(Debug, Clone)]
pub struct Addressees {
    pub target: Target,
    pub people: Vec<Person>,
}

impl fmt::Display for Addressees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Recipient => {}
            Target::Group(name) => write!(f, "group {name}: ")?,
            Target::Schedule(name) => write!(f, "schedule {name}, on call now: ")?,
        }
        let people: Vec<String> = self.people.iter().map(ToString::to_string).collect();
        f.write_str(&people.join(", "))
    }
}

/// Who `name` is at `now`: a recipient, each member of a group, or whoever a schedule has on
/// call.
pub fn addressees(
    config: &Config,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Addressees, TestSmsError> {
    let (target, names): (Target, Vec<&str>) = if config.recipients.contains_key(name) {
        (Target::Recipient, vec![name])
    } else if let Some(members) = config.groups.get(name) {
        (
            Target::Group(name.to_string()),
            members.iter().map(String::as_str).collect(),
        )
    } else if let Some(schedule) = config.schedules.get(name) {
        (Target::Schedule(name.to_string()), vec![schedule.who(now)])
    } else {
        return Err(unknown(config, name));
    };
    // The config names only people of its phone book in groups and schedules.
    let people = names
        .into_iter()
        .filter_map(|name| {
            config.recipients.get(name).map(|number| Person {
                name: name.to_string(),
                number: number.clone(),
            })
        })
        .collect();
    Ok(Addressees { target, people })
}

fn unknown(config: &Config, name: &str) -> TestSmsError {
    TestSmsError::UnknownName {
        // A number typed where a name belongs is not repeated.
        name: crate::redact::phone_numbers(name).into_owned(),
        recipients: config.recipients.keys().cloned().collect(),
        groups: config.groups.keys().cloned().collect(),
        schedules: config.schedules.keys().cloned().collect(),
    }
}

/// The text when none is given: what it is and where it comes from, GSM-7 and one segment.
pub fn default_text(host: Option<&str>) -> String {
    match host {
        Some(host) => format!("Test SMS from alertmanager-sipgate on {host}: SMS delivery works."),
        None => "Test SMS from alertmanager-sipgate: SMS delivery works.".to_string(),
    }
}

/// This machine's name as the kernel has it, in characters any SMS carries; none when there is
/// no such name.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(MAX_HOST_NAME)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// `text` as alert SMS are sent: without control characters and surrounding spaces, and within
/// `max_segments`; refused otherwise rather than cut, since the operator chose every word.
pub fn checked_text(text: &str, max_segments: usize) -> Result<(String, SmsSize), TestSmsError> {
    let text = sms::without_control_characters(text.to_string())
        .trim()
        .to_string();
    if text.is_empty() {
        return Err(TestSmsError::EmptyText);
    }
    let size = sms::measure(&text);
    if size.segments > max_segments {
        return Err(TestSmsError::OverBudget {
            size,
            max: max_segments,
        });
    }
    Ok((text, size))
}

/// What became of the SMS to one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The provider accepted it.
    Accepted,
    /// Dry-run: not sent.
    DryRun,
}

/// Sends `text` to each person in turn, once, and returns each outcome in the same order.
pub async fn send(outlet: &Outlet, people: &[Person], text: &str) -> Vec<Result<Sent, SendError>> {
    let Outlet::Provider { provider, .. } = outlet else {
        return people.iter().map(|_| Ok(Sent::DryRun)).collect();
    };
    let mut outcomes = Vec::with_capacity(people.len());
    for person in people {
        let sent = provider.send(&person.number, text).await;
        outcomes.push(sent.map(|()| Sent::Accepted));
    }
    outcomes
}

/// `test-sms`: exit 0 when every SMS was sent (or, in dry-run, printed), 1 when one was not or
/// the config cannot be used, 2 for a `--to` or `--text` that cannot be sent.
pub(super) fn run(args: &TestSms) -> ExitCode {
    match test_sms_outcome(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether every SMS went out (or was only printed, in dry-run).
fn test_sms_outcome(args: &TestSms) -> anyhow::Result<bool> {
    let config = load_config(&args.config.path)?;
    let text = match &args.text {
        Some(text) => text.clone(),
        None => default_text(host_name().as_deref()),
    };
    let to =
        addressees(&config, &args.to, Utc::now()).unwrap_or_else(|e| usage_error("test-sms", e));
    let (text, size) = checked_text(&text, usize::from(args.max_segments))
        .unwrap_or_else(|e| usage_error("test-sms", e));
    let provider = provider::from_config(&config.sipgate, args.dry_run)?;
    println!("to: {to}");
    println!(
        "encoding: {}  characters: {}  segments: {}",
        size.encoding, size.chars, size.segments
    );
    println!("{text}\n");
    let outcomes = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(send(&provider, &to.people, &text));
    let mut all_sent = true;
    let mut printed_only = false;
    for (person, outcome) in to.people.iter().zip(outcomes) {
        match outcome {
            Ok(Sent::Accepted) => println!("sent to {person}"),
            Ok(Sent::DryRun) => printed_only = true,
            Err(e) => {
                all_sent = false;
                report_not_sent(person, &e);
            }
        }
    }
    if printed_only {
        let why = if args.dry_run {
            "--dry-run is set"
        } else {
            "the config has no Sipgate credentials"
        };
        println!("dry-run: nothing was sent ({why})");
    }
    Ok(all_sent)
}

/// What the provider answered, on standard error: its status and the reason class as the
/// service logs them, the start of its answer (numbers masked) and what to do about it.
fn report_not_sent(person: &Person, error: &SendError) {
    let what = match error {
        SendError::Rejected {
            provider,
            status,
            reason,
            ..
        } => format!("{provider} answered HTTP {status} ({})", reason.as_str()),
        other => format!("{other} ({})", other.reason().as_str()),
    };
    eprintln!("error: not sent to {person}: {what}");
    if !error.body().is_empty() {
        eprintln!("  {}'s answer: {}", error.provider(), error.body());
    }
    eprintln!(
        "  what to do: {}",
        provider::sipgate::operator_hint(error.reason())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_text_is_one_gsm7_segment_even_with_the_longest_host_name() {
        let text = default_text(Some(&"h".repeat(MAX_HOST_NAME)));
        let size = sms::measure(&text);
        assert_eq!(size.encoding, sms::Encoding::Gsm7);
        assert_eq!(size.segments, 1);
        assert_eq!(
            default_text(None),
            "Test SMS from alertmanager-sipgate: SMS delivery works."
        );
    }

    #[test]
    fn texts_lose_control_characters_and_must_fit_the_budget() {
        let (text, size) = checked_text(" a\u{7}b\r\nc\t ", 1).unwrap();
        assert_eq!(text, "ab\nc");
        assert_eq!(size.segments, 1);
        assert!(matches!(
            checked_text("\u{1b}\u{7f} ", 1),
            Err(TestSmsError::EmptyText)
        ));
        let over = checked_text(&"ж".repeat(71), 1).unwrap_err();
        assert_eq!(
            over.to_string(),
            "the text needs 2 segments (UCS-2, 71 characters), more than --max-segments 1"
        );
        assert!(checked_text(&"ж".repeat(71), 2).is_ok());
    }
}
