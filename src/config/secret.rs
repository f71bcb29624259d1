//! Secrets in the config: given inline, or better in a file (relative to the config), or from
//! the environment, which wins over both (as it does for the Sipgate URL).

use std::path::{Path, PathBuf};

use super::problem::{Problem, problem};

/// A secret: never in `Debug` output or logs, zeroed when dropped. `expose_secret()` only where
/// it is used.
pub type Secret = secrecy::SecretString;

/// Where environment overrides come from; tests pass their own instead of touching the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret given inline or in a file; exactly one of the two.
pub(super) fn secret_value(
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problem(problems, field, BOTH);
            None
        }
        (Some(value), None) if !value.is_empty() => Some(Secret::from(value)),
        (None, Some(file)) => match read_secret_file(&base.join(file)) {
            Ok(value) => Some(Secret::from(value)),
            Err(e) => {
                problem(problems, format!("{field}_file"), e);
                None
            }
        },
        _ => {
            problem(problems, field, "missing: set it or its _file variant");
            None
        }
    }
}

/// A secret that may be left out: the environment's value (`from_env`) when there is one, else
/// the one given inline or in a file, else none. A file that sets both is refused either way:
/// which of them was meant would depend on the environment.
pub(super) fn optional_secret(
    from_env: Option<String>,
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Secret> {
    match from_env {
        Some(value) => {
            if inline.is_some() && file.is_some() {
                problem(problems, field, BOTH);
            }
            Some(Secret::from(value))
        }
        None if inline.is_none() && file.is_none() => None,
        None => secret_value(inline, file, base, field, problems),
    }
}

const BOTH: &str = "set it or its _file variant, not both";

fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(trimmed.to_string())
}

/// `basic_auth:` as written, wherever the service takes or sends Basic credentials.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    #[serde(default)]
    pub(super) username: String,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<std::path::PathBuf>,
}
