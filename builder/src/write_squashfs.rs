//! Writes a [`Layout`] as a squashfs image with backhand.
//!
//! Every inode is owned by root and stamped with the spec's epoch, which is what makes two
//! builds of one spec byte-identical and what `mksquashfs -all-root` gives the bakery.

use std::io::{BufWriter, Cursor};
use std::path::Path;

use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};

use crate::errors::BuildError;
use crate::layout::{Content, Layout, Node};
use crate::spec::Compression;

pub fn write(
    layout: &Layout,
    compression: Compression,
    epoch: u32,
    dest: &Path,
) -> Result<(), BuildError> {
    let mut fs = FilesystemWriter::default();
    fs.set_time(epoch);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    let id = match compression {
        Compression::Gzip => Compressor::Gzip,
        Compression::Xz => Compressor::Xz,
        Compression::Zstd => Compressor::Zstd,
    };
    fs.set_compressor(FilesystemCompressor::new(id, None)?);
    let header = |mode: u16| NodeHeader::new(mode, 0, 0, epoch);
    for (path, node) in &layout.nodes {
        match node {
            Node::Dir { mode } => fs.push_dir(path, header(*mode))?,
            Node::File {
                content: Content::Inline(bytes),
                mode,
            } => fs.push_file(Cursor::new(bytes.as_slice()), path, header(*mode))?,
            Node::File {
                content: Content::Host(src),
                mode,
            } => fs.push_file_from_path(src, path, header(*mode))?,
            Node::Symlink { target } => fs.push_symlink(target, path, header(0o777))?,
        }
    }
    crate::atomic::write_with(dest, |file| {
        fs.write(BufWriter::with_capacity(1 << 20, file))
            .map_err(std::io::Error::other)?;
        Ok(())
    })
    .map_err(|e| BuildError::io(dest, e))
}
