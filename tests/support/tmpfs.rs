//! A small tmpfs of its own, for a real full disk and a real read-only filesystem. Mounting
//! needs root; the tests that need it fail with a clear message elsewhere unless
//! `RUNBOARD_SKIP_MOUNT_TESTS=1` says to skip them (scripts/test.sh sets it for non-root users).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `2m`), or returns `None` when the environment says mount
    /// tests are skipped.
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        if status.is_ok_and(|status| status.success()) {
            return Some(Self { dir });
        }
        if std::env::var_os("RUNBOARD_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("skipped: mounting a tmpfs needs root (RUNBOARD_SKIP_MOUNT_TESTS is set)");
            return None;
        }
        panic!(
            "this test mounts a small tmpfs for a real full disk and needs root; run it as root \
             or set RUNBOARD_SKIP_MOUNT_TESTS=1 to skip it"
        );
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file that takes every free byte; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0_u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }

    /// Makes the filesystem read-only.
    pub fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount read-only failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
