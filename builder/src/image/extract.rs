//! Formats we have no in-process reader for (erofs, ext4): extract with the host tool into a
//! temp directory, then read that directory.
//!
//! This is slower and loses what the tools do not extract: erofs-utils 1.5 drops xattrs, so
//! an erofs entry's are read from the image itself (`erofs_xattr.rs`); debugfs drops them
//! too, which [`Tree::has_xattr_support`] reports for ext4 so rules do not mistake
//! "unknown" for "absent".

use std::io;
use std::path::Path;
use std::process::Command;

use super::dir::DirTree;
use super::{Entry, Format, Tree};
use crate::elf::ReadAt;
use crate::errors::ImageError;

pub(crate) struct ExtractedTree {
    _dir: tempfile::TempDir,
    tree: DirTree,
    /// The erofs image, whose xattrs are read from it; `None` for ext4 (none readable).
    erofs: Option<std::path::PathBuf>,
}

impl ExtractedTree {
    pub fn open(path: &Path, format: Format) -> Result<ExtractedTree, ImageError> {
        let dir = tempfile::tempdir().map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let out = dir.path().join("root");
        let (tool, package, mut cmd) = match format {
            Format::Erofs => {
                let mut c = Command::new("fsck.erofs");
                c.arg(format!("--extract={}", out.display()))
                    .arg("--preserve")
                    .arg(path);
                ("fsck.erofs", "erofs-utils", c)
            }
            _ => {
                std::fs::create_dir(&out).map_err(|source| ImageError::Io {
                    path: out.clone(),
                    source,
                })?;
                let mut c = Command::new("debugfs");
                c.arg("-R")
                    .arg(format!("rdump / {}", out.display()))
                    .arg(path);
                ("debugfs", "e2fsprogs", c)
            }
        };
        let result =
            crate::host_tool::output_any_status(&mut cmd, package).map_err(|e| match e {
                crate::host_tool::ToolError::Missing { .. } => ImageError::NeedsTool {
                    path: path.to_path_buf(),
                    format: format.name(),
                    tool,
                    package,
                },
                other => ImageError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(other.to_string()),
                },
            })?;
        if !result.status.success() || !out.is_dir() {
            let err = String::from_utf8_lossy(&result.stderr);
            return Err(ImageError::Corrupt {
                path: path.to_path_buf(),
                format: format.name(),
                detail: format!(
                    "{tool} could not read it: {}",
                    err.lines().last().unwrap_or("").trim()
                ),
            });
        }
        let tree = DirTree::open(&out)?;
        Ok(ExtractedTree {
            _dir: dir,
            tree,
            erofs: (format == Format::Erofs).then(|| path.to_path_buf()),
        })
    }
}

impl Tree for ExtractedTree {
    fn entries(&self) -> &[Entry] {
        self.tree.entries()
    }
    fn open(&self, index: usize) -> io::Result<Box<dyn ReadAt + Send + '_>> {
        self.tree.open(index)
    }
    fn xattr(&self, index: usize, name: &str) -> io::Result<Option<Vec<u8>>> {
        match (&self.erofs, self.tree.entries().get(index)) {
            (Some(image), Some(e)) => super::erofs_xattr::read(image, &e.path, name),
            _ => self.tree.xattr(index, name),
        }
    }
    fn has_xattr_support(&self) -> bool {
        self.erofs.is_some()
    }
}
