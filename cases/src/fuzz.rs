//! Mutation fuzzing of lint: real images and a real release directory, broken byte by byte.
//!
//! The subjects are fixtures built the way `sysext-test build` builds them (a squashfs image
//! per compressor family, an erofs image, and a bakery release directory with its
//! `SHA256SUMS` and transfer file). Each mutant flips bits, truncates, splices in a chunk of
//! another subject, or zeroes a range of one file, and is linted in a thread of its own
//! with a deadline. A mutant fails the run when lint
//!
//! * panics, or does not finish within the deadline (a hang), or returns an error instead
//!   of a report (lint must report a broken input, not refuse to look at it);
//! * reports no warning or error although the mutant is broken. "Broken" is decided by an
//!   oracle that does not ask lint:
//!   - an image is broken when the format's own tool cannot read it back whole
//!     (`unsquashfs` for squashfs, `fsck.erofs --extract` for erofs). A mutant the tool
//!     reads back fine is a valid image: if its tree (paths, types, modes, owners, symlink
//!     targets, file bytes, xattrs) equals the original's, nothing changed that matters;
//!     if it differs (a flipped mode bit, bytes inside an uncompressed block, which no
//!     checksum covers), it is a different but valid image, and lint may say nothing;
//!   - in a release directory, a changed image is always broken (its `SHA256SUMS` line no
//!     longer matches); a changed `SHA256SUMS` is broken unless it still lists the same
//!     digests for the same names in sysupdate's syntax (upper-case hex is the same
//!     digest); a changed transfer file is broken when it is not UTF-8, has a line that
//!     is not a comment, a `[Section]` or a `Key=Value`, or names a section or key
//!     sysupdate does not know. Other value changes (`InstancesMax=3` to `2`) are valid.
//!
//! Every mutant is a function of the run's seed and its index, so a failure is replayed
//! with `sysext-test fuzz --seed S --replay N`; the mutant's files are also kept under the
//! work directory's `failures/`.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sysext_builder::Arch;
use sysext_builder::build::{self, Format};
use sysext_builder::spec::Compression;

use crate::fixtures;
use crate::lint::rules::release_dir;
use crate::lint::{ImageReport, LintError, Linter, Options, Severity};

/// Why a fuzz run could not start or go on (as opposed to the failures it finds).
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building fuzz subject {subject}: {message}")]
    Build { subject: String, message: String },
    #[error(
        "fuzz subject {subject} is not clean before mutation, so findings would prove nothing: {findings}"
    )]
    NotClean { subject: String, findings: String },
    #[error("the reference reader fails on the unmutated subject {subject}: {message}")]
    Reference { subject: String, message: String },
    #[error("{0}")]
    Lint(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FuzzError + '_ {
    move |source| FuzzError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SplitMix64: tiny, seedable, and good enough to pick offsets; keeps the crate free of
/// a random-number dependency and makes every mutant reproducible from (seed, index).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of mutant `index` of the run seeded with `seed`.
    pub fn for_mutant(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// How a subject's tree is read back independently of lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Unsquashfs,
    FsckErofs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubjectKind {
    /// One image file, linted on its own and read back with its format's tool.
    Image(Reader),
    /// A release directory (image, `SHA256SUMS`, transfer file), linted as a whole.
    ReleaseDir,
}

/// One file of a subject, unmutated.
#[derive(Debug, Clone)]
pub struct SubjectFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl SubjectFile {
    /// The bytes that mean something: a squashfs image is padded to 4 KiB after the
    /// `bytes_used` its superblock records, and a small image would otherwise spend most
    /// mutants on padding no reader looks at.
    fn used(&self) -> usize {
        let len = self.bytes.len();
        if self.bytes.starts_with(b"hsqs") {
            let used = self
                .bytes
                .get(40..48)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .and_then(|u| usize::try_from(u).ok())
                .unwrap_or(len);
            return used.clamp(1, len.max(1));
        }
        len.max(1)
    }
}

/// Something to mutate: an image, or a release directory of several files.
pub struct Subject {
    pub name: String,
    kind: SubjectKind,
    pub files: Vec<SubjectFile>,
    /// The original image's tree as its format's tool reads it (images only).
    tree: Option<Tree>,
}

impl Subject {
    pub fn is_release_dir(&self) -> bool {
        self.kind == SubjectKind::ReleaseDir
    }
}

/// One way to change a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// XOR each `(offset, mask)`.
    Flip(Vec<(usize, u8)>),
    /// Keep the first `len` bytes.
    Truncate(usize),
    /// Overwrite from `at` with `len` bytes of another subject's file, from `from` on
    /// (the file grows if the chunk runs past its end).
    Splice {
        at: usize,
        donor: String,
        from: usize,
        len: usize,
    },
    /// Zero `len` bytes from `at`.
    Zero { at: usize, len: usize },
}

/// A mutation of one file of one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub subject: usize,
    pub file: usize,
    pub op: Op,
}

/// The subjects and their files by name, for messages.
struct Named<'a>(&'a Mutation, &'a [Subject]);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, subjects) = (self.0, self.1);
        let s = &subjects[m.subject];
        let file = &s.files[m.file].name;
        match &m.op {
            Op::Flip(flips) => {
                let list: Vec<String> = flips
                    .iter()
                    .map(|(o, mask)| format!("{o:#x}^{mask:#04x}"))
                    .collect();
                write!(f, "{}: flip {} in {file}", s.name, list.join(", "))
            }
            Op::Truncate(len) => write!(
                f,
                "{}: truncate {file} to {len:#x} of {:#x} bytes",
                s.name,
                s.files[m.file].bytes.len()
            ),
            Op::Splice {
                at,
                donor,
                from,
                len,
            } => write!(
                f,
                "{}: splice {len:#x} bytes of {donor} from {from:#x} over {file} at {at:#x}",
                s.name
            ),
            Op::Zero { at, len } => {
                write!(f, "{}: zero {len:#x} bytes of {file} at {at:#x}", s.name)
            }
        }
    }
}

/// An offset, biased toward where the structure is: the first 4 KiB (superblocks,
/// headers) and the last eighth (squashfs's inode, directory and fragment tables).
fn offset(rng: &mut Rng, len: usize) -> usize {
    match rng.below(3) {
        0 => rng.below(len.min(4096)),
        1 => len - len / 8 + rng.below(len / 8 + 1).min(len.saturating_sub(1)),
        _ => rng.below(len),
    }
    .min(len.saturating_sub(1))
}

impl Mutation {
    /// Mutant `index` of the run seeded with `seed`: subjects take turns, the rest is drawn.
    pub fn generate(subjects: &[Subject], seed: u64, index: u64) -> Mutation {
        let mut rng = Rng::for_mutant(seed, index);
        let subject = (index % subjects.len() as u64) as usize;
        let s = &subjects[subject];
        let file = rng.below(s.files.len());
        // Mostly where the content is; one mutant in eight anywhere, padding included.
        let len = if rng.below(8) == 0 {
            s.files[file].bytes.len().max(1)
        } else {
            s.files[file].used()
        };
        let op = match rng.below(4) {
            0 => {
                let n = 1 + rng.below(4);
                Op::Flip(
                    (0..n)
                        .map(|_| (offset(&mut rng, len), 1u8 << rng.below(8)))
                        .collect(),
                )
            }
            1 => Op::Truncate(rng.below(len)),
            2 => {
                let d = &subjects[rng.below(subjects.len())];
                let donor = &d.files[rng.below(d.files.len())];
                let from = rng.below(donor.bytes.len().max(1));
                let max = donor.bytes.len().saturating_sub(from).clamp(1, 4096);
                Op::Splice {
                    at: offset(&mut rng, len),
                    donor: format!("{}/{}", d.name, donor.name),
                    from,
                    len: 1 + rng.below(max),
                }
            }
            _ => Op::Zero {
                at: offset(&mut rng, len),
                len: 1 + rng.below(4096),
            },
        };
        Mutation { subject, file, op }
    }

    /// The mutated bytes of the file this mutation changes.
    pub fn apply(&self, subjects: &[Subject]) -> Vec<u8> {
        let mut b = subjects[self.subject].files[self.file].bytes.clone();
        match &self.op {
            Op::Flip(flips) => {
                for (o, mask) in flips {
                    if let Some(byte) = b.get_mut(*o) {
                        *byte ^= mask;
                    }
                }
            }
            Op::Truncate(len) => b.truncate(*len),
            Op::Splice {
                at,
                donor,
                from,
                len,
            } => {
                let chunk = subjects
                    .iter()
                    .flat_map(|s| {
                        s.files
                            .iter()
                            .map(move |f| (format!("{}/{}", s.name, f.name), f))
                    })
                    .find(|(n, _)| n == donor)
                    .map(|(_, f)| {
                        let end = from.saturating_add(*len).min(f.bytes.len());
                        f.bytes[(*from).min(end)..end].to_vec()
                    })
                    .unwrap_or_default();
                let at = (*at).min(b.len());
                if b.len() < at + chunk.len() {
                    b.resize(at + chunk.len(), 0);
                }
                b[at..at + chunk.len()].copy_from_slice(&chunk);
            }
            Op::Zero { at, len } => {
                let end = at.saturating_add(*len).min(b.len());
                for byte in &mut b[(*at).min(end)..end] {
                    *byte = 0;
                }
            }
        }
        b
    }
}

// ------------------------------------------------------------------- subjects

/// The subjects [`prepare`] can build, by name.
pub const SUBJECTS: [&str; 6] = [
    "squashfs-gzip:hello-service",
    "release-dir:hello-service",
    "erofs:hello-service",
    "squashfs-xz:busybox",
    "mksquashfs-xattr:hello-service",
    "mksquashfs-uncompressed:busybox",
];

/// Builds the subjects named in `wanted` (all of [`SUBJECTS`] when empty) under
/// `work/originals`: hello-service as gzip squashfs (also its release directory) and as
/// erofs, busybox as xz squashfs (a real static ELF), hello-service repacked by
/// `mksquashfs` with its release file renamed and rescued by
/// `user.extension-release.strict=0` (the bakery's tool, and the xattr table lint reads),
/// and busybox repacked by `mksquashfs` without any compression, so that mutants change
/// the ELF bytes lint inspects instead of breaking a compressed block.
pub fn prepare(work: &Path, wanted: &[&str]) -> Result<Vec<Subject>, FuzzError> {
    let want = |n: &str| wanted.is_empty() || wanted.contains(&n);
    if let Some(unknown) = wanted.iter().find(|w| !SUBJECTS.contains(w)) {
        return Err(FuzzError::Build {
            subject: unknown.to_string(),
            message: format!("no such subject; choose from {}", SUBJECTS.join(", ")),
        });
    }
    let originals = work.join("originals");
    if originals.exists() {
        std::fs::remove_dir_all(&originals).map_err(io_err(&originals))?;
    }
    let plan: [(&str, &str, Format, Option<Compression>); 3] = [
        ("squashfs-gzip", "hello-service", Format::Squashfs, None),
        ("erofs", "hello-service", Format::Erofs, None),
        (
            "squashfs-xz",
            "busybox",
            Format::Squashfs,
            Some(Compression::Xz),
        ),
    ];
    let mut subjects = Vec::new();
    for (label, fixture, format, compression) in plan {
        let name = format!("{label}:{fixture}");
        let dir_name = format!("release-dir:{fixture}");
        let with_dir = label == "squashfs-gzip" && want(&dir_name);
        if !want(&name) && !with_dir {
            continue;
        }
        let fx = fixtures::load(
            &fixtures::root()
                .join("extensions")
                .join(format!("{fixture}.toml")),
        )
        .map_err(|message| FuzzError::Build {
            subject: name.clone(),
            message,
        })?;
        let out = originals.join(label);
        let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
        let built = build::build_spec(
            &fx.spec,
            spec_dir,
            &out,
            &build::Options {
                arch: Some(Arch::X86_64),
                format,
                compression,
                hub: None,
            },
        )
        .map_err(|e| FuzzError::Build {
            subject: name.clone(),
            message: e.to_string(),
        })?;
        let reader = match format {
            Format::Squashfs => Reader::Unsquashfs,
            Format::Erofs => Reader::FsckErofs,
        };
        let image = read_file(&built.image)?;
        if want(&name) {
            let tree = read_back(
                reader,
                &built.image,
                &work.join("reference"),
                Duration::from_secs(60),
            )
            .map_err(|message| FuzzError::Reference {
                subject: name.clone(),
                message,
            })?;
            subjects.push(Subject {
                name: name.clone(),
                kind: SubjectKind::Image(reader),
                files: vec![image.clone()],
                tree: Some(tree),
            });
        }
        if with_dir {
            let mut files = vec![image];
            for p in [&built.sha256sums, &built.transfer] {
                files.push(read_file(p)?);
            }
            subjects.push(Subject {
                name: dir_name,
                kind: SubjectKind::ReleaseDir,
                files,
                tree: None,
            });
        }
    }
    for (name, fixture, renamed, extra) in [
        (
            "mksquashfs-xattr:hello-service",
            "hello-service",
            true,
            &[][..],
        ),
        (
            "mksquashfs-uncompressed:busybox",
            "busybox",
            false,
            &["-noI", "-noD", "-noF", "-noX", "-no-xattrs"][..],
        ),
    ] {
        if want(name) {
            let s = mksquashfs_subject(name, fixture, renamed, extra, &originals, work).map_err(
                |message| FuzzError::Build {
                    subject: name.into(),
                    message,
                },
            )?;
            subjects.push(s);
        }
    }
    // Findings on a mutant mean something only if the original has none.
    let scratch = work.join("check-original");
    for s in &subjects {
        let path = write_subject(s, None, &scratch)?;
        let reports = Linter::new(Options::default())
            .lint_path(&path)
            .map_err(|e| FuzzError::Lint(e.to_string()))?;
        let found = serious(&reports);
        if !found.is_empty() {
            return Err(FuzzError::NotClean {
                subject: s.name.clone(),
                findings: found.join("; "),
            });
        }
    }
    Ok(subjects)
}

/// `fixture` built, extracted, with `renamed` its release file renamed to
/// `extension-release.renamed` with `user.extension-release.strict=0`, and packed again
/// with `mksquashfs -all-root` and `extra`.
fn mksquashfs_subject(
    name: &str,
    fixture: &str,
    renamed: bool,
    extra: &[&str],
    originals: &Path,
    work: &Path,
) -> Result<Subject, String> {
    let fx = fixtures::load(
        &fixtures::root()
            .join("extensions")
            .join(format!("{fixture}.toml")),
    )?;
    let label = name.split(':').next().unwrap_or(name);
    let out = originals.join(format!("{label}-src"));
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    let opts = build::Options {
        arch: Some(Arch::X86_64),
        ..Default::default()
    };
    let built = build::build_spec(&fx.spec, spec_dir, &out, &opts).map_err(|e| e.to_string())?;
    let stage = originals.join(format!("{label}-tree"));
    read_back(
        Reader::Unsquashfs,
        &built.image,
        &stage,
        Duration::from_secs(60),
    )?;
    let root = stage.join("root");
    if renamed {
        let dir = root.join("usr/lib/extension-release.d");
        let to = dir.join("extension-release.renamed");
        std::fs::rename(dir.join(format!("extension-release.{}", fx.spec.name)), &to)
            .map_err(|e| format!("{}: {e}", to.display()))?;
        xattr::set(&to, "user.extension-release.strict", b"0").map_err(|e| {
            format!("setting user.extension-release.strict (no user xattrs here?): {e}")
        })?;
    }
    let image = originals
        .join(label)
        .join(built.image.file_name().unwrap_or_default());
    std::fs::create_dir_all(originals.join(label)).map_err(|e| e.to_string())?;
    sysext_builder::squashfs_tools::pack(&root, &image, extra).map_err(|e| e.to_string())?;
    let tree = read_back(
        Reader::Unsquashfs,
        &image,
        &work.join("reference"),
        Duration::from_secs(60),
    )?;
    let file = read_file(&image).map_err(|e| e.to_string())?;
    Ok(Subject {
        name: name.into(),
        kind: SubjectKind::Image(Reader::Unsquashfs),
        files: vec![file],
        tree: Some(tree),
    })
}

fn read_file(path: &Path) -> Result<SubjectFile, FuzzError> {
    Ok(SubjectFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: std::fs::read(path).map_err(io_err(path))?,
    })
}

/// Writes subject `s` under `dir` (emptied first) with file `mutated` replaced, and
/// returns what to lint: the image file, or the release directory.
fn write_subject(
    s: &Subject,
    mutated: Option<(usize, &[u8])>,
    dir: &Path,
) -> Result<PathBuf, FuzzError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    for (i, f) in s.files.iter().enumerate() {
        let bytes = match mutated {
            Some((j, b)) if j == i => b,
            _ => &f.bytes,
        };
        let p = dir.join(&f.name);
        std::fs::write(&p, bytes).map_err(io_err(&p))?;
    }
    Ok(match s.kind {
        SubjectKind::ReleaseDir => dir.to_path_buf(),
        SubjectKind::Image(_) => dir.join(&s.files[0].name),
    })
}

/// Warnings and errors, as `rule path: message` lines.
fn serious(reports: &[ImageReport]) -> Vec<String> {
    reports
        .iter()
        .flat_map(|r| r.findings.iter())
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| format!("{} {}: {}", f.rule, f.path, f.message))
        .collect()
}

// --------------------------------------------------------------------- oracle

/// One entry of a tree as a reference tool extracted it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// File bytes or symlink target.
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

type Tree = BTreeMap<String, Node>;

/// Extracts `image` with its format's tool into `scratch` and reads the tree back, or
/// says why the tool could not.
fn read_back(
    reader: Reader,
    image: &Path,
    scratch: &Path,
    timeout: Duration,
) -> Result<Tree, String> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    }
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let root = scratch.join("root");
    let mut cmd = Command::new("sh");
    // A corrupt length must not let the tool take the machine's memory.
    cmd.arg("-c")
        .arg("ulimit -v 2097152; exec \"$@\"")
        .arg("sh");
    match reader {
        Reader::Unsquashfs => cmd
            .args(["unsquashfs", "-q", "-n", "-p", "1", "-d"])
            .arg(&root)
            .arg(image),
        Reader::FsckErofs => cmd
            .arg("fsck.erofs")
            .arg(format!("--extract={}", root.display()))
            .arg("--preserve")
            .arg(image),
    };
    let stderr_path = scratch.join("stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("running the reference reader: {e}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the reference reader ran over {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    if !status.success() {
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!("{status}: {}", last.trim()));
    }
    let mut tree = Tree::new();
    walk(&root, "", &mut tree).map_err(|e| format!("reading the extracted tree: {e}"))?;
    Ok(tree)
}

fn walk(root: &Path, rel: &str, out: &mut Tree) -> std::io::Result<()> {
    let full = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let meta = std::fs::symlink_metadata(&full)?;
    let ft = meta.file_type();
    let (kind, data) = if ft.is_dir() {
        ("dir", Vec::new())
    } else if ft.is_file() {
        ("file", std::fs::read(&full)?)
    } else if ft.is_symlink() {
        (
            "symlink",
            std::fs::read_link(&full)?
                .into_os_string()
                .into_encoded_bytes(),
        )
    } else {
        ("special", meta.rdev().to_le_bytes().to_vec())
    };
    let mut xattrs = BTreeMap::new();
    if !ft.is_symlink()
        && let Ok(names) = xattr::list(&full)
    {
        for n in names {
            let name = n.to_string_lossy().into_owned();
            if let Ok(Some(v)) = xattr::get(&full, &n) {
                xattrs.insert(name, v);
            }
        }
    }
    out.insert(
        rel.to_string(),
        Node {
            kind,
            mode: meta.permissions().mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            data,
            xattrs,
        },
    );
    if ft.is_dir() {
        let mut children: Vec<String> = std::fs::read_dir(&full)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        children.sort();
        for c in children {
            let child = if rel.is_empty() {
                c
            } else {
                format!("{rel}/{c}")
            };
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

/// The first difference between two trees, for messages.
fn first_difference(a: &Tree, b: &Tree) -> Option<String> {
    for (path, node) in a {
        match b.get(path) {
            None => return Some(format!("/{path} is gone")),
            Some(other) if other != node => return Some(format!("/{path} changed")),
            Some(_) => {}
        }
    }
    b.keys()
        .find(|p| !a.contains_key(*p))
        .map(|p| format!("/{p} appeared"))
}

/// What the oracle says about a mutant, without asking lint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Broken: lint must report a warning or an error. The reason says why.
    Broken(String),
    /// Valid and equivalent to the original.
    Same,
    /// Valid but different (e.g. a mode bit, or bytes no checksum covers).
    Different(String),
}

fn judge(s: &Subject, m: &Mutation, mutant: &[u8], path: &Path, scratch: &Path) -> Verdict {
    match s.kind {
        SubjectKind::Image(reader) => {
            match read_back(reader, path, scratch, Duration::from_secs(20)) {
                Err(why) => Verdict::Broken(format!("the format's tool cannot read it: {why}")),
                Ok(tree) => match s.tree.as_ref().and_then(|t| first_difference(t, &tree)) {
                    None => Verdict::Same,
                    Some(d) => Verdict::Different(d),
                },
            }
        }
        SubjectKind::ReleaseDir => {
            let file = &s.files[m.file];
            if file.name.ends_with(".raw") {
                Verdict::Broken("the image no longer matches its SHA256SUMS line".into())
            } else if file.name == "SHA256SUMS" {
                if sums_entries(mutant) == sums_entries(&file.bytes) {
                    Verdict::Same
                } else {
                    Verdict::Broken(
                        "SHA256SUMS no longer lists the same digests in sysupdate's syntax".into(),
                    )
                }
            } else {
                match transfer_problem(mutant) {
                    Some(why) => Verdict::Broken(why),
                    None => Verdict::Different("transfer values changed".into()),
                }
            }
        }
    }
}

/// sysupdate's reading of a manifest, written independently of `sha256sums::parse`:
/// `None` unless every line is `<64 hex>  <name>` or `<64 hex> *<name>`, ends with a
/// newline, and names a plain file; digests compared case-insensitively.
fn sums_entries(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.contains('\0') || !(text.is_empty() || text.ends_with('\n')) {
        return None;
    }
    let mut out = Vec::new();
    for line in text.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let digest = line.get(..64)?;
        let sep = line.get(64..66)?;
        let name = line.get(66..)?;
        let plain = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.starts_with('\\')
            && !name.contains('/')
            && !name.chars().any(char::is_control);
        if !digest.bytes().all(|b| b.is_ascii_hexdigit()) || !(sep == "  " || sep == " *") || !plain
        {
            return None;
        }
        out.push((digest.to_ascii_lowercase(), name.to_string()));
    }
    out.sort();
    Some(out)
}

/// Why a transfer file is broken in systemd's config syntax or names something sysupdate
/// does not know, read independently of `IniFile`; `None` if it is well-formed.
fn transfer_problem(bytes: &[u8]) -> Option<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some("the transfer file is not UTF-8".into());
    };
    let mut lines = Vec::new();
    let mut pending: Option<String> = None;
    for raw in text.lines() {
        let mut line = match pending.take() {
            Some(acc) => format!("{acc} {}", raw.trim()),
            None => raw.trim().to_string(),
        };
        if !line.starts_with(['#', ';']) && line.ends_with('\\') {
            line.pop();
            pending = Some(line);
            continue;
        }
        lines.push(line);
    }
    if pending.is_some() {
        return Some("the transfer file ends inside a continuation".into());
    }
    let mut section: Option<String> = None;
    for line in lines {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.strip_suffix(']').filter(|n| !n.is_empty());
            let Some(name) = name else {
                return Some(format!("bad section header {line:?}"));
            };
            if release_dir::known_keys(name).is_none() {
                return Some(format!("unknown section [{name}]"));
            }
            section = Some(name.to_string());
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            return Some(format!("not Key=Value: {line:?}"));
        };
        let key = key.trim();
        let Some(sec) = &section else {
            return Some(format!("{key}= outside of any section"));
        };
        if !release_dir::known_keys(sec).is_some_and(|k| k.contains(&key)) {
            return Some(format!("unknown key {key:?} in [{sec}]"));
        }
    }
    None
}

// -------------------------------------------------------------------- running

/// How lint fared on one input.
#[derive(Debug)]
pub enum Outcome {
    Reports(Vec<ImageReport>),
    Error(String),
    Panic(String),
    Hang,
}

/// The message and place of the last panic, recorded by [`quiet_panics`]' hook (the
/// payload alone lacks the place, and a panic in a rayon worker happens on another thread).
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Installs (once) a panic hook that records every panic for [`lint_bounded`] and keeps
/// quiet about those on its lint threads, so a fuzz run's output stays one line per
/// failure; other threads' panics (another test's) are printed as before.
pub fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            *LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = Some(info.to_string());
            if std::thread::current().name() != Some(LINT_THREAD) {
                previous(info);
            }
        }));
    });
}

const LINT_THREAD: &str = "fuzz-lint";

/// Lints `path` in a thread of its own, giving up after `timeout`: a hang becomes
/// [`Outcome::Hang`] (the thread is left behind, so the caller should stop soon after),
/// a panic [`Outcome::Panic`] with its message.
pub fn lint_bounded(path: &Path, timeout: Duration) -> Outcome {
    let p = path.to_path_buf();
    bounded(
        move || Linter::new(Options::default()).lint_path(&p),
        timeout,
    )
}

/// Runs `lint` the way [`lint_bounded`] runs a linter (separate so tests can hand it a
/// panic or a hang).
fn bounded(
    lint: impl FnOnce() -> Result<Vec<ImageReport>, LintError> + Send + 'static,
    timeout: Duration,
) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(LINT_THREAD.into())
        .spawn(move || {
            let r = catch_unwind(AssertUnwindSafe(lint));
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Outcome::Error(format!("cannot start a lint thread: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(Ok(reports))) => Outcome::Reports(reports),
        Ok(Ok(Err(e))) => Outcome::Error(match e {
            LintError::Environment(e) => format!("environment: {e}"),
            other => other.to_string(),
        }),
        Ok(Err(payload)) => {
            let recorded = LAST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            // The hook's record adds the place; it is this panic's if it says the same.
            Outcome::Panic(recorded.filter(|r| r.contains(&text)).unwrap_or(text))
        }
        Err(_) => Outcome::Hang,
    }
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// Stop after this long (checked between mutants).
    pub duration: Option<Duration>,
    /// Stop after this many mutants.
    pub max_mutants: Option<u64>,
    /// Run only mutant N of the seed (replay).
    pub replay: Option<u64>,
    /// Deadline for one lint.
    pub timeout: Duration,
    /// Scratch space; failures are kept under `failures/`.
    pub work: PathBuf,
}

/// Why a mutant failed the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    Panic(String),
    Hang(Duration),
    LintError(String),
    /// The oracle says broken, lint reported no warning or error.
    Missed(String),
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Panic(m) => write!(f, "lint panicked: {m}"),
            FailureKind::Hang(t) => write!(f, "lint did not finish within {t:?}"),
            FailureKind::LintError(e) => {
                write!(f, "lint returned an error instead of a report: {e}")
            }
            FailureKind::Missed(why) => {
                write!(f, "lint reported nothing, but the mutant is broken: {why}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub index: u64,
    pub mutation: String,
    pub kind: FailureKind,
    /// Where the mutant's files were kept.
    pub kept: PathBuf,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mutant {} of seed {} ({}): {}\n  replay: sysext-test fuzz --seed {} --replay {}\n  kept: {}",
            self.index,
            self.seed,
            self.mutation,
            self.kind,
            self.seed,
            self.index,
            self.kept.display()
        )
    }
}

/// Counts of a run, by what the oracle and lint said.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub mutants: u64,
    /// Mutations that left the bytes as they were (not linted).
    pub unchanged: u64,
    /// Broken, and lint reported it.
    pub caught: u64,
    /// Valid and the same tree; lint reported a warning or error anyway.
    pub stricter: u64,
    /// Valid and the same tree; lint quiet.
    pub same: u64,
    /// Valid but different; lint reported something.
    pub different_flagged: u64,
    /// Valid but different; lint quiet.
    pub different_quiet: u64,
    pub failures: u64,
    pub slowest: Duration,
    pub elapsed: Duration,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} mutants in {:.1}s ({} unchanged): {} broken and caught, {} failures; valid: {} same, {} same but flagged, {} different (flagged {}, quiet {}); slowest lint {:.2}s",
            self.mutants,
            self.elapsed.as_secs_f64(),
            self.unchanged,
            self.caught,
            self.failures,
            self.same,
            self.stricter,
            self.different_flagged + self.different_quiet,
            self.different_flagged,
            self.different_quiet,
            self.slowest.as_secs_f64()
        )
    }
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub stats: Stats,
    pub failures: Vec<Failure>,
    /// The first few mutants the reference reads back unchanged but lint flags (lint
    /// stricter than the format's tool: not a failure, but worth a look).
    pub stricter: Vec<String>,
    /// True when the run stopped at a hang (a lint thread is still running).
    pub stopped_at_hang: bool,
}

/// Progress reports, about one a second and one per failure.
pub enum Progress<'a> {
    Started { seed: u64, subjects: &'a [Subject] },
    Tick(&'a Stats),
    Failed(&'a Failure),
}

/// Mutates and lints until the duration or the mutant count is reached (or, after a
/// hang, at once). Mutant `N` of seed `S` is always the same mutant.
pub fn run(
    config: &Config,
    subjects: &[Subject],
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary, FuzzError> {
    let start = Instant::now();
    let mut summary = Summary::default();
    progress(Progress::Started {
        seed: config.seed,
        subjects,
    });
    let mutant_dir = config.work.join("mutant");
    let scratch = config.work.join("reference");
    let inflight = config.work.join("in-flight.txt");
    let mut last_tick = Instant::now();
    let indices: Box<dyn Iterator<Item = u64>> = match config.replay {
        Some(n) => Box::new(std::iter::once(n)),
        None => Box::new(0..),
    };
    for index in indices {
        if config
            .max_mutants
            .is_some_and(|m| summary.stats.mutants >= m)
            || config.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        let m = Mutation::generate(subjects, config.seed, index);
        let s = &subjects[m.subject];
        let bytes = m.apply(subjects);
        summary.stats.mutants += 1;
        if bytes == s.files[m.file].bytes {
            summary.stats.unchanged += 1;
            continue;
        }
        let described = Named(&m, subjects).to_string();
        let path = write_subject(s, Some((m.file, &bytes)), &mutant_dir)?;
        // If lint aborts the process (an allocation failure is not a panic), this names
        // the mutant that did it.
        std::fs::write(
            &inflight,
            format!("seed {} mutant {index}: {described}\n", config.seed),
        )
        .map_err(io_err(&inflight))?;
        let t = Instant::now();
        let outcome = lint_bounded(&path, config.timeout);
        let took = t.elapsed();
        summary.stats.slowest = summary.stats.slowest.max(took);
        let kind = match outcome {
            Outcome::Panic(msg) => Some(FailureKind::Panic(msg)),
            Outcome::Hang => Some(FailureKind::Hang(config.timeout)),
            Outcome::Error(e) => Some(FailureKind::LintError(e)),
            Outcome::Reports(reports) => {
                let flagged = !serious(&reports).is_empty();
                match (judge(s, &m, &bytes, &path, &scratch), flagged) {
                    (Verdict::Broken(_), true) => {
                        summary.stats.caught += 1;
                        None
                    }
                    (Verdict::Broken(why), false) => Some(FailureKind::Missed(why)),
                    (Verdict::Same, true) => {
                        summary.stats.stricter += 1;
                        if summary.stricter.len() < 20 {
                            summary.stricter.push(format!(
                                "mutant {index} ({described}): {}",
                                serious(&reports).join("; ")
                            ));
                        }
                        None
                    }
                    (Verdict::Same, false) => {
                        summary.stats.same += 1;
                        None
                    }
                    (Verdict::Different(_), true) => {
                        summary.stats.different_flagged += 1;
                        None
                    }
                    (Verdict::Different(_), false) => {
                        summary.stats.different_quiet += 1;
                        None
                    }
                }
            }
        };
        if let Some(kind) = kind {
            let hang = matches!(kind, FailureKind::Hang(_));
            let kept = config
                .work
                .join("failures")
                .join(format!("{}-{index}", config.seed));
            write_subject(s, Some((m.file, &bytes)), &kept)?;
            let note = kept.join("MUTATION.txt");
            std::fs::write(&note, format!("{described}\n{kind}\n")).map_err(io_err(&note))?;
            let failure = Failure {
                seed: config.seed,
                index,
                mutation: described,
                kind,
                kept,
            };
            summary.stats.failures += 1;
            progress(Progress::Failed(&failure));
            summary.failures.push(failure);
            if hang {
                summary.stopped_at_hang = true;
                break;
            }
        }
        let _ = std::fs::remove_file(&inflight);
        if last_tick.elapsed() >= Duration::from_secs(1) {
            summary.stats.elapsed = start.elapsed();
            progress(Progress::Tick(&summary.stats));
            last_tick = Instant::now();
        }
    }
    summary.stats.elapsed = start.elapsed();
    Ok(summary)
}

/// Parses `90`, `90s`, `10m` or `1h` (what `--duration` takes).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a duration: use e.g. 90s, 10m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("'{s}': unknown unit '{unit}'; use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// The mutant a previous run was linting when the process died, if it did.
pub fn died_in_flight(work: &Path) -> Option<String> {
    std::fs::read_to_string(work.join("in-flight.txt")).ok()
}

/// Caps the process's address space, so a corrupt length that makes lint allocate
/// without bound fails that allocation (an abort, named by [`died_in_flight`]) instead of
/// waking the kernel's OOM killer on a machine that runs guests.
pub fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    limit.rlim_cur = bytes.min(limit.rlim_max);
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
