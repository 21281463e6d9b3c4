//! squashfs images: backhand parses the superblock, inode and directory tables; file data
//! and xattrs are read here, block by block, on demand.
//!
//! backhand's own file reader is sequential and caches every fragment block it ever
//! decompresses, which on a 300 MB image would cost more memory than the whole lint budget.
//! Reading blocks ourselves gives random access (an ELF's dynamic section without its text)
//! and a small bounded fragment cache.

use std::fs::File;
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::{InnerNode, Squashfs, SquashfsFileReader};

use super::squashfs_codec::{DecodeError, with_scratch};
use super::squashfs_xattr::XattrTable;
use super::{Entry, Kind, Tree};
use crate::elf::ReadAt;
use crate::errors::ImageError;

const NO_FRAGMENT: u32 = 0xffff_ffff;
const FRAGMENT_CACHE: usize = 8;

/// Where one regular file's data lives.
pub(super) struct FileData {
    pub(super) blocks_start: u64,
    /// On-disk sizes and whether each block is stored uncompressed (bit 24 in the inode).
    pub(super) block_sizes: Vec<(u32, bool)>,
    /// Fragment index and offset in it of the file's tail.
    pub(super) fragment: Option<(u32, u32)>,
    pub(super) size: u64,
    xattr_index: Option<u32>,
}

pub(crate) struct SquashTree {
    pub(super) file: File,
    pub(super) compressor: Compressor,
    pub(super) block_size: u32,
    pub(super) bytes_used: u64,
    /// Start, on-disk size and "stored uncompressed" of each fragment block.
    pub(super) fragments: Vec<(u64, u32, bool)>,
    entries: Vec<Entry>,
    /// Per entry, the data of a regular file.
    pub(super) data: Vec<Option<FileData>>,
    xattrs: Option<XattrTable>,
    fragment_cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl SquashTree {
    pub fn open(path: &Path) -> Result<SquashTree, ImageError> {
        let corrupt = |detail: String| ImageError::Corrupt {
            path: path.to_path_buf(),
            format: "squashfs",
            detail,
        };
        let io = |source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let reader = BufReader::with_capacity(64 * 1024, file.try_clone().map_err(io)?);
        let sq = Squashfs::from_reader(reader).map_err(|e| corrupt(e.to_string()))?;
        let sb = sq.superblock;
        if sb.bytes_used > file_len {
            return Err(corrupt(format!(
                "truncated: the superblock says {} bytes, the file has {file_len}",
                sb.bytes_used
            )));
        }
        // Bit 2 is squashfs 3's "check data" flag: no squashfs 4 writer sets it, and
        // unsquashfs still honours it (an extra byte after every metadata header), so it
        // misreads the image; anyone extracting or repacking it gets garbage.
        if sb.flags & 0x0004 != 0 {
            return Err(corrupt(
                "the superblock sets squashfs 3's check-data flag (0x0004), which unsquashfs misreads".into(),
            ));
        }
        check_table_order(&sb).map_err(corrupt)?;
        // Inode numbers run from 1 to the superblock's count; unsquashfs refuses anything
        // else ("inode number zero is invalid"), backhand does not look.
        if let Some(n) = std::iter::once(&sq.root_inode)
            .chain(sq.inodes.values())
            .map(|i| i.header.inode_number)
            .find(|&n| n == 0 || n > sb.inode_count)
        {
            return Err(corrupt(format!(
                "an inode is numbered {n}, outside 1..={}",
                sb.inode_count
            )));
        }
        let compressor = sb.compressor;
        let xattr_start = sb.xattr_table;
        check_lookup_tables(&file, &sb).map_err(corrupt)?;
        super::squashfs_refs::check(&file, &sq).map_err(corrupt)?;
        let fs = sq
            .into_filesystem_reader()
            .map_err(|e| corrupt(e.to_string()))?;
        let fragments = fs
            .fragments
            .as_ref()
            .map(|f| {
                f.iter()
                    .map(|fr| (fr.start, fr.size.size(), fr.size.uncompressed()))
                    .collect()
            })
            .unwrap_or_default();
        let mut entries = Vec::with_capacity(fs.root.nodes.len());
        let mut data = Vec::with_capacity(fs.root.nodes.len());
        for node in fs.files() {
            let path = node
                .fullpath
                .to_string_lossy()
                .trim_start_matches('/')
                .to_string();
            let h = &node.header;
            let (kind, size, fd) = match &node.inner {
                InnerNode::Dir(_) => (Kind::Dir, 0, None),
                InnerNode::File(f) => {
                    let fd = file_data(f);
                    (Kind::File, fd.size, Some(fd))
                }
                InnerNode::Symlink(s) => {
                    let t = s.link.to_string_lossy().into_owned();
                    let len = t.len() as u64;
                    (Kind::Symlink(t), len, None)
                }
                InnerNode::CharacterDevice(d) => {
                    let (major, minor) = split_dev(d.device_number);
                    (Kind::CharDevice { major, minor }, 0, None)
                }
                InnerNode::BlockDevice(_) => (Kind::BlockDevice, 0, None),
                InnerNode::NamedPipe => (Kind::Fifo, 0, None),
                InnerNode::Socket => (Kind::Socket, 0, None),
            };
            entries.push(Entry {
                path,
                kind,
                mode: h.permissions & 0o7777,
                uid: h.uid,
                gid: h.gid,
                size,
            });
            data.push(fd);
        }
        drop(fs);
        let xattrs = if xattr_start == u64::MAX {
            None
        } else {
            Some(
                XattrTable::load(&file, xattr_start, sb.bytes_used, compressor)
                    .map_err(|e| corrupt(format!("xattr table: {e}")))?,
            )
        };
        Ok(SquashTree {
            file,
            compressor,
            block_size: sb.block_size,
            bytes_used: sb.bytes_used,
            fragments,
            entries,
            data,
            xattrs,
            fragment_cache: Mutex::new(Vec::new()),
        })
    }

    fn decompress(&self, offset: u64, size: u32, uncompressed: bool) -> io::Result<Vec<u8>> {
        self.decompress_prefix(offset, size, uncompressed, self.block_size as usize)
            .map(|(bytes, _)| bytes)
    }

    /// The first `want` bytes of a block (fewer if it is shorter), and whether that is all
    /// of it. Lint's other rules read a few KiB of most files (ELF headers, the dynamic
    /// section); decoding only up to those bytes instead of the whole block took a sixth
    /// of lint's time off an image of shared libraries. Integrity is not this path's job:
    /// [`super::squashfs_verify`] decodes every whole block.
    fn decompress_prefix(
        &self,
        offset: u64,
        size: u32,
        uncompressed: bool,
        want: usize,
    ) -> io::Result<(Vec<u8>, bool)> {
        if size > self.block_size.max(1 << 20) {
            return Err(corrupt_io("block larger than the block size"));
        }
        if uncompressed {
            let n = (size as usize).min(want);
            let mut raw = vec![0u8; n];
            self.file.read_exact_at(&mut raw, offset)?;
            return Ok((raw, n == size as usize));
        }
        let mut out = vec![0u8; want.min(self.block_size as usize)];
        let whole_block = want >= self.block_size as usize;
        let decoded = with_scratch(self.compressor, |d, raw| {
            raw.resize(size as usize, 0);
            self.file
                .read_exact_at(raw, offset)
                .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
            if whole_block {
                d.decompress(raw, &mut out).map(|n| (n, true))
            } else {
                d.decompress_prefix(raw, &mut out)
            }
        });
        let (n, whole) =
            decoded.map_err(|e| corrupt_io(&format!("decompressing block at {offset}: {e}")))?;
        out.truncate(n);
        Ok((out, whole))
    }

    fn fragment(&self, index: u32) -> io::Result<Arc<Vec<u8>>> {
        let (start, size, uncompressed) = *self
            .fragments
            .get(index as usize)
            .ok_or_else(|| corrupt_io("fragment index out of range"))?;
        {
            let mut cache = self
                .fragment_cache
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(pos) = cache.iter().position(|(s, _)| *s == start) {
                let hit = cache.remove(pos);
                let bytes = hit.1.clone();
                cache.push(hit);
                return Ok(bytes);
            }
        }
        let bytes = Arc::new(self.decompress(start, size, uncompressed)?);
        let mut cache = self
            .fragment_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.len() >= FRAGMENT_CACHE {
            cache.remove(0);
        }
        cache.push((start, bytes.clone()));
        Ok(bytes)
    }
}

fn file_data(f: &SquashfsFileReader) -> FileData {
    let (frag, offset, xattr) = match f {
        SquashfsFileReader::Basic(b) => (b.frag_index, b.block_offset, None),
        SquashfsFileReader::Extended(e) => (
            e.frag_index,
            e.block_offset,
            (e.xattr_index != NO_FRAGMENT).then_some(e.xattr_index),
        ),
    };
    FileData {
        blocks_start: f.blocks_start(),
        block_sizes: f
            .block_sizes()
            .iter()
            .map(|d| (d.size(), d.uncompressed()))
            .collect(),
        fragment: (frag != NO_FRAGMENT).then_some((frag, offset)),
        size: f.file_len() as u64,
        xattr_index: xattr,
    }
}

/// The superblock's table positions in the order every reader relies on (inode table,
/// directory table, fragment and export tables, id table, xattr table, end of filesystem),
/// as unsquashfs's `read_filesystem_tables` and Linux's `squashfs_fill_super` check them
/// before reading any: a table that starts past the next one (or past `bytes_used`) makes
/// both refuse the image, while backhand may still read it.
fn check_table_order(sb: &backhand::SuperBlock) -> Result<(), String> {
    const ABSENT: u64 = u64::MAX;
    let end = if sb.xattr_table == ABSENT {
        sb.bytes_used
    } else {
        if sb.xattr_table >= sb.bytes_used {
            return Err("xattr table starts past the end of the filesystem".into());
        }
        sb.xattr_table
    };
    let checks = [
        (
            sb.id_table >= end,
            "id table starts past the table after it",
        ),
        (
            sb.export_table != ABSENT && sb.export_table >= sb.id_table,
            "export table starts past the id table",
        ),
        (
            sb.frag_count != 0 && sb.frag_table >= sb.id_table,
            "fragment table starts past the id table",
        ),
        (
            sb.dir_table >= sb.id_table,
            "directory table starts past the id table",
        ),
        (
            sb.inode_table >= sb.dir_table,
            "inode table starts past the directory table",
        ),
    ];
    match checks.iter().find(|(bad, _)| *bad) {
        Some((_, what)) => Err(format!("{what} (superblock)")),
        None => Ok(()),
    }
}

/// The lookup tables at the end of the filesystem (fragments, then exports, then ids, then
/// xattrs) as unsquashfs and Linux check them before mounting: each index must end exactly
/// where the next table's first block starts, and each metadata block it points to must
/// hold exactly its share of the entries (8 KiB, the last one the rest). backhand reads what
/// a block's header says and stops at what it needs, so it accepts images both refuse.
fn check_lookup_tables(file: &File, sb: &backhand::SuperBlock) -> Result<(), String> {
    const ABSENT: u64 = u64::MAX;
    let c = sb.compressor;
    // With xattrs, the id table ends where the xattr metadata starts: the first field of
    // the xattr id table's header that `xattr_table` points at.
    let end = if sb.xattr_table == ABSENT {
        sb.bytes_used
    } else {
        let mut start = [0u8; 8];
        file.read_exact_at(&mut start, sb.xattr_table)
            .map_err(|e| format!("xattr table header: {e}"))?;
        u64::from_le_bytes(start)
    };
    let mut next = check_lookup_table(file, sb.id_table, end, usize::from(sb.id_count), 4, c)
        .map_err(|e| format!("id table: {e}"))?;
    if sb.export_table != ABSENT {
        next = check_lookup_table(file, sb.export_table, next, sb.inode_count as usize, 8, c)
            .map_err(|e| format!("export table: {e}"))?;
    }
    if sb.frag_count != 0 {
        check_lookup_table(file, sb.frag_table, next, sb.frag_count as usize, 16, c)
            .map_err(|e| format!("fragment table: {e}"))?;
    }
    Ok(())
}

/// One lookup table whose index starts at `index` and must end at `end`; returns where its
/// first metadata block starts (the end of the table before it).
pub(crate) fn check_lookup_table(
    file: &File,
    index: u64,
    end: u64,
    entries: usize,
    entry_size: usize,
    c: Compressor,
) -> io::Result<u64> {
    check_lookup_table_ending(file, index, end, index, entries, entry_size, c)
}

/// [`check_lookup_table`] for a table whose metadata blocks end at `blocks_end` rather than
/// right before the index (the xattr id table keeps a 16-byte header between the two). The
/// blocks follow each other with no gap, as every reader that sizes a block by where the
/// next one starts (unsquashfs's xattr reader) expects.
pub(crate) fn check_lookup_table_ending(
    file: &File,
    index: u64,
    end: u64,
    blocks_end: u64,
    entries: usize,
    entry_size: usize,
    c: Compressor,
) -> io::Result<u64> {
    const METADATA: usize = 8192;
    let bytes = entries
        .checked_mul(entry_size)
        .ok_or_else(|| corrupt_io("entry count overflows"))?;
    let blocks = bytes.div_ceil(METADATA);
    if index.checked_add(blocks as u64 * 8) != Some(end) {
        return Err(corrupt_io(&format!(
            "its index of {blocks} block(s) at {index} does not end where the next table starts ({end})"
        )));
    }
    let mut raw_index = vec![0u8; blocks * 8];
    file.read_exact_at(&mut raw_index, index)?;
    let mut first = index;
    let mut expected_at = None;
    for (i, p) in raw_index.chunks_exact(8).enumerate() {
        let at = u64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]);
        if i == 0 {
            first = at;
        }
        if expected_at.is_some_and(|e| e != at) {
            return Err(corrupt_io(&format!(
                "block {i} does not start where block {} ends",
                i - 1
            )));
        }
        let mut h = [0u8; 2];
        file.read_exact_at(&mut h, at)?;
        let word = u16::from_le_bytes(h);
        let len = usize::from(word & 0x7fff);
        if len == 0 || len > METADATA {
            return Err(corrupt_io("bad metadata block header"));
        }
        let mut raw = vec![0u8; len];
        file.read_exact_at(&mut raw, at.saturating_add(2))?;
        let block = if word & 0x8000 != 0 {
            raw
        } else {
            let mut out = Vec::with_capacity(METADATA);
            DefaultCompressor
                .decompress(&raw, &mut out, c)
                .map_err(|e| corrupt_io(&format!("decompressing: {e}")))?;
            out
        };
        let want = (bytes - i * METADATA).min(METADATA);
        if block.len() != want {
            return Err(corrupt_io(&format!(
                "block {i} holds {} bytes where {entries} entries need {want}",
                block.len()
            )));
        }
        expected_at = Some(at.saturating_add(2 + len as u64));
    }
    if expected_at.is_some_and(|e| e != blocks_end) {
        return Err(corrupt_io(&format!(
            "its blocks do not end where they should ({blocks_end})"
        )));
    }
    Ok(first)
}

/// Linux's new_encode_dev layout, which squashfs stores.
fn split_dev(dev: u32) -> (u32, u32) {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (major, minor)
}

fn corrupt_io(msg: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt squashfs: {msg}"),
    )
}

impl Tree for SquashTree {
    fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn open(&self, index: usize) -> io::Result<Box<dyn ReadAt + Send + '_>> {
        let data = self
            .data
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"))?;
        let mut offsets = Vec::with_capacity(data.block_sizes.len());
        let mut pos = data.blocks_start;
        for (size, _) in &data.block_sizes {
            offsets.push(pos);
            // An inode's blocks_start comes from the image: a corrupt one must not overflow.
            pos = pos.saturating_add(u64::from(*size));
        }
        Ok(Box::new(SquashFile {
            tree: self,
            data,
            offsets,
            recent: Mutex::new(Vec::with_capacity(RECENT)),
        }))
    }

    fn unreadable_files(&self) -> Vec<(usize, String)> {
        super::squashfs_verify::unreadable(self)
    }

    fn xattr(&self, index: usize, name: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(xi) = self
            .data
            .get(index)
            .and_then(Option::as_ref)
            .and_then(|d| d.xattr_index)
        else {
            return Ok(None);
        };
        match &self.xattrs {
            Some(t) => t.get(&self.file, self.compressor, xi, name),
            None => Ok(None),
        }
    }
}

struct SquashFile<'a> {
    tree: &'a SquashTree,
    data: &'a FileData,
    offsets: Vec<u64>,
    /// The last blocks decoded, most recent last: header reads come in small pieces, and
    /// an ELF's dynamic section sits blocks away from the strings it points back to.
    recent: Mutex<Vec<Decoded>>,
}

/// How many decoded blocks a file keeps.
const RECENT: usize = 2;

/// The first bytes of one block of a file.
struct Decoded {
    index: usize,
    bytes: Arc<Vec<u8>>,
    /// The bytes are the whole block.
    whole: bool,
}

/// Prefixes are decoded in steps of this much, so a run of small reads decodes once.
const PREFIX_STEP: usize = 16 * 1024;

impl SquashFile<'_> {
    /// Block `i`, at least its first `need` bytes (all of it if it is shorter).
    fn block(&self, i: usize, need: usize) -> io::Result<Arc<Vec<u8>>> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = recent
            .iter()
            .position(|d| d.index == i && (d.whole || d.bytes.len() >= need))
        {
            let d = recent.remove(k);
            let bytes = d.bytes.clone();
            recent.push(d);
            return Ok(bytes);
        }
        let (size, uncompressed) = self.data.block_sizes[i];
        let bs = self.tree.block_size as usize;
        // Past three quarters of a block, decoding it whole (libdeflate) is no slower.
        let want = match need.div_ceil(PREFIX_STEP) * PREFIX_STEP {
            w if w >= bs / 4 * 3 => bs,
            w => w,
        };
        let (bytes, whole) = if size == 0 {
            (vec![0u8; bs], true)
        } else {
            self.tree
                .decompress_prefix(self.offsets[i], size, uncompressed, want)?
        };
        let bytes = Arc::new(bytes);
        recent.retain(|d| d.index != i);
        if recent.len() == RECENT {
            recent.remove(0);
        }
        recent.push(Decoded {
            index: i,
            bytes: bytes.clone(),
            whole,
        });
        Ok(bytes)
    }
}

impl ReadAt for SquashFile<'_> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.data.size;
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let bs = u64::from(self.tree.block_size);
        let block = (offset / bs) as usize;
        let want = buf.len().min((size - offset) as usize);
        let (chunk, start): (Arc<Vec<u8>>, usize) = if block < self.data.block_sizes.len() {
            let start = (offset % bs) as usize;
            (self.block(block, start.saturating_add(want))?, start)
        } else {
            let (frag, frag_offset) = self
                .data
                .fragment
                .ok_or_else(|| corrupt_io("file tail without a fragment"))?;
            let tail_start = self.data.block_sizes.len() as u64 * bs;
            (
                self.tree.fragment(frag)?,
                frag_offset as usize + (offset - tail_start) as usize,
            )
        };
        let avail = chunk
            .len()
            .checked_sub(start)
            .ok_or_else(|| corrupt_io("read past the end of a block"))?;
        let n = want.min(avail);
        if n == 0 {
            return Err(corrupt_io("block shorter than its file claims"));
        }
        buf[..n].copy_from_slice(&chunk[start..start + n]);
        Ok(n)
    }

    fn len(&self) -> u64 {
        self.data.size
    }
}
