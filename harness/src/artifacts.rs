//! Where a failed case leaves its evidence: `target/sysext-test/artifacts/<test-name>/`.
//!
//! Test names contain `::` and arch names; the directory name must be one path component that
//! still reads as the test name, so a user can go from a failure line to its files.

use std::path::{Path, PathBuf};

/// The artifact directory for `test_name` under the workspace `target_dir`.
pub fn dir_for(target_dir: &Path, test_name: &str) -> PathBuf {
    target_dir
        .join("sysext-test")
        .join("artifacts")
        .join(component(test_name))
}

/// Makes a test name safe as a single path component; `::` is kept readable as `--`.
pub fn component(test_name: &str) -> String {
    let s: String = test_name
        .replace("::", "--")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_become_one_readable_component() {
        assert_eq!(
            component("vm::x86-64::busybox::merge"),
            "vm--x86-64--busybox--merge"
        );
        assert_eq!(component("lint::a/../b"), "lint--a_.._b");
        assert_eq!(component(".."), "_");
    }

    #[test]
    fn artifacts_live_under_target() {
        let d = dir_for(Path::new("/w/target"), "lint::x");
        assert_eq!(d, Path::new("/w/target/sysext-test/artifacts/lint--x"));
    }
}
