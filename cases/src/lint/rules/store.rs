//! A release store as a whole (a folder per release tag, the metadata and global
//! manifests): what the release gate trusts beyond each release directory's own files.

use std::path::Path;

use crate::lint::finding::{Finding, Rule, Severity};

/// Info, not a warning: the bakery's manifests never list a transfer file (a release's
/// `SHA256SUMS` is its two arch builds' `SHA256SUMS.NAME` concatenated, the metadata one
/// every release's, and the `.conf` files are uploaded beside them), so every store the
/// bakery publishes has it. What it tells is that the gate tested the conf as found.
pub const UNLISTED_TRANSFER: Rule = Rule {
    id: "store/unlisted-transfer",
    severity: Severity::Info,
    summary: "the transfer file the store's update cycles install is listed in no SHA256SUMS, so its bytes are not verified",
    reference: "L1; bakery release.sh and release_meta.sh list images only (bakery.md 3.1)",
};

pub const RULES: &[&Rule] = &[&UNLISTED_TRANSFER];

/// Findings for the release tag `dir` as part of its store; none when `dir` is not a tag
/// folder of a per-tag store.
pub fn check(dir: &Path) -> Vec<Finding> {
    // A store whose manifests do not read is refused by `store::open` with the line at
    // fault; nothing to add here.
    let Ok(Some(conf)) = sysext_builder::store::unlisted_transfer(dir) else {
        return Vec::new();
    };
    let file = conf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    vec![Finding::new(
        &UNLISTED_TRANSFER,
        file.as_str(),
        format!(
            "the store's update cycles install this {file} (the newest release's), and no SHA256SUMS of the store lists it, so the gate tests it unverified (the bakery lists only images); to have its digest checked, add its line to this release's SHA256SUMS: `sha256sum {file} >> SHA256SUMS`"
        ),
    )]
}
