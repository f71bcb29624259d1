//! A config problem and where it is: every section reports its own, and the file is refused
//! with all of them listed, each at its field and line.

use std::fmt;

/// A config problem and where it is, e.g. `routes[1].matchers[0]`, line 12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    /// The line of `field` in the file, from 1; none when the field is not written there.
    pub line: Option<usize>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// Adds a problem at `field`; its line is found once all are in (`document::locate`).
pub(super) fn problem(
    problems: &mut Vec<Problem>,
    field: impl Into<String>,
    message: impl Into<String>,
) {
    problems.push(Problem {
        field: field.into(),
        message: message.into(),
        line: None,
    });
}
