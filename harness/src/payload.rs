//! The payload disk: how an image reaches a restored guest at disk speed instead of through
//! SSH.
//!
//! Every guest that is saved for restoring carries a read-only virtio disk with the serial
//! [`SERIAL`], empty at save time. A restore points that disk at an overlay whose backing
//! file is the image a case is about to install, so the guest copies it from a block device
//! (about 120 MB/s under TCG) instead of decrypting it out of an SSH channel (about 6 MB/s:
//! dropbear's software AES on an emulated CPU, 5 s for the 30 MB containerd image). The
//! overlay is the same size at save and restore, so the size the guest read at boot stays
//! true; past the image's end it reads zeros.

use std::path::{Path, PathBuf};

use crate::errors::{HarnessError, Result};
use crate::qemu_img::Backing;

/// The disk's virtio serial, how the guest finds it (`/sys/block/vd*/serial`).
pub const SERIAL: &str = "sysext-payload";

/// The disk's size as the guest sees it. An image larger than this goes through SSH.
pub const CAPACITY: u64 = 8 << 30;

/// Below this, SSH is faster: the copy from the disk costs two or three guest processes
/// (~0.1 s each under TCG), SSH about 0.17 s per MB.
pub const WORTH_IT: u64 = 1 << 20;

/// A file the payload disk carries in this VM.
#[derive(Debug, Clone)]
pub struct Carried {
    /// The host file, canonical, as the disk's backing file names it.
    pub file: PathBuf,
    pub len: u64,
}

/// Makes `dest`: an overlay of [`CAPACITY`] over `file` (or over nothing). Returns what it
/// carries; `None` when there is no file, or it is too small to gain or too large to fit.
pub fn create(dest: &Path, file: Option<&Path>) -> Result<Option<Carried>> {
    let carried = match file {
        Some(f) => {
            let file = f.canonicalize().map_err(|e| HarnessError::io(f, e))?;
            let len = std::fs::metadata(&file)
                .map_err(|e| HarnessError::io(&file, e))?
                .len();
            (WORTH_IT..=CAPACITY)
                .contains(&len)
                .then_some(Carried { file, len })
        }
        None => None,
    };
    let backing = carried.as_ref().map(|c| Backing::Raw(&c.file));
    crate::qemu_img::create_overlay(dest, backing, Some(CAPACITY))?;
    Ok(carried)
}

/// The guest shell that copies the carried file (`len` bytes) to `remote` with `mode`,
/// through a temp name. The disk is read with O_DIRECT: the guest's page cache still holds
/// what it read of the empty disk at boot (partition probing), which a buffered read would
/// return instead of the image. Whole 1 MiB blocks are read (O_DIRECT wants aligned sizes)
/// and the copy is cut to `len` when it is not a whole number of them.
pub fn copy_command(remote: &str, len: u64, mode: u32) -> String {
    let (tmp, dir) = crate::ssh::staging(remote);
    let blocks = len.div_ceil(1 << 20);
    let truncate = if len.is_multiple_of(1 << 20) {
        String::new()
    } else {
        format!(" && truncate -s {len} {tmp}")
    };
    // The mode through the umask, as `ssh::write_command` does: no chmod process.
    let chmod = if mode & 0o111 != 0 {
        format!(" && chmod {mode:o} {tmp}")
    } else {
        String::new()
    };
    format!(
        "dev=; for s in /sys/block/vd*/serial; do v=; read -r v < \"$s\"; [ \"$v\" = {SERIAL} ] && dev=/dev/${{s#/sys/block/}} && dev=${{dev%/serial}}; done; \
         [ -n \"$dev\" ] || {{ echo 'sysext-test: no payload disk (serial {SERIAL}) in the guest' >&2; false; }} && \
         umask {umask:03o} && {{ [ -d {dir} ] || mkdir -p {dir}; }} && \
         dd if=\"$dev\" of={tmp} bs=1M count={blocks} iflag=direct status=none{truncate}{chmod} && \
         mv -f {tmp} {remote}",
        umask = 0o777 & !mode,
        remote = crate::ssh::quote(remote),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_finds_the_disk_by_serial_and_cuts_to_length() {
        let c = copy_command("/opt/extensions/a b/x.raw", 3 << 20 | 5, 0o644);
        assert!(c.contains("count=4 "), "{c}");
        assert!(c.contains("truncate -s 3145733 "), "{c}");
        assert!(c.contains("iflag=direct"), "{c}");
        assert!(c.contains("'/opt/extensions/a b'"), "{c}");
        assert!(c.contains("umask 133"), "{c}");
        assert!(!c.contains("chmod"), "{c}");
        let whole = copy_command("/x", 2 << 20, 0o755);
        assert!(!whole.contains("truncate"), "{whole}");
        assert!(whole.contains("chmod 755"), "{whole}");
    }

    #[test]
    fn the_serial_lookup_names_the_block_device() {
        // The device lookup alone, against a fake /sys.
        let dir = tempfile::tempdir().unwrap();
        for (dev, serial) in [("vda", "root"), ("vdb", SERIAL)] {
            std::fs::create_dir_all(dir.path().join(dev)).unwrap();
            std::fs::write(dir.path().join(dev).join("serial"), serial).unwrap();
        }
        let c = copy_command("/x", 1, 0o644);
        let lookup = c
            .split(" [ -n")
            .next()
            .unwrap()
            .replace("/sys/block/", &format!("{}/", dir.path().display()));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{lookup} echo \"$dev\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/dev/vdb");
    }
}
