//! Directory trees: systemd merges plain directories as extensions too, and lint of an
//! extracted image is how the benchmark's peer (`unsquashfs -d` then check) works.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{Entry, Kind, Tree};
use crate::elf::ReadAt;
use crate::errors::ImageError;

pub(crate) struct DirTree {
    root: PathBuf,
    entries: Vec<Entry>,
}

impl DirTree {
    pub fn open(root: &Path) -> Result<DirTree, ImageError> {
        let mut entries = Vec::new();
        walk(root, "", &mut entries).map_err(|source| ImageError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(DirTree {
            root: root.to_path_buf(),
            entries,
        })
    }

    fn full(&self, index: usize) -> PathBuf {
        self.root.join(&self.entries[index].path)
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<Entry>) -> io::Result<()> {
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let meta = std::fs::symlink_metadata(&full)?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink(std::fs::read_link(&full)?.to_string_lossy().into_owned())
    } else if ft.is_char_device() {
        let dev = meta.rdev();
        Kind::CharDevice {
            major: ((dev >> 8) & 0xfff) as u32,
            minor: ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32,
        }
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        Kind::Socket
    };
    out.push(Entry {
        path: rel.to_string(),
        kind: kind.clone(),
        mode: (meta.mode() & 0o7777) as u16,
        uid: meta.uid(),
        gid: meta.gid(),
        size: if kind == Kind::File { meta.len() } else { 0 },
    });
    if kind == Kind::Dir {
        for child in std::fs::read_dir(&full)? {
            let child = child?;
            let name = child.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            walk(root, &child_rel, out)?;
        }
    }
    Ok(())
}

struct PlainFile(File, u64);

impl ReadAt for PlainFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        FileExt::read_at(&self.0, buf, offset)
    }
    fn len(&self) -> u64 {
        self.1
    }
}

impl Tree for DirTree {
    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn open(&self, index: usize) -> io::Result<Box<dyn ReadAt + Send + '_>> {
        let f = File::open(self.full(index))?;
        let len = f.metadata()?.len();
        Ok(Box::new(PlainFile(f, len)))
    }

    fn xattr(&self, index: usize, name: &str) -> io::Result<Option<Vec<u8>>> {
        match xattr::get(self.full(index), name) {
            Ok(v) => Ok(v),
            // Filesystems without user xattrs (some tmpfs setups) simply have none.
            Err(e) if e.raw_os_error() == Some(95) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
