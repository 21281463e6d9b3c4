//! The squashfs xattr table, which backhand does not read.
//!
//! We need exactly one kind of xattr from inside images, `user.extension-release.strict` on
//! the release file (rule book B3/B6: a renamed image is valid only if its release file
//! carries it), so this reads entries on demand instead of loading the table.
//!
//! Layout (squashfs-tools xattr.h): an id table header `{u64 kv_start, u32 count, u32 _}`
//! followed by u64 pointers to metadata blocks of 16-byte ids `{u64 ref, u32 count, u32 size}`.
//! `ref` points into the key/value area: `ref >> 16` is a metadata block offset from
//! `kv_start`, `ref & 0xffff` the offset inside it. Each pair is `{u16 type, u16 name_size,
//! name}` then `{u32 size, value}`; type bit 0x100 means the value is a u64 ref elsewhere.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};

const METADATA_SIZE: usize = 8192;
/// More pairs than any inode plausibly has; a larger count is corruption, not a file.
const MAX_PAIRS: u32 = 4096;
const PREFIXES: [&str; 3] = ["user.", "trusted.", "security."];

pub(crate) struct XattrTable {
    kv_start: u64,
    count: u32,
    id_blocks: Vec<u64>,
}

/// The metadata block a key/value reference points into, as Linux and unsquashfs read it
/// (`SQUASHFS_XATTR_BLK`: 32 bits, the reference's top 16 ignored). Found by the fuzzer: a
/// flipped top bit made lint miss an xattr the kernel reads fine.
fn block_of(reference: u64) -> u64 {
    (reference >> 16) & 0xffff_ffff
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl XattrTable {
    /// Reads the id table's header and index, with the checks Linux makes before it mounts
    /// (fs/squashfs/xattr_id.c): at least one id, an index that ends exactly at
    /// `bytes_used` (the table is the image's last), index blocks in order and each at
    /// most one metadata block long, the key/value area before them. An image that fails
    /// one is refused by the kernel, so lint must not read past it.
    pub fn load(file: &File, start: u64, bytes_used: u64, c: Compressor) -> io::Result<XattrTable> {
        let mut hdr = [0u8; 16];
        file.read_exact_at(&mut hdr, start)?;
        let kv_start = u64::from_le_bytes(hdr[0..8].try_into().map_err(|_| bad("header"))?);
        let count = u32::from_le_bytes(hdr[8..12].try_into().map_err(|_| bad("header"))?);
        if count == 0 {
            return Err(bad("the xattr id table holds no ids"));
        }
        let blocks = (count as usize * 16).div_ceil(METADATA_SIZE);
        let after = start
            .checked_add(16)
            .ok_or_else(|| bad("xattr table offset"))?;
        if bytes_used.checked_sub(after) != Some(blocks as u64 * 8) {
            return Err(bad(&format!(
                "{count} xattr ids need a {}-byte index, which does not end where the image does",
                blocks * 8
            )));
        }
        let mut ptrs = vec![0u8; blocks * 8];
        file.read_exact_at(&mut ptrs, after)?;
        let id_blocks: Vec<u64> = ptrs
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let longest = (METADATA_SIZE + 2) as u64;
        let ends = id_blocks.iter().skip(1).copied().chain([start]);
        for (&block, end) in id_blocks.iter().zip(ends) {
            if block >= end || end - block > longest {
                return Err(bad("xattr id index out of order"));
            }
        }
        let Some(&first_id_block) = id_blocks.first() else {
            return Err(bad("xattr id index is empty"));
        };
        if kv_start >= first_id_block {
            return Err(bad("xattr key/value area does not precede its ids"));
        }
        check_kv_blocks(file, c, kv_start, first_id_block)?;
        // The id blocks themselves: whole, holding exactly `count` ids, ending at the header.
        super::squashfs::check_lookup_table_ending(
            file,
            after,
            bytes_used,
            start,
            count as usize,
            16,
            c,
        )?;
        Ok(XattrTable {
            kv_start,
            count,
            id_blocks,
        })
    }

    /// The value of xattr `name` for xattr id `index`, if the inode has it.
    ///
    /// Reads all of the inode's pairs even after a match: an id whose count overruns its
    /// pairs is corrupt (unsquashfs crashes on it, `listxattr` fails), though the first
    /// pair alone would read fine.
    pub fn get(
        &self,
        file: &File,
        c: Compressor,
        index: u32,
        name: &str,
    ) -> io::Result<Option<Vec<u8>>> {
        if index >= self.count {
            return Err(bad("xattr index out of range"));
        }
        let byte = index as usize * 16;
        let block = *self
            .id_blocks
            .get(byte / METADATA_SIZE)
            .ok_or_else(|| bad("xattr id block missing"))?;
        let mut ids = Meta::new(file, c, block, byte % METADATA_SIZE)?;
        let id = ids.take(16)?;
        let xref = u64::from_le_bytes(id[0..8].try_into().map_err(|_| bad("id"))?);
        let n = u32::from_le_bytes(id[8..12].try_into().map_err(|_| bad("id"))?);
        if n > MAX_PAIRS {
            return Err(bad("implausible xattr count"));
        }
        let kv_at = self
            .kv_start
            .checked_add(block_of(xref))
            .ok_or_else(|| bad("xattr reference past the end"))?;
        let mut kv = Meta::new(file, c, kv_at, (xref & 0xffff) as usize)?;
        let mut found = None;
        for _ in 0..n {
            let h = kv.take(4)?;
            let typ = u16::from_le_bytes([h[0], h[1]]);
            let name_len = u16::from_le_bytes([h[2], h[3]]) as usize;
            let key = kv.take(name_len)?;
            let prefix = PREFIXES
                .get((typ & 0xff) as usize)
                .copied()
                .unwrap_or("unknown.");
            let full = format!("{prefix}{}", String::from_utf8_lossy(&key));
            let vs = kv.take(4)?;
            let vlen = u32::from_le_bytes([vs[0], vs[1], vs[2], vs[3]]) as usize;
            if vlen > 1 << 16 {
                return Err(bad("xattr value too large"));
            }
            let value = kv.take(vlen)?;
            if full != name || found.is_some() {
                continue;
            }
            if typ & 0x100 == 0 {
                found = Some(value);
                continue;
            }
            // Out-of-line value: a reference to a {u32 size, bytes} record.
            let r = u64::from_le_bytes(
                value
                    .get(0..8)
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| bad("ool ref"))?,
            );
            let ool_at = self
                .kv_start
                .checked_add(block_of(r))
                .ok_or_else(|| bad("xattr reference past the end"))?;
            let mut ool = Meta::new(file, c, ool_at, (r & 0xffff) as usize)?;
            let s = ool.take(4)?;
            let len = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
            if len > 1 << 16 {
                return Err(bad("xattr value too large"));
            }
            found = Some(ool.take(len)?);
        }
        Ok(found)
    }
}

/// Reads consecutive metadata blocks as one byte stream.
/// The key/value area as unsquashfs reads it: whole metadata blocks from `start` that end
/// exactly at `end` (where the xattr ids begin), each but the last holding 8 KiB. A block
/// header that claims the wrong length makes unsquashfs give up on every xattr ("Xattr
/// block N should be 8192 bytes"), though the first pairs may still read.
fn check_kv_blocks(file: &File, c: Compressor, start: u64, end: u64) -> io::Result<()> {
    let mut m = Meta {
        file,
        c,
        next: start,
        buf: Vec::new(),
        pos: 0,
    };
    let mut block = 0;
    while m.next < end {
        // Everything read so far is consumed, so `fill` leaves only the new block.
        m.pos = m.buf.len();
        m.fill()?;
        let len = m.buf.len();
        if m.next < end && len != METADATA_SIZE {
            return Err(bad(&format!(
                "xattr block {block} holds {len} bytes where a block before the last holds {METADATA_SIZE}"
            )));
        }
        block += 1;
    }
    if m.next != end {
        return Err(bad("the xattr key/value blocks overrun the xattr ids"));
    }
    Ok(())
}

struct Meta<'a> {
    file: &'a File,
    c: Compressor,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> Meta<'a> {
    fn new(file: &'a File, c: Compressor, start: u64, skip: usize) -> io::Result<Meta<'a>> {
        let mut m = Meta {
            file,
            c,
            next: start,
            buf: Vec::new(),
            pos: 0,
        };
        m.fill()?;
        if skip > m.buf.len() {
            return Err(bad("offset past the end of a metadata block"));
        }
        m.pos = skip;
        Ok(m)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut h = [0u8; 2];
        self.file.read_exact_at(&mut h, self.next)?;
        let word = u16::from_le_bytes(h);
        let len = (word & 0x7fff) as usize;
        if len == 0 || len > METADATA_SIZE {
            return Err(bad("bad metadata block header"));
        }
        let mut raw = vec![0u8; len];
        self.file
            .read_exact_at(&mut raw, self.next.saturating_add(2))?;
        self.next = self
            .next
            .checked_add(2 + len as u64)
            .ok_or_else(|| bad("metadata block past the end"))?;
        let block = if word & 0x8000 != 0 {
            raw
        } else {
            let mut out = Vec::with_capacity(METADATA_SIZE);
            DefaultCompressor
                .decompress(&raw, &mut out, self.c)
                .map_err(|e| bad(&e.to_string()))?;
            out
        };
        self.buf.drain(..self.pos.min(self.buf.len()));
        self.pos = 0;
        self.buf.extend_from_slice(&block);
        Ok(())
    }

    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            self.fill()?;
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }
}
