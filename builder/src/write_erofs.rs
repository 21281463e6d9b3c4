//! Writes a [`Layout`] as an erofs image through `mkfs.erofs` (erofs-utils).
//!
//! There is no erofs writer crate, so the layout is staged into a temp directory and handed
//! to the host tool with the options the bakery uses, plus a fixed timestamp and UUID so
//! rebuilds are identical.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::errors::BuildError;
use crate::layout::{Content, Layout, Node};

pub fn write(layout: &Layout, epoch: u32, dest: &Path) -> Result<(), BuildError> {
    let stage = tempfile::tempdir().map_err(|e| BuildError::io(Path::new("/tmp"), e))?;
    let root = stage.path().join("root");
    std::fs::create_dir(&root).map_err(|e| BuildError::io(&root, e))?;
    for (path, node) in &layout.nodes {
        let p = root.join(path);
        let io = |e| BuildError::io(&p, e);
        match node {
            Node::Dir { mode } => {
                std::fs::create_dir_all(&p).map_err(io)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode((*mode).into()))
                    .map_err(io)?;
            }
            Node::File { content, mode } => {
                match content {
                    Content::Inline(b) => std::fs::write(&p, b).map_err(io)?,
                    Content::Host(src) => {
                        std::fs::copy(src, &p).map_err(io)?;
                    }
                }
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode((*mode).into()))
                    .map_err(io)?;
            }
            Node::Symlink { target } => std::os::unix::fs::symlink(target, &p).map_err(io)?,
        }
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".erofs.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| BuildError::io(dir, e))?;
    crate::host_tool::output(
        Command::new("mkfs.erofs")
            .args([
                "-zlz4hc,12",
                "-C65536",
                "-Efragments,ztailpacking",
                "-U00000000-0000-0000-0000-000000000000",
            ])
            .arg(format!("-T{epoch}"))
            .args(["--all-root", "--ignore-mtime", "--quiet"])
            .arg(tmp.path())
            .arg(&root),
        "erofs-utils",
    )?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| BuildError::io(tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| BuildError::io(dest, e.error))?;
    Ok(())
}
