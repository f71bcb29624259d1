//! The config file as a YAML document: every unknown key and wrongly typed value is found in one
//! pass over the file, each reported once with its path and line, instead of stopping at the first.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use yaml_serde::{Mapping, Value};

use super::problem::Problem;

/// More than this many structural problems means the file is something else entirely.
const MAX_PROBLEMS: usize = 50;

/// Deserializes `text` into `T`. On failure, every structural problem of the file is returned.
///
/// A file that reads is read exactly as YAML text always is (`+4915228817386` and `12345678`
/// are strings where the field is one). One that does not is read again and again: each attempt
/// names one problem, the offending node is then taken out of the document (a key removed, a
/// list entry emptied), and the rest is read again, so later problems are still found but
/// nothing is reported twice. Every field of `T` must have a default, so that taking a node out
/// never turns into a "missing field" follow-on.
pub fn deserialize_all<T: DeserializeOwned + Default>(text: &str) -> Result<T, Vec<Problem>> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let first = match attempt::<T>(text) {
        Ok(value) => return Ok(value),
        Err(failure) => failure,
    };
    let mut document: Value = match yaml_serde::from_str(text) {
        // Only comments: an empty config.
        Ok(Value::Null) => return Ok(T::default()),
        Ok(v) => v,
        Err(e) => {
            return Err(vec![Problem {
                field: "(document)".to_string(),
                // libyaml's message says where, often at two places; the first is the line.
                message: e.to_string(),
                line: e.location().map(|at| at.line()),
            }]);
        }
    };
    let mut problems: Vec<Problem> = Vec::new();
    let mut failure = first;
    loop {
        let field = field_name(&failure.path);
        let again = problems.iter().any(|p| p.field == field);
        if !again {
            problems.push(Problem {
                line: None,
                field,
                message: failure.message,
            });
        }
        if problems.len() >= MAX_PROBLEMS {
            problems.push(Problem {
                field: "(document)".to_string(),
                message: format!("more than {MAX_PROBLEMS} problems; fix these first"),
                line: None,
            });
            break;
        }
        if !take_out(&mut document, &failure.path, again) {
            break;
        }
        // The rest is read as text again, so that it means what it meant in the file. Values
        // may change on the way (`+49...` loses its plus), which does not matter here: only
        // the structure is checked, and nothing read in this loop is used.
        let Ok(rest) = yaml_serde::to_string(&document) else {
            break;
        };
        match attempt::<T>(&rest) {
            Ok(_) => break,
            Err(next) => failure = next,
        }
    }
    locate(text, &mut problems);
    Err(problems)
}

/// Gives each problem the line of its field and puts them in the order of the file, so that
/// they read top to bottom beside it; those of no line come last, in the order found.
pub fn locate(text: &str, problems: &mut [Problem]) {
    for problem in problems.iter_mut() {
        problem.line = line_of_nearest(text, &problem.field);
    }
    problems.sort_by_key(|p| (p.line.is_none(), p.line));
}

/// The line of `field` or, when it is not written (a missing field), of the nearest node
/// around it that is: the mapping that lacks it.
fn line_of_nearest(text: &str, field: &str) -> Option<usize> {
    let mut field = field;
    loop {
        if let Some(line) = line_of(text, field) {
            return Some(line);
        }
        field = parent(field)?;
    }
}

/// `routes[0].name` is in `routes[0]`, which is in `routes`, which is in nothing.
fn parent(field: &str) -> Option<&str> {
    let cut = field.rfind(['.', '['])?;
    Some(&field[..cut]).filter(|p| !p.is_empty())
}

/// Where one attempt to read the document failed, and why.
struct Failure {
    path: Vec<Step>,
    message: String,
}

fn attempt<T: DeserializeOwned>(text: &str) -> Result<T, Failure> {
    serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text)).map_err(|e| {
        let path = e.path().iter().filter_map(Step::from_segment).collect();
        let inner = e.into_inner();
        Failure {
            path,
            message: bare_message(&inner),
        }
    })
}

/// The reader's message without what the problem's own path and line say already, and without
/// the offending value: config errors end up in logs, and the value may be a secret or a number.
fn bare_message(error: &yaml_serde::Error) -> String {
    let mut message = error.to_string();
    if let Some(at) = error.location() {
        let suffix = format!(" at line {} column {}", at.line(), at.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // The reader puts the path of the enclosing node in front: `routes[0]: unknown field ...`.
    if let Some((head, rest)) = message.split_once(": ")
        && !head.is_empty()
        && !head.contains(' ')
    {
        message = rest.to_string();
    }
    without_value(&message)
}

/// `invalid type: string "s3cret", expected usize` becomes `invalid type: string, expected usize`.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((unexpected, expected)) = rest.split_once(", expected ")
        {
            let kind = unexpected
                .split(['`', '"'])
                .next()
                .unwrap_or(unexpected)
                .trim();
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    message.to_string()
}

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    fn from_segment(segment: &serde_path_to_error::Segment) -> Option<Step> {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        }
    }
}

/// `routes[0].matchers[1]`, the way every config problem names its place.
fn field_name(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("(document)");
    }
    out
}

/// Takes the node at `path` out of the document. A list entry is first replaced by an empty
/// mapping (an object whose fields all default); if that entry fails again (`again`), or the
/// node is a mapping value, its key in the nearest enclosing mapping is removed. Returns false
/// when there is nothing left to take out.
fn take_out(document: &mut Value, path: &[Step], again: bool) -> bool {
    if let (false, Some(Step::Index(_))) = (again, path.last()) {
        if let Some(node) = node_mut(document, path) {
            *node = Value::Mapping(Mapping::new());
            return true;
        }
        return false;
    }
    let Some(key_at) = path.iter().rposition(|s| matches!(s, Step::Key(_))) else {
        return false;
    };
    let Step::Key(key) = &path[key_at] else {
        return false;
    };
    match node_mut(document, &path[..key_at]) {
        Some(Value::Mapping(map)) => map.remove(key.as_str()).is_some(),
        _ => false,
    }
}

fn node_mut<'a>(document: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(document, |node, step| match step {
        Step::Key(key) => node.get_mut(key.as_str()),
        Step::Index(i) => node.get_mut(*i),
    })
}

/// What the locator's deliberate error says, to tell it from a real one.
const FOUND: &str = "alertmanager-sipgate: located";

/// The line (from 1) of the key or list entry that `field` (e.g. `routes[0].to[1]`) names, read
/// from the text itself. Keys may contain dots, so each key is matched against the rest of the
/// field as a whole instead of splitting the field first.
pub fn line_of(text: &str, field: &str) -> Option<usize> {
    let error = Locate { rest: field }
        .deserialize(yaml_serde::Deserializer::from_str(text))
        .err()?;
    if error.to_string().contains(FOUND) {
        error.location().map(|l| l.line())
    } else {
        None
    }
}

/// Walks the document along `rest`; at the target it fails on purpose, and the YAML reader
/// attaches the position of the node it was reading to that error.
struct Locate<'a> {
    rest: &'a str,
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(next) = map.next_key_seed(Key { rest: self.rest })? {
            match next {
                Some(rest) => map.next_value_seed(Locate { rest })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let target = self.rest.strip_prefix('[').and_then(|r| {
            let (index, after) = r.split_once(']')?;
            Some((index.parse::<usize>().ok()?, after))
        });
        let mut index = 0;
        loop {
            let more = match target {
                Some((wanted, after)) if wanted == index && after.is_empty() => {
                    seq.next_element_seed(Here)?
                }
                Some((wanted, after)) if wanted == index => seq
                    .next_element_seed(Locate {
                        rest: after.strip_prefix('.').unwrap_or(after),
                    })?
                    .map(|_| IgnoredAny),
                _ => seq.next_element::<IgnoredAny>()?,
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A mapping key: the target itself (fails on purpose, at the key), a step towards it (the rest
/// of the field), or another key (`None`).
struct Key<'a> {
    rest: &'a str,
}

impl<'de, 'a> DeserializeSeed<'de> for Key<'a> {
    type Value = Option<&'a str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'a> Key<'a> {
    fn step<E: de::Error>(self, key: &str) -> Result<Option<&'a str>, E> {
        let Some(after) = self.rest.strip_prefix(key) else {
            return Ok(None);
        };
        if after.is_empty() {
            return Err(E::custom(FOUND));
        }
        if let Some(deeper) = after.strip_prefix('.') {
            return Ok(Some(deeper));
        }
        Ok(after.starts_with('[').then_some(after))
    }
}

impl<'de, 'a> Visitor<'de> for Key<'a> {
    type Value = Option<&'a str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        self.step(key)
    }
    fn visit_bool<E: de::Error>(self, key: bool) -> Result<Self::Value, E> {
        self.step(&key.to_string())
    }
    fn visit_i64<E: de::Error>(self, key: i64) -> Result<Self::Value, E> {
        self.step(&key.to_string())
    }
    fn visit_u64<E: de::Error>(self, key: u64) -> Result<Self::Value, E> {
        self.step(&key.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// The list entry that is the target: fails on purpose as soon as the reader reaches it.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = IgnoredAny;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<IgnoredAny, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Here {
    type Value = IgnoredAny;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<IgnoredAny, E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<IgnoredAny, E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<IgnoredAny, E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<IgnoredAny, E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<IgnoredAny, E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<IgnoredAny, E> {
        Err(E::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<IgnoredAny, A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<IgnoredAny, A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

/// The text of the phone-book entries `names` as written, for numbers that YAML would read as
/// integers (`+4915228817386` unquoted loses its `+`). Only scalar entries may be named.
pub fn recipient_texts(text: &str, names: &[&str]) -> BTreeMap<String, String> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    PhoneBookTexts { names }
        .deserialize(yaml_serde::Deserializer::from_str(text))
        .unwrap_or_default()
}

/// The document's top level: only `recipients` is read.
struct PhoneBookTexts<'a> {
    names: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for PhoneBookTexts<'_> {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PhoneBookTexts<'_> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the config document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut texts = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "recipients" {
                texts = map.next_value_seed(EntryTexts { names: self.names })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(texts)
    }
}

/// The `recipients` mapping: each named entry as a string, which reads a scalar as written.
struct EntryTexts<'a> {
    names: &'a [&'a str],
}

impl<'de> DeserializeSeed<'de> for EntryTexts<'_> {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntryTexts<'_> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the phone book")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut texts = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if self.names.contains(&name.as_str()) {
                texts.insert(name, map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_left_out_of_messages() {
        assert_eq!(
            without_value("invalid type: string \"s3cret\", expected usize"),
            "invalid type: string, expected usize"
        );
        assert_eq!(
            without_value("invalid type: integer `4915228817386`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_value("invalid type: sequence, expected a map"),
            "invalid type: sequence, expected a map"
        );
        assert_eq!(
            without_value("unknown field `x`, expected `a`"),
            "unknown field `x`, expected `a`"
        );
    }

    const TEXT: &str = "\
sipgate:
  sms_id: s0
recipients:
  alice.smith: \"+4915228817386\"
routes:
  - name: a
    to: [alice.smith]
  - name: b
    to:
      - alice.smith
      - bob
";

    #[test]
    fn finds_the_line_of_keys_and_list_entries() {
        assert_eq!(line_of(TEXT, "sipgate"), Some(1));
        assert_eq!(line_of(TEXT, "sipgate.sms_id"), Some(2));
        assert_eq!(line_of(TEXT, "recipients.alice.smith"), Some(4));
        assert_eq!(line_of(TEXT, "routes[0]"), Some(6));
        assert_eq!(line_of(TEXT, "routes[1].name"), Some(8));
        assert_eq!(line_of(TEXT, "routes[1].to[1]"), Some(11));
        assert_eq!(line_of(TEXT, "routes[0].to[0]"), Some(7));
        assert_eq!(line_of(TEXT, "routes[2]"), None);
        assert_eq!(line_of(TEXT, "server.auth"), None);
    }

    #[test]
    fn a_field_not_written_has_the_line_of_what_lacks_it() {
        assert_eq!(line_of_nearest(TEXT, "routes[1].to[1]"), Some(11));
        assert_eq!(line_of_nearest(TEXT, "routes[0].matchers"), Some(6));
        assert_eq!(line_of_nearest(TEXT, "routes[1].to[5]"), Some(9));
        assert_eq!(line_of_nearest(TEXT, "sipgate.token"), Some(1));
        assert_eq!(
            line_of_nearest(TEXT, "recipients.alice.smith.quiet_hours[0]"),
            Some(4)
        );
        assert_eq!(line_of_nearest(TEXT, "server.auth"), None);
        assert_eq!(line_of_nearest(TEXT, "(document)"), None);
    }

    #[test]
    fn problems_are_put_in_the_order_of_the_file() {
        let problem = |field: &str| Problem {
            field: field.to_string(),
            message: String::new(),
            line: None,
        };
        let mut problems = [
            problem("server.auth"),
            problem("routes[1].to[1]"),
            problem("sipgate.token"),
            problem("(document)"),
            problem("routes[0].name"),
            problem("sipgate.sms_id"),
        ];
        locate(TEXT, &mut problems);
        let got: Vec<(&str, Option<usize>)> = problems
            .iter()
            .map(|p| (p.field.as_str(), p.line))
            .collect();
        assert_eq!(
            got,
            [
                ("sipgate.token", Some(1)),
                ("sipgate.sms_id", Some(2)),
                ("routes[0].name", Some(6)),
                ("routes[1].to[1]", Some(11)),
                ("server.auth", None),
                ("(document)", None),
            ]
        );
    }
}
