//! Inode references followed the way Linux and unsquashfs follow them.
//!
//! A directory entry names its inode twice: by position (the inode table's metadata block,
//! from the directory header, and an offset into that block's uncompressed bytes, from the
//! entry) and by number (the header's base number plus the entry's delta). Linux and
//! unsquashfs read the inode at the position and never look at the number; backhand looks
//! the inode up by number and never looks at the position. An entry whose position does
//! not land on the start of a whole inode makes unsquashfs fail ("read_inode: failed to read
//! inode") and Linux return EIO, while backhand, and so lint, saw a healthy tree; one whose
//! position and number name different inodes gives the kernel another tree than lint
//! checked. Both are corruption, as is a directory listing Linux cannot walk (more than 256
//! entries under one header, a name over 256 bytes, a listing that ends inside an entry, a
//! listing that starts past the end of its metadata block).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use backhand::Squashfs;
use backhand::v4::inode::{Inode, InodeId, InodeInner};
use deku::DekuReader;

use super::squashfs_codec::Decoder;

/// Bytes in a full metadata block.
const METADATA: usize = 8192;
/// Linux's SQUASHFS_DIR_COUNT and SQUASHFS_NAME_LEN.
const DIR_COUNT: u32 = 256;
const NAME_LEN: usize = 256;

/// One metadata table, uncompressed, addressed like the references into it: by the block's
/// start relative to the table, then an offset into the block.
struct Table<'a> {
    /// Block start (relative to the table) -> (its offset in `bytes`, its length).
    blocks: HashMap<u64, (usize, usize)>,
    bytes: Cow<'a, [u8]>,
}

impl Table<'_> {
    /// The offset in `bytes` that `(block, offset)` names, if that block exists and the
    /// offset is inside it (both readers check `offset < length` before reading).
    fn position(&self, block: u64, offset: usize) -> Option<usize> {
        let &(at, len) = self.blocks.get(&block)?;
        (offset < len).then_some(at + offset)
    }
}

/// Checks that the root inode and every directory entry point at the start of a whole inode,
/// the one backhand resolved, and that every listing reads as Linux reads it.
pub(super) fn check(file: &File, sq: &Squashfs) -> Result<(), String> {
    let sb = &sq.superblock;
    let inodes = read_table(file, sb.inode_table, sb.dir_table, sb.compressor)
        .map_err(|e| format!("inode table: {e}"))?;
    let at = inode_starts(&inodes.bytes, sb)?;
    let root = (sb.root_inode >> 16, (sb.root_inode & 0xffff) as usize);
    if inodes
        .position(root.0, root.1)
        .and_then(|p| at.get(&p))
        .is_none()
    {
        return Err(format!(
            "the root inode reference points at offset {} of inode table block {}, where no inode starts",
            root.1, root.0
        ));
    }
    let dirs = dir_table(sq);
    // The root is in the table too, so this is every directory.
    for inode in sq.inodes.values() {
        let (block, offset, size) = match &inode.inner {
            InodeInner::BasicDirectory(d) => (
                u64::from(d.block_index),
                usize::from(d.block_offset),
                u32::from(d.file_size),
            ),
            InodeInner::ExtendedDirectory(d) => (
                u64::from(d.block_index),
                usize::from(d.block_offset),
                d.file_size,
            ),
            _ => continue,
        };
        let n = inode.header.inode_number;
        // Sizes under 4 are an empty directory: no listing is read.
        if size < 4 {
            continue;
        }
        let listing = dirs
            .position(block, offset)
            .and_then(|p| dirs.bytes.get(p..p.checked_add(size as usize - 3)?))
            .ok_or_else(|| {
                format!("directory inode {n}: its listing is not inside the directory table")
            })?;
        check_listing(listing, &inodes, &at).map_err(|e| format!("directory inode {n}: {e}"))?;
    }
    Ok(())
}

/// The metadata blocks from `start` to `end` as Linux reads them: a 2-byte header (length,
/// and bit 15 for "stored uncompressed"), then at most 8 KiB of data.
fn read_table(
    file: &File,
    start: u64,
    end: u64,
    compressor: backhand::compression::Compressor,
) -> Result<Table<'static>, String> {
    let mut decoder = Decoder::new(compressor).map_err(|e| e.to_string())?;
    let mut blocks = HashMap::new();
    let mut bytes = Vec::new();
    let mut out = vec![0u8; METADATA];
    let mut pos = start;
    while pos < end {
        let mut h = [0u8; 2];
        file.read_exact_at(&mut h, pos)
            .map_err(|e| format!("block at {pos}: {e}"))?;
        let word = u16::from_le_bytes(h);
        let len = usize::from(word & 0x7fff);
        if len == 0 || len > METADATA {
            return Err(format!("block at {pos}: a header of {len} bytes"));
        }
        let mut raw = vec![0u8; len];
        file.read_exact_at(&mut raw, pos + 2)
            .map_err(|e| format!("block at {pos}: {e}"))?;
        let data = if word & 0x8000 != 0 {
            &raw[..]
        } else {
            let n = decoder
                .decompress(&raw, &mut out)
                .map_err(|e| format!("block at {pos}: {e}"))?;
            &out[..n]
        };
        blocks.insert(pos - start, (bytes.len(), data.len()));
        bytes.extend_from_slice(data);
        pos += 2 + len as u64;
    }
    if pos != end {
        return Err("its last block runs into the next table".into());
    }
    Ok(Table {
        blocks,
        bytes: Cow::Owned(bytes),
    })
}

/// Where each inode starts in the uncompressed table, with its number and type, parsed one
/// after the other by backhand's own inode parser (as backhand read them).
fn inode_starts(
    bytes: &[u8],
    sb: &backhand::SuperBlock,
) -> Result<HashMap<usize, (u32, InodeId)>, String> {
    let mut at = HashMap::new();
    let mut cursor = std::io::Cursor::new(bytes);
    let mut reader = deku::reader::Reader::new(&mut cursor);
    let ctx = (
        sb.bytes_used,
        sb.block_size,
        sb.block_log,
        deku::ctx::Endian::Little,
    );
    while reader.bits_read / 8 < bytes.len() {
        let start = reader.bits_read / 8;
        let inode = Inode::from_reader_with_ctx(&mut reader, ctx)
            .map_err(|e| format!("inode table: the inode at {start} does not parse: {e}"))?;
        at.insert(start, (inode.header.inode_number, inode.id));
    }
    Ok(at)
}

/// backhand's directory table (it keeps the uncompressed bytes and where each block starts
/// in them), with each block's length worked out from where the next one starts.
fn dir_table<'a>(sq: &'a Squashfs) -> Table<'a> {
    let (starts, bytes) = &sq.dir_blocks;
    let mut order: Vec<(u64, usize)> = starts.iter().map(|(&b, &o)| (b, o as usize)).collect();
    order.sort_by_key(|&(_, o)| o);
    let ends = order.iter().skip(1).map(|&(_, o)| o).chain([bytes.len()]);
    let blocks = order
        .iter()
        .zip(ends)
        .map(|(&(block, at), end)| (block, (at, end.saturating_sub(at))))
        .collect();
    Table {
        blocks,
        bytes: Cow::Borrowed(bytes),
    }
}

/// One directory's listing: headers `{u32 count - 1, u32 inode block, u32 base number}`,
/// each followed by its entries `{u16 offset, i16 number delta, u16 type, u16 name size - 1,
/// name}`, read to the exact end as Linux's `squashfs_readdir` does.
fn check_listing(
    listing: &[u8],
    inodes: &Table,
    at: &HashMap<usize, (u32, InodeId)>,
) -> Result<(), String> {
    let mut p = 0;
    let take = |p: &mut usize, n: usize| -> Result<&[u8], String> {
        let s = listing
            .get(*p..*p + n)
            .ok_or("its listing ends inside an entry")?;
        *p += n;
        Ok(s)
    };
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    while p < listing.len() {
        let h = take(&mut p, 12)?;
        let count = u32_at(h, 0).saturating_add(1);
        let (block, base) = (u64::from(u32_at(h, 4)), u32_at(h, 8));
        if count > DIR_COUNT {
            return Err(format!(
                "a listing header counts {count} entries, over {DIR_COUNT}"
            ));
        }
        for _ in 0..count {
            let e = take(&mut p, 8)?;
            let (offset, delta, kind) = (u16_at(e, 0), u16_at(e, 2) as i16, u16_at(e, 4));
            let len = usize::from(u16_at(e, 6)) + 1;
            if len > NAME_LEN {
                return Err(format!("an entry's name is {len} bytes, over {NAME_LEN}"));
            }
            let name = String::from_utf8_lossy(take(&mut p, len)?).into_owned();
            let Some(&(number, id)) = inodes
                .position(block, usize::from(offset))
                .and_then(|pos| at.get(&pos))
            else {
                return Err(format!(
                    "the entry {name:?} points at offset {offset} of inode table block {block}, where no inode starts"
                ));
            };
            let expected = base.checked_add_signed(i32::from(delta));
            if expected != Some(number) {
                return Err(format!(
                    "the entry {name:?} points at inode {number} but is numbered {}",
                    i64::from(base) + i64::from(delta)
                ));
            }
            if basic_type(id) != kind {
                return Err(format!(
                    "the entry {name:?} says type {kind}, its inode is type {}",
                    basic_type(id)
                ));
            }
        }
    }
    Ok(())
}

/// The type number a directory entry stores for an inode: extended types as their basic one.
fn basic_type(id: InodeId) -> u16 {
    let t = id as u16;
    if t > 7 { t - 7 } else { t }
}
