//! A partition of a disk image as a file of its own and back: how filesystems that cannot
//! be written in place without a mount (btrfs) are made elsewhere and put into a disk.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::gpt::Partition;

const CHUNK: usize = 1 << 20;

/// Copies partition `part` of `disk` into `out` (holes where the disk reads zero).
pub fn extract(disk: &Path, part: &Partition, out: &Path) -> std::io::Result<()> {
    let src = std::fs::File::open(disk)?;
    let dest = std::fs::File::create(out)?;
    dest.set_len(part.size())?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < part.size() {
        let n = (part.size() - at).min(CHUNK as u64) as usize;
        src.read_exact_at(&mut buf[..n], part.offset() + at)?;
        if buf[..n].iter().any(|b| *b != 0) {
            dest.write_all_at(&buf[..n], at)?;
        }
        at += n as u64;
    }
    Ok(())
}

/// Whether the partition's old bytes are known to be zero already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underneath {
    /// A fresh sparse disk: zero chunks of the image are skipped.
    Zeros,
    /// A filesystem being replaced: every byte is written.
    Data,
}

/// Writes `image` into partition `part` of `disk`. An image larger than the partition is
/// an error; a shorter one leaves the rest of the partition as it was.
pub fn write(
    disk: &Path,
    part: &Partition,
    image: &Path,
    under: Underneath,
) -> std::io::Result<()> {
    let mut src = std::fs::File::open(image)?;
    let len = src.metadata()?.len();
    if len > part.size() {
        return Err(std::io::Error::other(format!(
            "{} ({len} bytes) does not fit partition {} ({} bytes)",
            image.display(),
            part.label,
            part.size()
        )));
    }
    let dest = std::fs::OpenOptions::new().write(true).open(disk)?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = src.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if under == Underneath::Data || buf[..filled].iter().any(|b| *b != 0) {
            dest.write_all_at(&buf[..filled], part.offset() + at)?;
        }
        at += filled as u64;
    }
    dest.sync_data()
}
