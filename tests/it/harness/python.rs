//! Python with pinned packages from PyPI, in a virtualenv under `target/`: made on first use and
//! reused after, so that only the first run needs the network.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::programs::require;

/// The `python` of a virtualenv that has exactly `packages` (each pinned, `name==version`).
/// Without `python3 -m venv` (Debian's `python3-venv`) the test fails and says what to install.
pub fn python_venv(packages: &[&str]) -> PathBuf {
    require("python3", "python3-venv");
    let name: String = packages
        .join("-")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("venv-{name}"));
    let python = dir.join("bin").join("python");
    // Written last: a virtualenv without it was left half made, and is made again.
    let done = dir.join("installed");
    if done.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let venv = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        venv.status.success(),
        "python3 -m venv failed: apt-get install python3-venv (.ci/run does)\n{}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let pip = Command::new(dir.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .output()
        .unwrap();
    assert!(
        pip.status.success(),
        "pip install {} failed:\n{}",
        packages.join(" "),
        String::from_utf8_lossy(&pip.stderr)
    );
    std::fs::write(&done, packages.join("\n")).unwrap();
    python
}
