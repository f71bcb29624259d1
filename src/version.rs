//! Which build this is: the crate's version and the git revision it was built from (build.rs
//! finds it), for `--version`, the `build_info` metric and bug reports.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A short commit id, with `-dirty` when the sources differed from it, or "unknown".
pub const REVISION: &str = env!("ALERTMANAGER_SIPGATE_BUILD_REVISION");

/// As `--version` shows it: `0.1.0 (revision 42a7165abcde)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("ALERTMANAGER_SIPGATE_BUILD_REVISION"),
    ")"
);
