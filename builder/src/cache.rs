//! The cache outside the clone where fetched packages and built guests live.
//!
//! CI starts from a fresh clone every time; keeping downloads under `$XDG_CACHE_HOME` (or
//! `SYSEXT_TEST_CACHE`) lets it reuse them, and keying entries by their recipe makes a changed
//! recipe rebuild instead of silently reusing stale output.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The cache root: `$SYSEXT_TEST_CACHE`, else `$XDG_CACHE_HOME/sysext-test`, else
/// `~/.cache/sysext-test`, else `/var/cache/sysext-test`.
pub fn root() -> PathBuf {
    if let Some(p) = std::env::var_os("SYSEXT_TEST_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("sysext-test");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(home).join(".cache").join("sysext-test");
    }
    PathBuf::from("/var/cache/sysext-test")
}

/// Holds an exclusive lock on `dir/.lock` so parallel test processes do not fill the same
/// cache entry twice; released on drop.
pub struct Lock(File);

impl Lock {
    pub fn acquire(dir: &Path) -> io::Result<Lock> {
        let f = Lock::file(dir)?;
        f.lock()?;
        Ok(Lock(f))
    }

    /// The lock if no one holds it now; `None` when someone does.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<Lock>> {
        let f = Lock::file(dir)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(Lock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn file(dir: &Path) -> io::Result<File> {
        std::fs::create_dir_all(dir)?;
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}
