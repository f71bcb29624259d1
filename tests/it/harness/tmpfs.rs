//! A disk of its own (a tmpfs) that fills up or turns read-only when a test says so; needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// For tests marked `#[ignore = "needs root for mount (...); run with: ..."]`: fails, never passes
/// silently, when the tests do not run as root.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test mounts a tmpfs: run it as root (CI does)"
    );
}

/// A tmpfs of its own size on a folder of its own, unmounted when dropped: a disk that fills up
/// or turns read-only when a test says so. Needs root.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `4m`).
    pub fn mount(size: &str) -> Tmpfs {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let tmpfs = Tmpfs { dir };
        tmpfs.run_mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]);
        tmpfs
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Mounts it again with `options` (`ro`, `rw`), keeping what it holds.
    pub fn remount(&self, options: &str) {
        self.run_mount(&["-o", &format!("remount,{options}")]);
    }

    fn run_mount(&self, args: &[&str]) {
        let status = Command::new("mount")
            .args(args)
            .arg(self.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount {args:?} {} failed",
            self.path().display()
        );
    }

    /// Writes a file `name` until the tmpfs has no room left, and returns its path.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0xa5u8; 4096];
        loop {
            match file.write_all(&block).and_then(|()| file.flush()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => return path,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child still holding a file in it must not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
