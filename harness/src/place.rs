//! Where things live on disk, decided in one place for the CLI, the conformance binary and
//! every test: the cargo target directory (artifacts of failed cases) and the cache outside
//! the clone (guests, their SSH keys, saved guest states).

use std::path::PathBuf;

/// The directories a run writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `$CARGO_TARGET_DIR`, else `<workspace>/target` (or `./target` outside a checkout).
    pub target_dir: PathBuf,
    /// `sysext_builder::cache::root()`: survives `cargo clean` and fresh clones.
    pub cache: PathBuf,
}

impl Place {
    /// Reads `CARGO_TARGET_DIR`, `SYSEXT_TEST_CACHE` and `XDG_CACHE_HOME`. A binary built by
    /// cargo in this workspace finds the workspace's `target/`; an installed `sysext-test`
    /// run elsewhere writes to `./target`.
    pub fn from_env() -> Place {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_target_dir);
        Place {
            target_dir,
            cache: sysext_builder::cache::root(),
        }
    }

    /// Evidence of a failed case: `<target>/sysext-test/artifacts/<test name>/`.
    pub fn artifacts(&self, test_name: &str) -> PathBuf {
        crate::artifacts::dir_for(&self.target_dir, test_name)
    }

    /// Saved guest states, kept across runs (see `snapshot`).
    pub fn snapshots(&self) -> PathBuf {
        self.cache.join("snapshots")
    }
}

fn default_target_dir() -> PathBuf {
    // The workspace root is the crate's parent; it exists when the binary runs from a
    // checkout (tests, `cargo run`).
    // At run time cargo and nextest name the crate being tested, which wins over the one
    // compiled in (a target directory shared between clones).
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match crate_dir.parent() {
        Some(w) if w.join("Cargo.toml").is_file() => w.join("target"),
        _ => std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("."))
            .join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_under_the_target_dir() {
        let p = Place {
            target_dir: PathBuf::from("/t"),
            cache: PathBuf::from("/c"),
        };
        assert_eq!(
            p.artifacts("vm::x86-64::a::merge"),
            crate::artifacts::dir_for(std::path::Path::new("/t"), "vm::x86-64::a::merge")
        );
        assert_eq!(p.snapshots(), PathBuf::from("/c/snapshots"));
    }
}
