//! Reading extension images without extracting them.
//!
//! Lint walks an image's tree and reads only the bytes its rules need (ELF headers, unit
//! files, the release file), so a 300 MB image is checked in a fraction of the time
//! `unsquashfs` takes to write it out, and in bounded memory.

mod detect;
mod dir;
mod erofs_xattr;
mod extract;
pub mod facts;
mod squashfs;
mod squashfs_codec;
mod squashfs_refs;
mod squashfs_verify;
mod squashfs_xattr;

use std::collections::HashMap;
use std::io;
use std::path::Path;

pub use detect::{Format, detect};

use crate::elf::ReadAt;
use crate::errors::ImageError;

/// What kind of inode an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
    BlockDevice,
    Fifo,
    Socket,
}

/// One inode, with its path relative to the image root (`usr/bin/x`; the root is `""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

impl Entry {
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
    /// overlayfs whiteouts are character devices 0:0.
    pub fn is_whiteout(&self) -> bool {
        self.kind == (Kind::CharDevice { major: 0, minor: 0 })
    }
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }
}

/// A readable image tree, whatever its on-disk format.
pub(crate) trait Tree: Send + Sync {
    /// All entries, sorted by path, parents before children.
    fn entries(&self) -> &[Entry];
    /// Random access to the bytes of the regular file at `index`.
    fn open(&self, index: usize) -> io::Result<Box<dyn ReadAt + Send + '_>>;
    /// An extended attribute of the entry at `index`, read from inside the image.
    fn xattr(&self, index: usize, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// False when the format's reader cannot see xattrs at all, so their absence means nothing.
    fn has_xattr_support(&self) -> bool {
        true
    }
    /// Entries whose data does not read back whole, with the reason. Only formats whose
    /// blocks lint reads itself need to look: erofs and ext4 trees were read whole by their
    /// fsck tool on the way in, and a directory has no blocks to corrupt.
    fn unreadable_files(&self) -> Vec<(usize, String)> {
        Vec::new()
    }
}

/// An opened image or directory tree.
pub struct Image {
    pub format: Format,
    tree: Box<dyn Tree>,
    index: HashMap<String, usize>,
}

impl Image {
    /// Opens `path` (an image file of any format systemd accepts, or a directory).
    pub fn open(path: &Path) -> Result<Image, ImageError> {
        let format = detect(path)?;
        let tree: Box<dyn Tree> = match format {
            Format::Directory => Box::new(dir::DirTree::open(path)?),
            Format::Squashfs => Box::new(squashfs::SquashTree::open(path)?),
            Format::Erofs | Format::Ext4 => Box::new(extract::ExtractedTree::open(path, format)?),
            Format::Btrfs | Format::Gpt => {
                return Err(ImageError::Unsupported {
                    path: path.to_path_buf(),
                    format: format.name(),
                    detail: "reading this format is not implemented yet; lint the extracted tree as a directory instead".into(),
                });
            }
        };
        let index = tree
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        Ok(Image {
            format,
            tree,
            index,
        })
    }

    pub fn entries(&self) -> &[Entry] {
        self.tree.entries()
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.index
            .get(path.trim_matches('/'))
            .map(|i| &self.tree.entries()[*i])
    }

    /// Random access to a regular file's bytes.
    pub fn open_file(&self, path: &str) -> io::Result<Box<dyn ReadAt + Send + '_>> {
        let i = self.index_of(path)?;
        self.tree.open(i)
    }

    /// Reads a whole regular file, refusing files over `limit` bytes (unit files and release
    /// files are small; a huge one is a finding, not something to load).
    pub fn read(&self, path: &str, limit: u64) -> io::Result<Vec<u8>> {
        let f = self.open_file(path)?;
        let len = f.len();
        if len > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path} is {len} bytes, over the {limit}-byte limit"),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        let n = read_full(f.as_ref(), 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Reads the first bytes of a file (up to `buf.len()`).
    pub fn read_head(&self, path: &str, buf: &mut [u8]) -> io::Result<usize> {
        let f = self.open_file(path)?;
        read_full(f.as_ref(), 0, buf)
    }

    pub fn xattr(&self, path: &str, name: &str) -> io::Result<Option<Vec<u8>>> {
        let i = self.index_of(path)?;
        self.tree.xattr(i, name)
    }

    pub fn has_xattr_support(&self) -> bool {
        self.tree.has_xattr_support()
    }

    /// Files whose data does not read back whole (a corrupt, truncated or misplaced block),
    /// by path, with the reason; every block is decompressed once, nothing is written.
    pub fn unreadable_files(&self) -> Vec<(String, String)> {
        let entries = self.tree.entries();
        let mut bad: Vec<(String, String)> = self
            .tree
            .unreadable_files()
            .into_iter()
            .filter_map(|(i, why)| entries.get(i).map(|e| (e.path.clone(), why)))
            .collect();
        bad.sort();
        bad
    }

    /// Follows symlinks inside the image (never out of it), as systemd does when it looks
    /// up the release file with the image as root. Returns the final entry's path.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut current = path.trim_matches('/').to_string();
        for _ in 0..40 {
            // Resolve each component so symlinked parent directories work too.
            let mut resolved = String::new();
            let mut changed = false;
            let comps: Vec<&str> = current.split('/').filter(|c| !c.is_empty()).collect();
            for (i, c) in comps.iter().enumerate() {
                let candidate = if resolved.is_empty() {
                    c.to_string()
                } else {
                    format!("{resolved}/{c}")
                };
                match self.get(&candidate).map(|e| &e.kind) {
                    Some(Kind::Symlink(target)) => {
                        let base = if target.starts_with('/') {
                            String::new()
                        } else {
                            resolved.clone()
                        };
                        let mut joined = normalize(&format!("{base}/{target}"));
                        for rest in &comps[i + 1..] {
                            joined = format!("{joined}/{rest}");
                        }
                        current = joined;
                        changed = true;
                        break;
                    }
                    Some(_) => resolved = candidate,
                    None => return None,
                }
            }
            if !changed {
                return Some(resolved);
            }
        }
        None
    }

    fn index_of(&self, path: &str) -> io::Result<usize> {
        self.index
            .get(path.trim_matches('/'))
            .copied()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{path}: no such file in the image"),
                )
            })
    }
}

/// Normalizes `a/./b/../c` to `a/c`; `..` never climbs above the root, like a chroot.
pub fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

pub(crate) fn read_full(f: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_stays_inside_root() {
        assert_eq!(normalize("usr/bin/../lib/./x"), "usr/lib/x");
        assert_eq!(normalize("../../etc/passwd"), "etc/passwd");
        assert_eq!(normalize("/"), "");
    }
}
