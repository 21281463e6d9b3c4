//! Which filesystem an image file holds, by its magic numbers.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::errors::ImageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Directory,
    Squashfs,
    Erofs,
    Ext4,
    Btrfs,
    /// A GPT disk image (a DDI), possibly with verity partitions.
    Gpt,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Directory => "directory",
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
            Format::Ext4 => "ext4",
            Format::Btrfs => "btrfs",
            Format::Gpt => "gpt",
        }
    }
}

/// Detects the format of `path`. Garbage, empty and truncated files are errors that say
/// what was found, since systemd refuses them too (and with them every other extension).
pub fn detect(path: &Path) -> Result<Format, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Ok(Format::Directory);
    }
    let mut head = vec![0u8; 0x10048];
    let mut f = File::open(path).map_err(io)?;
    let mut n = 0;
    while n < head.len() {
        let r = f.read(&mut head[n..]).map_err(io)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    head.truncate(n);
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    if n == 0 {
        return Err(ImageError::UnknownFormat {
            path: path.to_path_buf(),
            detail: "the file is empty".into(),
        });
    }
    if at(0, b"hsqs") {
        return Ok(Format::Squashfs);
    }
    if at(1024, &0xE0F5_E1E2u32.to_le_bytes()) {
        return Ok(Format::Erofs);
    }
    if at(1080, &0xEF53u16.to_le_bytes()) {
        return Ok(Format::Ext4);
    }
    if at(512, b"EFI PART") || at(4096, b"EFI PART") {
        return Ok(Format::Gpt);
    }
    if at(0x10040, b"_BHRfS_M") {
        return Ok(Format::Btrfs);
    }
    let detail = if at(0, b"sqsh") {
        "big-endian squashfs, which Linux cannot mount".to_string()
    } else if head[..n.min(512)].iter().all(|b| *b == 0) {
        format!("the first {} bytes are all zero", n.min(512))
    } else {
        format!(
            "{} bytes, no squashfs/erofs/ext4/btrfs/GPT signature",
            meta.len()
        )
    };
    Err(ImageError::UnknownFormat {
        path: path.to_path_buf(),
        detail,
    })
}
