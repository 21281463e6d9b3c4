//! Writes a [`Layout`] as a squashfs image with backhand.
//!
//! Every inode is owned by root and stamped with the spec's epoch, which is what makes two
//! builds of one spec byte-identical and what `mksquashfs -all-root` gives the bakery.
//!
//! backhand lays out the image (superblock, data, fragments, inode and directory tables) but
//! compresses one block at a time on the calling thread, and its gzip is zlib-rs at level 9:
//! that was nearly all of a build's time. Two things change that without touching the layout:
//!
//! - gzip blocks are compressed by libdeflate at level [`GZIP_LEVEL`]. On the blocks of
//!   /usr/lib/x86_64-linux-gnu it makes smaller blocks than zlib's level 9 (what mksquashfs
//!   and backhand use) in about a third of the time; xz and zstd keep backhand's settings.
//! - [`Lookahead`]: a reader thread walks the files in the order backhand will write them,
//!   cuts them into the blocks backhand will ask for (whole blocks, tails, packed fragment
//!   blocks, no holes) and has them compressed on every core, a bounded window ahead.
//!   backhand's compress call takes a prepared block only when its bytes are exactly the
//!   ones asked for, and compresses anything else itself, so the image is the same bytes
//!   either way; a wrong guess costs time, never correctness.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufWriter, Cursor, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use backhand::compression::{CompressionAction, Compressor, DefaultCompressor};
use backhand::kind::Kind;
use backhand::{BackhandError, FilesystemCompressor, FilesystemWriter, NodeHeader, SuperBlock};

use crate::errors::BuildError;
use crate::layout::{Content, Layout, Node};
use crate::spec::Compression;

/// libdeflate's level for gzip blocks: measured on 101 MB of shared libraries, level 6 gave
/// 37.85 MB in 1.5 s where zlib-rs level 9 gave 37.95 MB in 4.2 s (level 9 of libdeflate:
/// 37.67 MB in 3.0 s).
const GZIP_LEVEL: i32 = 6;

/// backhand's block size, which the reader thread must cut files into.
const BLOCK_SIZE: usize = backhand::DEFAULT_BLOCK_SIZE as usize;

pub fn write(
    layout: &Layout,
    compression: Compression,
    epoch: u32,
    dest: &Path,
) -> Result<(), BuildError> {
    write_image(layout, compression, epoch, dest, true).map(|_| ())
}

/// How many blocks the lookahead cut, and how many of them backhand took from it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Served {
    cut: u64,
    taken: u64,
}

/// [`write`], with or without blocks compressed ahead.
fn write_image(
    layout: &Layout,
    compression: Compression,
    epoch: u32,
    dest: &Path,
    ahead: bool,
) -> Result<Served, BuildError> {
    let mut fs = FilesystemWriter::default();
    fs.set_kind(Kind::new_v4(&FAST));
    fs.set_block_size(BLOCK_SIZE as u32);
    fs.set_time(epoch);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    let id = match compression {
        Compression::Gzip => Compressor::Gzip,
        Compression::Xz => Compressor::Xz,
        Compression::Zstd => Compressor::Zstd,
    };
    let fc = FilesystemCompressor::new(id, None)?;
    fs.set_compressor(fc);
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
    let gzip = compression == Compression::Gzip;
    let mut served = Served::default();
    crate::atomic::write_with(dest, |file| {
        let write = || {
            fs.write(BufWriter::with_capacity(1 << 20, file))
                .map(|_| ())
                .map_err(std::io::Error::other)
        };
        if ahead {
            served = with_lookahead(layout, fc, gzip, write)?;
        } else {
            WRITING.with(|w| *w.borrow_mut() = Some((gzip, None)));
            let result = write();
            WRITING.with(|w| *w.borrow_mut() = None);
            result?;
        }
        Ok(())
    })
    .map_err(|e| BuildError::io(dest, e))?;
    Ok(served)
}

// ------------------------------------------------------------------ the compressor

/// The compressor backhand calls for every block of data and metadata.
struct Fast;
static FAST: Fast = Fast;

thread_local! {
    /// The write running on this thread: whether its blocks are gzip with backhand's default
    /// options (the only ones [`write`] sets), and its lookahead if it has one.
    static WRITING: RefCell<Option<(bool, Option<Arc<Lookahead>>)>> = const { RefCell::new(None) };
}

impl CompressionAction for Fast {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = FilesystemCompressor;
    type SuperBlock = SuperBlock;

    fn decompress(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        compressor: Compressor,
    ) -> Result<(), BackhandError> {
        DefaultCompressor.decompress(bytes, out, compressor)
    }

    fn compress(
        &self,
        bytes: &[u8],
        fc: FilesystemCompressor,
        block_size: u32,
    ) -> Result<Vec<u8>, BackhandError> {
        let (gzip, ready) = WRITING.with(|w| match &*w.borrow() {
            Some((gzip, ahead)) => (*gzip, ahead.as_ref().and_then(|l| l.take(bytes))),
            None => (false, None),
        });
        match ready {
            Some(done) => done,
            None => Codec::new(fc, block_size, gzip).compress(bytes),
        }
    }

    fn compression_options(
        &self,
        superblock: &mut SuperBlock,
        kind: &Kind,
        fc: FilesystemCompressor,
    ) -> Result<Option<Vec<u8>>, BackhandError> {
        DefaultCompressor.compression_options(superblock, kind, fc)
    }
}

/// One thread's compressor: libdeflate for gzip with backhand's default options, backhand
/// for the rest.
struct Codec {
    fc: FilesystemCompressor,
    block_size: u32,
    gzip: Option<libdeflater::Compressor>,
}

impl Codec {
    fn new(fc: FilesystemCompressor, block_size: u32, gzip: bool) -> Codec {
        let gzip = gzip.then(|| {
            libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(GZIP_LEVEL).unwrap_or_default(),
            )
        });
        Codec {
            fc,
            block_size,
            gzip,
        }
    }

    fn compress(&mut self, bytes: &[u8]) -> Result<Vec<u8>, BackhandError> {
        let Some(c) = &mut self.gzip else {
            return DefaultCompressor.compress(bytes, self.fc, self.block_size);
        };
        let mut out = vec![0u8; c.zlib_compress_bound(bytes.len())];
        let n = c
            .zlib_compress(bytes, &mut out)
            .map_err(|e| BackhandError::CompressionInit(format!("libdeflate: {e}")))?;
        out.truncate(n);
        Ok(out)
    }
}

// ------------------------------------------------------------------ the lookahead

/// A block to compress: its place in the order backhand asks for blocks, and its bytes.
type Job = (u64, Arc<[u8]>);
/// A block's bytes and what compressing them gave.
type Compressed = (Arc<[u8]>, Result<Vec<u8>, BackhandError>);

/// Blocks prepared ahead of backhand, in the order it will ask for them.
struct Lookahead {
    state: Mutex<State>,
    changed: Condvar,
    /// How many blocks may be read or compressed ahead of backhand.
    window: u64,
}

#[derive(Default)]
struct State {
    /// Sequence number of the block backhand is expected to ask for next.
    next: u64,
    /// Blocks handed to the compressing threads so far.
    issued: u64,
    /// The reader has cut every file (or stopped on an error backhand will meet too).
    finished: bool,
    cancelled: bool,
    done: HashMap<u64, Compressed>,
    /// Blocks served from the window, and compressed on backhand's thread instead.
    hits: u64,
}

impl Lookahead {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// The compressed form of `bytes` if it is the block expected next; `None` when backhand
    /// asks for something else (a metadata block, or a wrong guess).
    fn take(&self, bytes: &[u8]) -> Option<Result<Vec<u8>, BackhandError>> {
        let mut s = self.lock();
        loop {
            let next = s.next;
            if let Some((input, _)) = s.done.get(&next) {
                if **input != *bytes {
                    return None;
                }
                let (_, out) = s.done.remove(&next)?;
                s.next += 1;
                s.hits += 1;
                self.changed.notify_all();
                return Some(out);
            }
            if s.cancelled || (s.finished && s.issued <= next) {
                return None;
            }
            s = self.wait(s);
        }
    }

    /// Waits until the window has room for one more block; false once cancelled.
    fn reserve(&self) -> Option<u64> {
        let mut s = self.lock();
        while !s.cancelled && s.issued >= s.next + self.window {
            s = self.wait(s);
        }
        if s.cancelled {
            return None;
        }
        s.issued += 1;
        Some(s.issued - 1)
    }

    fn finish(&self, cancel: bool) {
        let mut s = self.lock();
        s.finished = true;
        s.cancelled |= cancel;
        self.changed.notify_all();
    }

    fn deliver(&self, seq: u64, input: Arc<[u8]>, out: Result<Vec<u8>, BackhandError>) {
        let mut s = self.lock();
        s.done.insert(seq, (input, out));
        self.changed.notify_all();
    }
}

/// Runs `write` (backhand's write) with blocks compressed ahead of it on every core.
fn with_lookahead(
    layout: &Layout,
    fc: FilesystemCompressor,
    gzip: bool,
    write: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<Served> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let la = Arc::new(Lookahead {
        state: Mutex::default(),
        changed: Condvar::new(),
        window: 4 * threads as u64,
    });
    let (jobs, queue) = sync_channel::<Job>(2 * threads);
    let queue = Mutex::new(queue);
    std::thread::scope(|s| {
        let cut = Arc::clone(&la);
        s.spawn(move || {
            let ok = cut_blocks(layout, &cut, &jobs);
            drop(jobs);
            cut.finish(!ok);
        });
        for _ in 0..threads {
            let (la, queue) = (&la, &queue);
            let codec = Codec::new(fc, BLOCK_SIZE as u32, gzip);
            s.spawn(move || compress_jobs(la, queue, codec));
        }
        WRITING.with(|w| *w.borrow_mut() = Some((gzip, Some(Arc::clone(&la)))));
        let result = write();
        WRITING.with(|w| *w.borrow_mut() = None);
        la.finish(true);
        result?;
        let s = la.lock();
        Ok(Served {
            cut: s.issued,
            taken: s.hits,
        })
    })
}

fn compress_jobs(la: &Lookahead, queue: &Mutex<Receiver<Job>>, mut codec: Codec) {
    loop {
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((seq, input)) = job else { return };
        // Once backhand is done, keep taking jobs without doing them: the reader may be
        // waiting for room in the queue, and it stops only when it gets some.
        if la.lock().cancelled {
            continue;
        }
        let out = codec.compress(&input);
        la.deliver(seq, input, out);
    }
}

/// Cuts the layout's files into the blocks backhand's data writer will compress, in its
/// order: files sorted as paths (backhand keeps its nodes so), each file under a block
/// packed into the current fragment block (which is compressed when the next file no longer
/// fits, and once more at the end, empty or not), each larger file as whole blocks and a
/// short last one, all-zero blocks skipped (backhand stores them as holes). Returns false
/// if it stopped early (a file it cannot read, which backhand will report, or cancelled).
fn cut_blocks(layout: &Layout, la: &Lookahead, jobs: &SyncSender<Job>) -> bool {
    let mut files: Vec<(&Path, &Content)> = layout
        .nodes
        .iter()
        .filter_map(|(path, node)| match node {
            Node::File { content, .. } => Some((Path::new(path.as_str()), content)),
            _ => None,
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let send = |block: &[u8]| -> bool {
        match la.reserve() {
            Some(seq) => jobs.send((seq, Arc::from(block))).is_ok(),
            None => false,
        }
    };
    let mut fragment: Vec<u8> = Vec::with_capacity(BLOCK_SIZE);
    let mut chunk = vec![0u8; BLOCK_SIZE];
    for (_, content) in files {
        let mut reader: Box<dyn Read> = match content {
            Content::Inline(bytes) => Box::new(bytes.as_slice()),
            Content::Host(path) => match std::fs::File::open(path) {
                Ok(f) => Box::new(f),
                Err(_) => return false,
            },
        };
        let Ok(n) = fill(&mut reader, &mut chunk) else {
            return false;
        };
        if n == 0 {
            continue;
        }
        if n < BLOCK_SIZE {
            if fragment.len() + n > BLOCK_SIZE {
                if !send(&fragment) {
                    return false;
                }
                fragment.clear();
            }
            fragment.extend_from_slice(&chunk[..n]);
            continue;
        }
        let mut n = n;
        while n > 0 {
            let block = &chunk[..n];
            if block.iter().any(|b| *b != 0) && !send(block) {
                return false;
            }
            n = match fill(&mut reader, &mut chunk) {
                Ok(n) => n,
                Err(_) => return false,
            };
        }
    }
    send(&fragment)
}

/// Reads until `buf` is full or the reader ends, as backhand reads a block.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout whose blocks exercise every case of backhand's data writer: small files
    /// packed into fragments until one no longer fits, a file of exactly one block, a
    /// multi-block file with a short tail, one with a block of zeros (a hole), an empty
    /// file, and two paths that sort one way as strings and the other as paths.
    fn layout() -> Layout {
        let mut l = Layout::default();
        let noise = |n: usize, seed: u32| -> Vec<u8> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
                .collect()
        };
        let mut holey = noise(3 * BLOCK_SIZE, 3);
        holey[BLOCK_SIZE..2 * BLOCK_SIZE].fill(0);
        let mut files = vec![
            ("usr/lib/one-block".to_string(), noise(BLOCK_SIZE, 1)),
            ("usr/lib/tail".into(), noise(3 * BLOCK_SIZE + 777, 2)),
            ("usr/lib/holey".into(), holey),
            ("usr/lib/empty".into(), Vec::new()),
            ("usr/a-b".into(), noise(200_000, 4)),
            ("usr/a/b".into(), noise(200_000, 5)),
        ];
        for i in 0..40u32 {
            files.push((
                format!("usr/share/small/{i}"),
                noise(5_000 + i as usize * 97, i),
            ));
        }
        for (path, bytes) in files {
            let node = Node::File {
                content: Content::Inline(bytes),
                mode: 0o644,
            };
            l.insert(&path, node).expect("insert");
        }
        l
    }

    #[test]
    fn backhand_takes_every_block_cut_ahead_and_the_image_is_the_same_bytes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let l = layout();
        for compression in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let ahead = tmp.path().join("ahead.raw");
            let inline = tmp.path().join("inline.raw");
            let served = write_image(&l, compression, 0, &ahead, true).expect("write");
            write_image(&l, compression, 0, &inline, false).expect("write");
            assert!(served.cut > 10, "{compression:?}: {served:?}");
            assert_eq!(
                served.taken, served.cut,
                "{compression:?}: a block was guessed wrong"
            );
            assert!(
                std::fs::read(&ahead).expect("read") == std::fs::read(&inline).expect("read"),
                "{compression:?}: blocks compressed ahead changed the image"
            );
        }
    }

    #[test]
    fn a_write_that_stops_early_stops_the_lookahead_too() {
        // Far more blocks than the window holds, and nobody takes any: the reader and the
        // compressing threads must notice and end, not wait for room forever.
        let fc = FilesystemCompressor::new(Compressor::Gzip, None).expect("compressor");
        let stopped = with_lookahead(&layout(), fc, true, || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            Err(std::io::Error::other("backhand gave up"))
        });
        assert_eq!(
            stopped.map_err(|e| e.to_string()).err().as_deref(),
            Some("backhand gave up")
        );
    }
}
