//! Whom a `to:` names: a person of the phone book, a group of them, or a schedule, whose person
//! is known only at the instant an SMS is planned.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::oncall::Schedule;

/// One name of a `to:`, as the config resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A phone-book name.
    Person(String),
    /// A group and its members, phone-book names.
    Group { name: String, members: Vec<String> },
    /// Whoever is on call in this schedule when the SMS is planned.
    Schedule(String),
}

impl Target {
    /// The name as written in the config.
    pub fn name(&self) -> &str {
        match self {
            Target::Person(name) | Target::Schedule(name) | Target::Group { name, .. } => name,
        }
    }

    /// The people it reaches at `at`, each once, in the order the config lists them.
    pub fn people_at<'a>(
        &'a self,
        schedules: &'a BTreeMap<String, Schedule>,
        at: DateTime<Utc>,
    ) -> Vec<&'a str> {
        match self {
            Target::Person(name) => vec![name],
            Target::Group { members, .. } => members.iter().map(String::as_str).collect(),
            Target::Schedule(name) => schedules.get(name).map(|s| s.who(at)).into_iter().collect(),
        }
    }
}
