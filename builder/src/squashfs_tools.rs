//! squashfs-tools' `mksquashfs`, for the images our own writer cannot make: trees with
//! xattrs (the strict-xattr rescue), uncompressed images, the fuzzer's repacks and the
//! differential oracle's generated images.

use std::path::Path;
use std::process::Command;

use crate::host_tool::{self, ToolError};

/// Packs `tree` into `dest` as the bakery does (every file root's, xattrs kept, no
/// appending to an old image), on one thread so parallel packs do not fight, with `extra`
/// options (`-noI -noD -noF` and the like) after.
pub fn pack(tree: &Path, dest: &Path, extra: &[&str]) -> Result<(), ToolError> {
    host_tool::output(
        Command::new("mksquashfs")
            .arg(tree)
            .arg(dest)
            .args([
                "-all-root",
                "-noappend",
                "-quiet",
                "-no-progress",
                "-processors",
                "1",
            ])
            .args(extra),
        "squashfs-tools",
    )
    .map(|_| ())
}
