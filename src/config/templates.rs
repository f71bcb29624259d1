//! The `templates:` section: the folder of `*.hbs` files beside the built-ins, and the time zone
//! of the times an SMS shows. Every template is compiled here, so that a typo fails at start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::field::time_zone;
use super::problem::{Problem, problem};
use crate::text::template::Templates;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplates {
    dir: Option<PathBuf>,
    time_zone: Option<String>,
}

/// The templates, or none when one of them does not compile (each problem reported).
pub(super) fn templates(
    raw: &RawTemplates,
    base: &Path,
    problems: &mut Vec<Problem>,
) -> Option<Templates> {
    let time_zone = time_zone(raw.time_zone.as_deref(), "templates.time_zone", problems);
    let dir = raw.dir.as_ref().map(|d| base.join(d));
    match Templates::load(dir.as_deref(), time_zone) {
        Ok(t) => Some(t),
        Err(errors) => {
            for e in errors {
                problem(problems, "templates.dir", e.to_string());
            }
            None
        }
    }
}
