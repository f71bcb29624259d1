//! The git revision the binary is built from, for `--version` and the `build_info` metric:
//! `ALERTMANAGER_SIPGATE_REVISION` when set (builds without `.git`, such as the container
//! image), else `git rev-parse --short=12 HEAD` with `-dirty` when what the binary is built from
//! differs from that commit, else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

/// Set by whoever builds without `.git`; wins over git.
const REVISION_VARIABLE: &str = "ALERTMANAGER_SIPGATE_REVISION";
/// What the code reads (`env!`).
const BUILD_REVISION: &str = "ALERTMANAGER_SIPGATE_BUILD_REVISION";
/// What the binary is built from: a change to any of them makes the build `-dirty`. Each of them
/// rebuilds the crate anyway when it changes, so watching them costs no extra build.
const INPUTS: &[&str] = &["src", "templates", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    println!("cargo::rerun-if-env-changed={REVISION_VARIABLE}");
    // Paths that do not exist are left out here and below: cargo would take them as changed on
    // every build.
    for input in INPUTS.iter().filter(|input| Path::new(input).exists()) {
        println!("cargo::rerun-if-changed={input}");
    }
    let revision = match std::env::var(REVISION_VARIABLE) {
        Ok(given) if !given.trim().is_empty() => checked(given.trim()),
        _ => from_git().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo::rustc-env={BUILD_REVISION}={revision}");
}

/// A revision goes into a metric label and `--version`: a few safe characters only.
fn checked(revision: &str) -> String {
    let safe = revision.len() <= 64
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if !safe {
        panic!(
            "{REVISION_VARIABLE}={revision:?}: use at most 64 letters, digits, '.', '-', '_' or '+'"
        );
    }
    revision.to_string()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The revision of the checkout this crate is the top of; none outside one (a crate unpacked
/// inside another repository's tree is not that repository's revision).
fn from_git() -> Option<String> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
        return None;
    }
    watch_head();
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    // No optional locks: a build must not take the index lock from a git command running now.
    let mut status = vec![
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
    ];
    status.extend(INPUTS);
    let dirty = !git(&status)?.is_empty();
    Some(if dirty {
        format!("{revision}-dirty")
    } else {
        revision
    })
}

/// Runs this script again when HEAD moves: `HEAD` itself (another branch checked out), the
/// folder of branch refs (a commit; the ref file may not exist yet, or may have gone into
/// `packed-refs` after `git gc` and come back with the next commit, so its folder is watched,
/// which cargo scans as a whole), and `packed-refs`. The paths git gives are absolute or relative
/// to this folder, as cargo takes them.
fn watch_head() {
    for file in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file])
            && Path::new(&path).exists()
        {
            println!("cargo::rerun-if-changed={path}");
        }
    }
}
