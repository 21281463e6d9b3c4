//! Every data block and fragment block of a squashfs image decompressed once, as the kernel
//! reads them, to find the files whose data does not read back.
//!
//! A corrupt block is otherwise found only when the file is used: the image merges, then a
//! read fails with EIO. This is the one pass of lint that touches all of an image's data, so
//! it is built for speed: blocks are checked in place (nothing is written anywhere), on every
//! core, each unique extent once (mksquashfs stores a duplicate file's blocks once and points
//! every copy at them), with one decoder and buffers for one run of blocks per thread, so memory
//! stays the same whatever the image's size.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::squashfs::{FileData, SquashTree};
use super::squashfs_codec::Decoder;

/// Blocks per unit of work: enough to keep the scheduling cost out of sight, few enough that
/// one large file spreads over every core.
const CHUNK: usize = 16;

/// A run of blocks of one extent, or one fragment block.
#[derive(Clone, Copy)]
enum Task {
    Blocks {
        extent: usize,
        first: usize,
        count: usize,
        /// Image offset of block `first`.
        offset: u64,
    },
    Fragment {
        index: u32,
    },
}

/// What makes two files share their blocks: where the blocks start, the file's size and
/// the blocks' sizes.
type ExtentKey<'a> = (u64, u64, &'a [(u32, bool)]);

/// The files (by entry index) whose data does not read back whole, with the reason.
pub(super) fn unreadable(tree: &SquashTree) -> Vec<(usize, String)> {
    let bs = u64::from(tree.block_size);
    let mut bad: HashMap<usize, String> = HashMap::new();
    // Files sharing one extent (duplicates) are checked once.
    let mut extent_of: HashMap<ExtentKey, usize> = HashMap::new();
    let mut extents: Vec<(&FileData, Vec<usize>)> = Vec::new();
    // (fragment index, file, offset in the fragment, tail length)
    let mut tails: Vec<(u32, usize, u64, u64)> = Vec::new();
    for (i, fd) in tree.data.iter().enumerate() {
        let Some(fd) = fd else { continue };
        let covered = fd.block_sizes.len() as u64 * bs;
        match fd.fragment {
            Some((index, offset)) => {
                let tail = fd.size.saturating_sub(covered);
                if tail >= bs {
                    bad.insert(i, format!("its {tail}-byte tail is longer than a block"));
                    continue;
                }
                if tail > 0 {
                    tails.push((index, i, u64::from(offset), tail));
                }
            }
            None if fd.size > covered => {
                bad.insert(
                    i,
                    format!(
                        "the data ends after {covered} of the {} bytes its inode records",
                        fd.size
                    ),
                );
                continue;
            }
            None => {}
        }
        if fd.block_sizes.is_empty() {
            continue;
        }
        let key = (fd.blocks_start, fd.size, fd.block_sizes.as_slice());
        let e = *extent_of.entry(key).or_insert_with(|| {
            extents.push((fd, Vec::new()));
            extents.len() - 1
        });
        extents[e].1.push(i);
    }

    let mut tasks = Vec::new();
    for (e, (fd, _)) in extents.iter().enumerate() {
        let mut offset = fd.blocks_start;
        for (c, chunk) in fd.block_sizes.chunks(CHUNK).enumerate() {
            tasks.push(Task::Blocks {
                extent: e,
                first: c * CHUNK,
                count: chunk.len(),
                offset,
            });
            offset = chunk
                .iter()
                .fold(offset, |o, (size, _)| o.saturating_add(u64::from(*size)));
        }
    }
    let mut fragments: Vec<u32> = tails.iter().map(|t| t.0).collect();
    fragments.sort_unstable();
    fragments.dedup();
    tasks.extend(fragments.iter().map(|&index| Task::Fragment { index }));
    // In image order, so the reads run through the file front to back.
    tasks.sort_by_key(|t| match *t {
        Task::Blocks { offset, .. } => offset,
        Task::Fragment { index } => tree.fragments.get(index as usize).map_or(u64::MAX, |f| f.0),
    });

    let fragment_len = run(tree, &extents, &tasks, &mut bad);
    for (index, file, offset, tail) in tails {
        if bad.contains_key(&file) {
            continue;
        }
        match fragment_len.get(&index) {
            Some(Err(why)) => {
                bad.insert(file, format!("its last {tail} bytes: {why}"));
            }
            Some(Ok(len)) if offset + tail > *len => {
                bad.insert(
                    file,
                    format!(
                        "its last {tail} bytes lie past the end of fragment block {index} ({len} bytes)"
                    ),
                );
            }
            _ => {}
        }
    }
    bad.into_iter().collect()
}

/// Runs `tasks` on every core; extent problems go straight into `bad` (the first bad block
/// of each extent, for every file that shares it), and fragment blocks come back with their
/// decompressed length or why they have none.
fn run(
    tree: &SquashTree,
    extents: &[(&FileData, Vec<usize>)],
    tasks: &[Task],
    bad: &mut HashMap<usize, String>,
) -> HashMap<u32, Result<u64, String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(tasks.len())
        .max(1);
    let workers: Result<Vec<Worker>, String> = (0..threads).map(|_| Worker::new(tree)).collect();
    let workers = match workers {
        Ok(w) => w,
        // No decoder, nothing checked: every file with data says why.
        Err(why) => {
            for (_, files) in extents {
                for &file in files {
                    bad.entry(file).or_insert_with(|| why.clone());
                }
            }
            return HashMap::new();
        }
    };
    let next = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    let lengths = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for mut worker in workers {
            let (next, problems, lengths) = (&next, &problems, &lengths);
            s.spawn(move || {
                while let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match *task {
                        Task::Blocks {
                            extent,
                            first,
                            count,
                            offset,
                        } => {
                            if let Err((block, why)) =
                                worker.blocks(extents[extent].0, first, count, offset)
                            {
                                lock(problems).push((extent, block, why));
                            }
                        }
                        Task::Fragment { index } => {
                            let r = worker.fragment(index);
                            lock(lengths).insert(index, r);
                        }
                    }
                }
            });
        }
    });
    let mut problems = problems.into_inner().unwrap_or_else(|p| p.into_inner());
    // The first bad block of an extent is the one a reader meets first.
    problems.sort_by_key(|p| p.1);
    let bs = u64::from(tree.block_size);
    for (extent, block, why) in problems {
        for &file in &extents[extent].1 {
            bad.entry(file)
                .or_insert_with(|| format!("reading byte {}: {why}", block as u64 * bs));
        }
    }
    lengths.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One thread's decoder and buffers.
struct Worker<'t> {
    tree: &'t SquashTree,
    decoder: Decoder,
    /// One block's compressed bytes (fragments, and blocks out of bounds).
    raw: Vec<u8>,
    /// A run of blocks' compressed bytes, read at once.
    span: Vec<u8>,
    out: Vec<u8>,
}

impl<'t> Worker<'t> {
    fn new(tree: &'t SquashTree) -> Result<Worker<'t>, String> {
        Ok(Worker {
            tree,
            decoder: Decoder::new(tree.compressor).map_err(|e| e.to_string())?,
            raw: Vec::new(),
            span: Vec::new(),
            out: vec![0u8; tree.block_size as usize],
        })
    }

    /// Checks blocks `first..first + count` of `fd`, the first starting at image `offset`.
    /// Each must decompress to exactly what the file needs of it: a whole block, or the
    /// file's last bytes when it has no fragment (Linux returns EIO for anything else).
    fn blocks(
        &mut self,
        fd: &FileData,
        first: usize,
        count: usize,
        offset: u64,
    ) -> Result<(), (usize, String)> {
        let bs = u64::from(self.tree.block_size);
        let last = fd.block_sizes.len() - 1;
        let run = &fd.block_sizes[first..first + count];
        // The run's blocks follow each other on disk: one read for all of them, unless a
        // size is out of bounds, which the block-by-block path below reports.
        let span: u64 = run.iter().map(|(size, _)| u64::from(*size)).sum();
        let whole_run = run.iter().all(|(size, _)| *size <= self.tree.block_size)
            && offset.saturating_add(span) <= self.tree.bytes_used;
        if whole_run {
            self.span.resize(span as usize, 0);
            self.tree
                .file
                .read_exact_at(&mut self.span, offset)
                .map_err(|e| {
                    (
                        first,
                        format!("the blocks at image offset {offset} cannot be read ({e})"),
                    )
                })?;
        }
        let mut at = offset;
        let mut in_span = 0usize;
        for (j, &(size, uncompressed)) in (first..).zip(run) {
            let here = at;
            at = at.saturating_add(u64::from(size));
            let raw_at = in_span;
            in_span += size as usize;
            // A zero size without the uncompressed bit is a hole, read as zeros.
            if size == 0 && !uncompressed {
                continue;
            }
            let expected = if j == last && fd.fragment.is_none() {
                fd.size.saturating_sub(j as u64 * bs)
            } else {
                bs
            };
            let n = if whole_run {
                let raw = &self.span[raw_at..raw_at + size as usize];
                decode(&mut self.decoder, &mut self.out, raw, uncompressed)
            } else {
                self.read(here, size, uncompressed)
            }
            .map_err(|why| (j, format!("the block at image offset {here} {why}")))?;
            if n as u64 != expected {
                return Err((
                    j,
                    format!(
                        "the block at image offset {here} holds {n} bytes where the file needs {expected}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A fragment block's decompressed length.
    fn fragment(&mut self, index: u32) -> Result<u64, String> {
        let (start, size, uncompressed) = *self
            .tree
            .fragments
            .get(index as usize)
            .ok_or_else(|| format!("fragment {index} is not in the fragment table"))?;
        self.read(start, size, uncompressed)
            .map(|n| n as u64)
            .map_err(|why| format!("fragment block {index} at image offset {start} {why}"))
    }

    /// Reads the `size` bytes at `at` and decompresses them unless stored as they are;
    /// returns the block's length. A block must lie inside the filesystem and take no more
    /// than a block's size on disk, as Linux's `squashfs_read_data` checks.
    fn read(&mut self, at: u64, size: u32, uncompressed: bool) -> Result<usize, String> {
        if size > self.tree.block_size {
            return Err(format!("claims {size} bytes on disk, over the block size"));
        }
        if at.saturating_add(u64::from(size)) > self.tree.bytes_used {
            return Err("lies past the end of the filesystem".into());
        }
        self.raw.resize(size as usize, 0);
        self.tree
            .file
            .read_exact_at(&mut self.raw, at)
            .map_err(|e| format!("cannot be read ({e})"))?;
        decode(&mut self.decoder, &mut self.out, &self.raw, uncompressed)
    }
}

/// The length of the block `raw` holds, decompressed into `out` unless stored as it is.
fn decode(
    decoder: &mut Decoder,
    out: &mut [u8],
    raw: &[u8],
    uncompressed: bool,
) -> Result<usize, String> {
    if uncompressed {
        return Ok(raw.len());
    }
    decoder
        .decompress(raw, out)
        .map_err(|e| format!("does not decompress: {e}"))
}
