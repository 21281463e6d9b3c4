//! dm-verity hash trees (`veritysetup format`), laid out as Flatcar lays out its USR
//! partitions: the filesystem's blocks, then the verity superblock and the tree in the same
//! partition, the root hash on the kernel command line (`verity.usrhash=`).

use std::path::Path;
use std::process::Command;

use crate::errors::BuildError;
use crate::host_tool;

/// Flatcar's USR filesystem size in 4 KiB blocks (flatcar/scripts
/// `build_library/disk_layout.json`, `fs_blocks` of USR-A): the hash tree starts after them.
pub const USR_DATA_BLOCKS: u64 = 260_094;
pub const BLOCK: u64 = 4096;

/// Where the hash area starts in a USR partition.
pub const fn usr_hash_offset() -> u64 {
    USR_DATA_BLOCKS * BLOCK
}

/// Writes the hash tree for the first `data_blocks` blocks of `image` into `image` itself,
/// from `data_blocks * 4096` on, and returns the root hash (hex). No salt and a fixed UUID:
/// the same filesystem gives the same bytes and the same hash.
pub fn format(image: &Path, data_blocks: u64, uuid: &str) -> Result<String, BuildError> {
    let out = host_tool::stdout(
        Command::new("veritysetup")
            .arg("format")
            .arg(format!("--hash-offset={}", data_blocks * BLOCK))
            .arg(format!("--data-blocks={data_blocks}"))
            .arg("--salt=-")
            .arg(format!("--uuid={uuid}"))
            .arg(image)
            .arg(image),
        "cryptsetup-bin",
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_string())
        .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| BuildError::Spec(format!("veritysetup format printed no root hash: {out}")))
}
