//! Matchers for `GET /api/v2/alerts?filter=...`, written in Alertmanager's matcher syntax so
//! that any label value matches itself: the classic parser of 0.25 and the UTF-8 parser of 0.27
//! and later read a double-quoted value with `\"`, `\\` and `\n` alike.

use super::AlertmanagerError;

/// `name="value"`, with the value escaped; the query string encodes it for the URL.
pub(super) fn equal(name: &str, value: &str) -> Result<String, AlertmanagerError> {
    if !is_label_name(name) {
        // A name is config or Prometheus vocabulary, not data: it may be shown.
        return Err(AlertmanagerError::InvalidRequest(format!(
            "{name:?} is not a label name Alertmanager's filter accepts ([a-zA-Z_][a-zA-Z0-9_]*)"
        )));
    }
    let mut matcher = String::with_capacity(name.len() + value.len() + 3);
    matcher.push_str(name);
    matcher.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => matcher.push_str("\\\\"),
            '"' => matcher.push_str("\\\""),
            '\n' => matcher.push_str("\\n"),
            c => matcher.push(c),
        }
    }
    matcher.push('"');
    Ok(matcher)
}

/// A Prometheus label name, as the classic matcher parser requires it unquoted.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_with_quotes_backslashes_and_newlines_escaped() {
        assert_eq!(
            equal("alertname", "DiskFull").unwrap(),
            r#"alertname="DiskFull""#
        );
        assert_eq!(
            equal("instance", "db\"1\\x\nü 🚨,}{=~").unwrap(),
            r#"instance="db\"1\\x\nü 🚨,}{=~""#
        );
        assert_eq!(equal("empty", "").unwrap(), r#"empty="""#);
    }

    #[test]
    fn names_that_the_filter_cannot_read_are_refused() {
        for name in ["", "1st", "a-b", "a b", "a=\"x\",b", "__name__x:y"] {
            let error = equal(name, "secret-value").unwrap_err().to_string();
            assert!(
                error.starts_with("invalid Alertmanager request: "),
                "{error}"
            );
            assert!(!error.contains("secret-value"), "{error}");
        }
        assert!(equal("__name__", "x").is_ok());
    }
}
