//! Values that several sections read the same way: durations, sizes, counts, names and time
//! zones, each checked with the same words wherever it stands.

use std::time::Duration;

use super::problem::{Problem, problem};

/// An optional text field: its default when absent, a problem (and the default) when invalid.
pub(super) fn parse_field<T>(
    value: Option<&str>,
    parse: fn(&str) -> Result<T, String>,
    default: T,
    field: &str,
    problems: &mut Vec<Problem>,
) -> T {
    match value.map(parse) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            problem(problems, field, e);
            default
        }
    }
}

/// An optional duration with its default and a largest value.
pub(super) fn duration_at_most(
    value: Option<&str>,
    default: Duration,
    max: Duration,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Duration {
    let value = parse_field(value, parse_duration, default, field, problems);
    if value > max {
        problem(
            problems,
            field,
            format!(
                "must be at most {}, got {}",
                humantime::format_duration(max),
                humantime::format_duration(value)
            ),
        );
    }
    value
}

/// Prometheus-style durations: `30s`, `5m`, `1h30m`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); use e.g. \"5s\", \"10m\", \"1h\"")
    })?;
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(d)
}

/// Sizes such as `1MiB`, `512KiB`, `1MB` or plain bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {text:?}; use e.g. \"1MiB\", \"512KiB\""
            ));
        }
    };
    number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {text:?}; use e.g. \"1MiB\", \"512KiB\""))
}

/// A base URL that paths are appended to: http(s), no credentials (`why_not_credentials` says
/// where they belong instead), no query or fragment; trimmed, without trailing slashes.
pub(super) fn base_url(text: &str, why_not_credentials: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/').to_string();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("must be an http:// or https:// URL, got {url:?}"));
    }
    match reqwest::Url::parse(&url) {
        Err(e) => Err(format!("is not a valid URL ({e}), got {url:?}")),
        // Not echoed: what it carries would end up in logs.
        Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => Err(format!(
            "must not carry credentials (user:password@); {why_not_credentials}"
        )),
        Ok(parsed) if parsed.query().is_some() || parsed.fragment().is_some() => {
            Err(format!("must not have a query or fragment, got {url:?}"))
        }
        Ok(_) => Ok(url),
    }
}

/// A count of at least one and at most `max`.
pub(super) fn count_in_range(
    value: usize,
    max: usize,
    field: &str,
    problems: &mut Vec<Problem>,
) -> usize {
    if !(1..=max).contains(&value) {
        problem(
            problems,
            field,
            format!("must be between 1 and {max}, got {value}"),
        );
    }
    value
}

/// An IANA time zone by name; UTC when none is given (or, with a problem, when it is unknown).
pub(super) fn time_zone(
    name: Option<&str>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> chrono_tz::Tz {
    let Some(name) = name else {
        return chrono_tz::UTC;
    };
    name.parse().unwrap_or_else(|_| {
        problem(
            problems,
            field,
            format!(
                "unknown time zone {name:?}; use an IANA name such as \"Europe/Berlin\" or \"UTC\""
            ),
        );
        chrono_tz::UTC
    })
}

/// Names of recipients, groups, schedules and routes: they show in logs, metric labels and
/// state-store keys, so they keep to a plain alphabet.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

pub(super) const NAME_RULE: &str = "names may use letters, digits, '_', '-' and '.'";

/// Whether the name of the entry at `field` is valid; a problem there when not.
pub(super) fn name_is_valid(name: &str, field: &str, problems: &mut Vec<Problem>) -> bool {
    let valid = valid_name(name);
    if !valid {
        problem(problems, field, format!("invalid name; {NAME_RULE}"));
    }
    valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2000"), Ok(2000));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
    }
}
