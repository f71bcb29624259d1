//! The phone book (`recipients:`, a number or a number with the person's quiet hours) and
//! `groups:`, named lists of its people.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::document::recipient_texts;
use super::field::name_is_valid;
use super::problem::{Problem, problem};
use crate::model::phone::PhoneNumber;
use crate::oncall::quiet_hours::QuietHours;

/// A phone-book entry: the number alone, or the number with the person's quiet hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawRecipient {
    Number(String),
    /// A number YAML read as an integer (`+4915228817386` unquoted): its text is read again
    /// from the document, so that the `+` and every digit stay as written.
    Unquoted,
    Person {
        number: String,
        quiet_hours: Vec<String>,
    },
}

impl Default for RawRecipient {
    fn default() -> Self {
        RawRecipient::Number(String::new())
    }
}

impl<'de> Deserialize<'de> for RawRecipient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RecipientVisitor)
    }
}

struct RecipientVisitor;

impl<'de> Visitor<'de> for RecipientVisitor {
    type Value = RawRecipient;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a phone number, or {number, quiet_hours}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRecipient, E> {
        Ok(RawRecipient::Number(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawRecipient, E> {
        Ok(RawRecipient::Unquoted)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawRecipient, E> {
        Ok(RawRecipient::Unquoted)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<RawRecipient, E> {
        Ok(RawRecipient::Unquoted)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawRecipient, E> {
        Ok(RawRecipient::Unquoted)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRecipient, A::Error> {
        let mut number = None;
        let mut quiet_hours = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                // As a string, whatever YAML makes of it: the text as written.
                "number" => number = Some(map.next_value::<String>()?),
                "quiet_hours" => quiet_hours = map.next_value()?,
                other => {
                    return Err(de::Error::unknown_field(other, &["number", "quiet_hours"]));
                }
            }
        }
        Ok(RawRecipient::Person {
            number: number.ok_or_else(|| de::Error::missing_field("number"))?,
            quiet_hours,
        })
    }
}

/// The phone book: each valid name with its number; and the quiet hours of those who have them.
pub(super) fn phone_book(
    raw: &BTreeMap<String, RawRecipient>,
    text: &str,
    problems: &mut Vec<Problem>,
) -> (BTreeMap<String, PhoneNumber>, QuietHours) {
    let unquoted: Vec<&str> = raw
        .iter()
        .filter(|(_, r)| **r == RawRecipient::Unquoted)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut written = recipient_texts(text, &unquoted);
    let mut book = BTreeMap::new();
    let mut quiet_hours = QuietHours::new();
    for (name, entry) in raw {
        let number = match entry {
            RawRecipient::Number(number) => number.clone(),
            RawRecipient::Unquoted => written.remove(name).unwrap_or_default(),
            RawRecipient::Person {
                number,
                quiet_hours: hours,
            } => {
                if !hours.is_empty() {
                    quiet_hours.insert(name.clone(), hours.clone());
                }
                number.clone()
            }
        };
        let field = format!("recipients.{name}");
        if !name_is_valid(name, &field, problems) {
            continue;
        }
        match PhoneNumber::parse(&number) {
            Ok(n) => {
                book.insert(name.clone(), n);
            }
            // The number itself stays out of the message: config errors end up in logs.
            Err(e) => problem(problems, &field, format!("invalid phone number: {e}")),
        }
    }
    (book, quiet_hours)
}

/// Each group with its members, who must be in the phone book (`names`, every name declared
/// there, also those with a bad number: that is reported once, at the number).
pub(super) fn groups(
    raw: &BTreeMap<String, Vec<String>>,
    names: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (name, members) in raw {
        let field = format!("groups.{name}");
        if !name_is_valid(name, &field, problems) {
            continue;
        }
        if names.contains(name.as_str()) {
            problem(
                problems,
                &field,
                "a recipient has the same name; use distinct names for groups and recipients",
            );
        }
        if members.is_empty() {
            problem(problems, &field, "a group needs members");
        }
        for (i, member) in members.iter().enumerate() {
            if !names.contains(member.as_str()) {
                problem(
                    problems,
                    format!("{field}[{i}]"),
                    format!("unknown recipient {member:?}; groups list names from recipients"),
                );
            }
        }
        out.insert(name.clone(), members.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{ROUTE_TO_ALICE, load, problems};

    #[test]
    fn number_errors_do_not_echo_the_number() {
        let p = load("recipients: {alice: \"015112345678\"}").unwrap_err();
        assert!(!p[0].message.contains("015112345678"));
    }

    #[test]
    fn an_unquoted_number_keeps_its_plus_in_both_forms() {
        let config = load(&format!(
            "recipients: {{alice: +4915228817386, bob: {{number: +4915254599371}}}}\n{ROUTE_TO_ALICE}"
        ))
        .unwrap();
        assert_eq!(config.recipients["alice"].e164(), "+4915228817386");
        assert_eq!(config.recipients["bob"].e164(), "+4915254599371");
        // Without the +, YAML's integer is refused as before: it is no E.164 number.
        assert_eq!(
            problems(&format!(
                "recipients: {{alice: 4915228817386}}\n{ROUTE_TO_ALICE}"
            )),
            [
                "recipients.alice: invalid phone number: must be in international E.164 format starting with + and the country code, e.g. \"+4915228817386\""
            ]
        );
    }
}
