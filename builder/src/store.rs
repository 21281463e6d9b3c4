//! A bakery release store on disk: what a maintainer or a fork has before it publishes.
//!
//! Two shapes are read, both the way the bakery's CI leaves them:
//! - a folder per release tag, as `gh release download` fills it: `NAME-VERSION/` holding
//!   `NAME-VERSION-ARCH.raw` for each arch, `SHA256SUMS`, `NAME.conf` and perhaps
//!   `NAME-vMAJ.MIN.conf`; the metadata release `NAME/` (`SHA256SUMS` of every version, every
//!   conf); the global `SHA256SUMS/SHA256SUMS`;
//! - a flat folder of those assets.
//!
//! Every manifest is checked against every file it names that the store holds before
//! anything else looks at an image: a release gate that boots a file whose bytes are not
//! the ones listed would pass or fail the wrong artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::build;
use crate::errors::BuildError;
use crate::naming;
use crate::sha256sums;
use crate::spec::Spec;

/// Why a store cannot be tested. Every variant names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{}: no extension images (NAME-VERSION-ARCH.raw) in it or in a folder per release tag; point at the folder `gh release download` filled, or build one with `sysext-test build --store`",
        dir.display()
    )]
    Empty { dir: PathBuf },
    #[error(
        "{}: digest mismatch: {}:{line} lists {expected}, the file's SHA-256 is {actual}; download the release again or regenerate the manifest",
        file.display(),
        manifest.display()
    )]
    DigestMismatch {
        file: PathBuf,
        manifest: PathBuf,
        line: usize,
        expected: String,
        actual: String,
    },
    #[error(
        "{}: listed in no SHA256SUMS of the store; the bakery lists every image (`sha256sum {name} >> SHA256SUMS` beside it)",
        file.display()
    )]
    Unlisted { file: PathBuf, name: String },
    #[error("{}:{line}: {message}; fix the manifest (lines are `<sha256>  <file>`)", manifest.display())]
    BadManifest {
        manifest: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{}: not named NAME-VERSION-ARCH.raw (ARCH x86-64 or arm64); rename it the bakery's way",
        file.display()
    )]
    Misnamed { file: PathBuf },
    #[error(
        "{} and {}: the same release file with different bytes; keep one",
        first.display(),
        second.display()
    )]
    Conflict { first: PathBuf, second: PathBuf },
    #[error("{}: building {arch}: {source}; the store is as it was", release.display())]
    Build {
        release: PathBuf,
        arch: Arch,
        source: BuildError,
    },
    #[error("{}: no arch to build; name one (--arch x86-64, arm64 or all)", release.display())]
    NoArch { release: PathBuf },
}

impl StoreError {
    fn io(path: &Path, error: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    /// True when the user's input is at fault (the spec), not the machine: the CLI's exit 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, StoreError::Build { source, .. } if source.is_usage())
    }
}

/// How the store is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// One folder per release tag (and metadata folders).
    PerTag,
    /// All assets in one folder.
    Flat,
}

/// One version of one extension, with its image for each arch the store holds.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    pub images: BTreeMap<Arch, PathBuf>,
}

/// One extension: its releases oldest first (systemd's version order) and its transfer
/// files (`NAME.conf`, `NAME-vMAJ.MIN.conf`), newest release's copy first.
#[derive(Debug, Clone)]
pub struct Extension {
    pub name: String,
    pub releases: Vec<Release>,
    pub confs: Vec<PathBuf>,
}

impl Extension {
    /// The generic transfer file `NAME.conf`, if the store has one: the one the update
    /// cycles install.
    pub fn conf(&self) -> Option<&Path> {
        in_use(&self.confs, &format!("{}.conf", self.name))
    }

    /// The transfer files published with release `version` (those in its tag's folder).
    pub fn confs_of(&self, version: &str) -> Vec<&Path> {
        self.confs
            .iter()
            .filter(|p| tag_version(p, &self.name) == version)
            .map(PathBuf::as_path)
            .collect()
    }

    /// Pairs of consecutive versions (older, newer) that both have an image for `arch`.
    pub fn updates(&self, arch: Arch) -> Vec<(&Release, &Release)> {
        let with_arch: Vec<&Release> = self
            .releases
            .iter()
            .filter(|r| r.images.contains_key(&arch))
            .collect();
        with_arch.windows(2).map(|w| (w[0], w[1])).collect()
    }
}

/// A verified store.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub shape: Shape,
    pub extensions: Vec<Extension>,
    /// Manifests read, and how many of their lines named a file the store holds.
    pub manifests: Vec<(PathBuf, usize)>,
}

impl Store {
    /// Every image, as (extension, release, arch, path).
    pub fn images(&self) -> impl Iterator<Item = (&Extension, &Release, Arch, &Path)> {
        self.extensions.iter().flat_map(|e| {
            e.releases
                .iter()
                .flat_map(move |r| r.images.iter().map(move |(a, p)| (e, r, *a, p.as_path())))
        })
    }
}

/// The store shape `dir` has, if any: a folder per release tag (some `T/` beside it holds
/// `T-ARCH.raw`, as `gh release download` fills a tag's folder), or a flat folder with a
/// `SHA256SUMS`.
///
/// Only a tag folder's own images count: a folder of build outputs per arch
/// (`target/fixtures-release/<fixture>/<arch>/`) holds images too, but under folders no
/// image is named after, and reading it as releases would invent tags.
pub fn detect(dir: &Path) -> Option<Shape> {
    let rd = std::fs::read_dir(dir).ok()?;
    let tagged = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .any(|p| p.is_dir() && is_release_tag(&p));
    if tagged {
        Some(Shape::PerTag)
    } else if dir.join("SHA256SUMS").is_file() {
        Some(Shape::Flat)
    } else {
        None
    }
}

/// Whether `dir` is a store with a folder per release tag.
///
/// A flat store cannot be told from one release directory (both are images beside a
/// `SHA256SUMS`), so it does not count here: lint reads it as a release directory, whose
/// broken digests are findings rather than a refusal. [`detect`] names both shapes.
pub fn looks_like_store(dir: &Path) -> bool {
    detect(dir) == Some(Shape::PerTag)
}

/// A folder `T/` holding `T-ARCH.raw`: a release tag's assets.
fn is_release_tag(folder: &Path) -> bool {
    let Some(tag) = folder.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    !hidden(&tag)
        && Arch::ALL
            .iter()
            .any(|a| folder.join(format!("{tag}-{a}.raw")).is_file())
}

/// Dot-names are ours in the making (a release being built, a replaced one being deleted,
/// a manifest being written): never part of what the store publishes.
fn hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// The folders a store's assets are in: the store itself, and for a per-tag store every
/// folder beside (tags and metadata), in name order.
fn folders(dir: &Path, shape: Shape) -> Result<Vec<PathBuf>, StoreError> {
    let mut folders = vec![dir.to_path_buf()];
    if shape == Shape::PerTag {
        let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut subdirs: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .filter(|e| !hidden(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        folders.extend(subdirs);
    }
    Ok(folders)
}

/// What a store holds, by file name, before any digest is read.
struct Scan {
    shape: Shape,
    /// Images by file name (a name may appear twice only with the same bytes).
    images: BTreeMap<String, PathBuf>,
    /// Folders that hold no image: metadata releases, whose names are extension names.
    metadata: Vec<String>,
    confs: Vec<PathBuf>,
    manifests: Vec<PathBuf>,
}

fn scan(dir: &Path) -> Result<Scan, StoreError> {
    // A missing or unreadable folder says so, rather than that it holds no images.
    std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    let shape = match detect(dir) {
        Some(shape) => shape,
        // Bakery-named images without a manifest: read flat, so the refusal says what is
        // missing (their lines) rather than that nothing is there.
        None if has_images(dir) => Shape::Flat,
        None => {
            return Err(StoreError::Empty {
                dir: dir.to_path_buf(),
            });
        }
    };
    let mut found = Scan {
        shape,
        images: BTreeMap::new(),
        metadata: Vec::new(),
        confs: Vec::new(),
        manifests: Vec::new(),
    };
    for folder in folders(dir, shape)? {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|e| StoreError::io(&folder, e))?
            .filter_map(Result::ok)
            .filter(|e| !hidden(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let mut holds_images = false;
        for path in entries {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == "SHA256SUMS" {
                found.manifests.push(path);
            } else if name.ends_with(".raw") {
                holds_images = true;
                if let Some(first) = found.images.get(&name) {
                    if digest(first)? != digest(&path)? {
                        return Err(StoreError::Conflict {
                            first: first.clone(),
                            second: path,
                        });
                    }
                    continue;
                }
                found.images.insert(name, path);
            } else if name.ends_with(".conf") {
                found.confs.push(path);
            }
        }
        if !holds_images && let Some(n) = folder.file_name() {
            found.metadata.push(n.to_string_lossy().into_owned());
        }
    }
    if found.images.is_empty() {
        return Err(StoreError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    Ok(found)
}

/// Extensions grouped by name and version from the images' file names (the metadata
/// folders tell names with dashes apart), and the first image whose name does not parse.
fn group(found: &Scan) -> (Vec<Extension>, Option<PathBuf>) {
    let mut misnamed = None;
    let mut by_name: BTreeMap<String, BTreeMap<String, BTreeMap<Arch, PathBuf>>> = BTreeMap::new();
    for (file, path) in &found.images {
        let Some(t) = naming::triple(file, &found.metadata) else {
            misnamed.get_or_insert_with(|| path.clone());
            continue;
        };
        by_name
            .entry(t.name)
            .or_default()
            .entry(t.version)
            .or_default()
            .insert(t.arch, path.clone());
    }
    let extensions = by_name
        .into_iter()
        .map(|(name, versions)| {
            let mut releases: Vec<Release> = versions
                .into_iter()
                .map(|(version, images)| Release { version, images })
                .collect();
            releases.sort_by(|a, b| crate::version::compare(&a.version, &b.version));
            let mut confs: Vec<PathBuf> = found
                .confs
                .iter()
                .filter(|p| conf_belongs(p, &name))
                .cloned()
                .collect();
            newest_first(&mut confs, &name);
            Extension {
                name,
                releases,
                confs,
            }
        })
        .collect();
    (extensions, misnamed)
}

/// Orders an extension's transfer files newest tag's copy first: a fork's fix to the conf
/// ships with a new release. Stable, so copies outside tag folders keep folder order.
fn newest_first(confs: &mut [PathBuf], name: &str) {
    confs.sort_by(|a, b| crate::version::compare(&tag_version(b, name), &tag_version(a, name)));
}

/// The copy of transfer file `file` the update cycles use, from an extension's transfer
/// files in [`newest_first`] order.
fn in_use<'a>(confs: &'a [PathBuf], file: &str) -> Option<&'a Path> {
    confs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == file))
        .map(PathBuf::as_path)
}

/// The file a manifest line names: the one beside the manifest; else, for a manifest that
/// lists what it does not hold (the metadata and global releases), the image of that name
/// anywhere in the store, or the copy of that transfer file the update cycles use. So a
/// conf the global manifest vouches for is checked as the conf that gets tested.
fn resolve(
    manifest: &Path,
    file: &str,
    images: &BTreeMap<String, PathBuf>,
    extensions: &[Extension],
) -> Option<PathBuf> {
    let beside = manifest.parent().map(|d| d.join(file))?;
    if beside.is_file() {
        return Some(beside);
    }
    if let Some(p) = images.get(file) {
        return Some(p.clone());
    }
    extensions
        .iter()
        .find_map(|e| in_use(&e.confs, file))
        .map(Path::to_path_buf)
}

fn read_manifest(manifest: &Path) -> Result<Vec<sha256sums::Entry>, StoreError> {
    let bytes = std::fs::read(manifest).map_err(|e| StoreError::io(manifest, e))?;
    let (entries, issues) = sha256sums::parse(&bytes);
    if let Some(issue) = issues.first() {
        return Err(StoreError::BadManifest {
            manifest: manifest.to_path_buf(),
            line: issue.line,
            message: issue.message.clone(),
        });
    }
    Ok(entries)
}

fn has_images(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !hidden(&n) && n.ends_with(".raw")
            })
        })
        .unwrap_or(false)
}

/// Reads the store at `dir` and verifies every digest its manifests list for files it
/// holds, images and transfer files alike. Nothing is trusted before this returns.
pub fn open(dir: &Path) -> Result<Store, StoreError> {
    let found = scan(dir)?;
    let (extensions, misnamed) = group(&found);

    // Every listed file the store holds must match; every image must be listed somewhere.
    let mut digests: BTreeMap<PathBuf, String> = BTreeMap::new();
    let mut listed: BTreeMap<String, ()> = BTreeMap::new();
    let mut checked = Vec::new();
    for manifest in &found.manifests {
        let mut count = 0;
        for entry in read_manifest(manifest)? {
            let Some(file) = resolve(manifest, &entry.file, &found.images, &extensions) else {
                continue;
            };
            let actual = match digests.get(&file) {
                Some(d) => d.clone(),
                None => {
                    let d = digest(&file)?;
                    digests.insert(file.clone(), d.clone());
                    d
                }
            };
            if !actual.eq_ignore_ascii_case(&entry.digest) {
                return Err(StoreError::DigestMismatch {
                    file,
                    manifest: manifest.clone(),
                    line: entry.line,
                    expected: entry.digest,
                    actual,
                });
            }
            listed.insert(entry.file, ());
            count += 1;
        }
        checked.push((manifest.clone(), count));
    }
    for (name, path) in &found.images {
        if !listed.contains_key(name) {
            return Err(StoreError::Unlisted {
                file: path.clone(),
                name: name.clone(),
            });
        }
    }
    if let Some(file) = misnamed {
        return Err(StoreError::Misnamed { file });
    }
    Ok(Store {
        root: dir.to_path_buf(),
        shape: found.shape,
        extensions,
        manifests: checked,
    })
}

/// The transfer file in `folder`, a release tag of a per-tag store, that the store's update
/// cycles install for its extension ([`Extension::conf`]), when no manifest of the store
/// lists it: [`open`] then has nothing to check it against, and the gate tests it as found.
/// `None` for every other folder, so each store reports it once.
///
/// Reads file names and manifests, no digest: meant for after [`open`] verified the store.
pub fn unlisted_transfer(folder: &Path) -> Result<Option<PathBuf>, StoreError> {
    let (Some(root), Some(tag)) = (
        folder.parent(),
        folder.file_name().map(|n| n.to_string_lossy().into_owned()),
    ) else {
        return Ok(None);
    };
    // A release tag makes the folder it is in a store with a folder per tag.
    if !is_release_tag(folder) {
        return Ok(None);
    }
    let rd = std::fs::read_dir(folder).map_err(|e| StoreError::io(folder, e))?;
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".conf").map(str::to_string))
        .filter(|stem| tag.starts_with(&format!("{stem}-")))
        .collect();
    names.sort();
    let all = folders(root, Shape::PerTag)?;
    for name in names {
        let file = format!("{name}.conf");
        let here = folder.join(&file);
        // Cheap first: only the tag whose copy is in use reads the manifests.
        let mut copies: Vec<PathBuf> = all
            .iter()
            .map(|f| f.join(&file))
            .filter(|p| p.is_file())
            .collect();
        newest_first(&mut copies, &name);
        if in_use(&copies, &file) != Some(here.as_path()) {
            continue;
        }
        let found = scan(root)?;
        let (extensions, _) = group(&found);
        let mut listed = false;
        for manifest in &found.manifests {
            listed |= read_manifest(manifest)?.iter().any(|entry| {
                resolve(manifest, &entry.file, &found.images, &extensions).as_deref()
                    == Some(here.as_path())
            });
        }
        if !listed {
            return Ok(Some(here));
        }
    }
    Ok(None)
}

/// What [`build_release`] put into the store.
#[derive(Debug, Clone)]
pub struct BuiltRelease {
    /// The release tag's folder, `ROOT/NAME-VERSION/`.
    pub dir: PathBuf,
    /// One per arch, in the order built, with paths inside [`BuiltRelease::dir`].
    pub images: Vec<BuiltImage>,
    /// Whether a release of that version was there before and was replaced whole.
    pub replaced: bool,
    /// The replaced release, moved aside under a dot-name (which [`open`] skips), when it
    /// could not be deleted; the new release is in place all the same.
    pub left_behind: Option<PathBuf>,
}

/// One arch's image of a [`BuiltRelease`].
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub output: build::Output,
    /// How long its build took, for the CLI's progress lines.
    pub took: std::time::Duration,
}

/// Builds `spec` for every arch in `arches` into the store at `root` as the release tag
/// `NAME-VERSION/`, then records it in the metadata and global manifests, all or nothing.
///
/// A release folder with one arch's image and not the other's is what a store must never
/// hold: the gate would test half a release, and a rebuild would mix old and new bytes.
/// So every arch is built into a dot-named folder beside the release (same filesystem),
/// and only once all are done is that folder renamed into place and are the manifests
/// (each written to a temp file and renamed) updated; a failure before that leaves the
/// store as it was, and a failure while committing puts the previous state back. A
/// version already in the store is replaced whole: its folder, and its images' lines in
/// the metadata and global manifests. `opts.arch` is ignored (each of `arches` is built).
pub fn build_release(
    root: &Path,
    spec: &Spec,
    spec_dir: &Path,
    arches: &[Arch],
    opts: &build::Options,
) -> Result<BuiltRelease, StoreError> {
    build_release_with(root, spec, arches, |arch, dir| {
        build_arch(spec, spec_dir, dir, arch, opts)
    })
}

/// One arch of a release, into `dir`.
fn build_arch(
    spec: &Spec,
    spec_dir: &Path,
    dir: &Path,
    arch: Arch,
    opts: &build::Options,
) -> Result<build::Output, BuildError> {
    let opts = build::Options {
        arch: Some(arch),
        ..opts.clone()
    };
    build::build_spec(spec, spec_dir, dir, &opts)
}

/// [`build_release`] with the per-arch build given, so a test can make one arch fail.
fn build_release_with(
    root: &Path,
    spec: &Spec,
    arches: &[Arch],
    mut build_one: impl FnMut(Arch, &Path) -> Result<build::Output, BuildError>,
) -> Result<BuiltRelease, StoreError> {
    let tag = format!("{}-{}", spec.name, spec.version);
    let dir = root.join(&tag);
    if arches.is_empty() {
        return Err(StoreError::NoArch { release: dir });
    }
    let created_root = !root.exists();
    std::fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
    let result = stage_and_commit(root, spec, arches, &tag, &dir, &mut build_one);
    if result.is_err() && created_root {
        // Only empty: whatever else is there now is not ours to delete.
        let _ = std::fs::remove_dir(root);
    }
    result
}

fn stage_and_commit(
    root: &Path,
    spec: &Spec,
    arches: &[Arch],
    tag: &str,
    dir: &Path,
    build_one: &mut impl FnMut(Arch, &Path) -> Result<build::Output, BuildError>,
) -> Result<BuiltRelease, StoreError> {
    // Removed on every early return.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{tag}."))
        .tempdir_in(root)
        .map_err(|e| StoreError::io(root, e))?;
    let mut images = Vec::new();
    let mut seen = Vec::new();
    for &arch in arches {
        if seen.contains(&arch) {
            continue;
        }
        seen.push(arch);
        let started = std::time::Instant::now();
        let output = build_one(arch, staging.path()).map_err(|source| StoreError::Build {
            release: dir.to_path_buf(),
            arch,
            source,
        })?;
        images.push(BuiltImage {
            output,
            took: started.elapsed(),
        });
    }
    // Temp folders are 0700; a release is read by web servers and guests.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| StoreError::io(staging.path(), e))?;
    }

    // The lines the release had, so a rebuild leaves none of them behind: every image its
    // folder holds and the names any arch's image would have.
    let mut stale: Vec<String> = Arch::ALL.iter().map(|a| spec.file_name(*a)).collect();
    let replaced = dir.is_dir();
    if replaced {
        let rd = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
        stale.extend(
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".raw")),
        );
    }
    // Every manifest is read and changed in memory first: a broken one stops us here.
    let record = Record::plan(root, &spec.name, staging.path(), &stale)?;

    let mut aside = staging.path().as_os_str().to_owned();
    aside.push(".replaced");
    let aside = PathBuf::from(aside);
    if replaced {
        std::fs::rename(dir, &aside).map_err(|e| StoreError::io(dir, e))?;
    }
    let put_back = |error: StoreError| {
        if replaced {
            let _ = std::fs::rename(&aside, dir);
        }
        error
    };
    std::fs::rename(staging.path(), dir).map_err(|e| put_back(StoreError::io(dir, e)))?;
    // In place now: nothing left for the guard to remove.
    let staged = staging.keep();
    if let Err(e) = record.apply() {
        let _ = std::fs::rename(dir, &staged);
        let _ = std::fs::remove_dir_all(&staged);
        return Err(put_back(e));
    }
    let left_behind = (replaced && std::fs::remove_dir_all(&aside).is_err()).then_some(aside);
    for image in &mut images {
        let o = &mut image.output;
        for path in [&mut o.image, &mut o.sha256sums, &mut o.transfer] {
            if let Some(name) = path.file_name() {
                *path = dir.join(name);
            }
        }
    }
    Ok(BuiltRelease {
        dir: dir.to_path_buf(),
        images,
        replaced,
        left_behind,
    })
}

/// The files recording a release changes, with their new bytes: the metadata release's
/// transfer files, then its `SHA256SUMS`, then the global one.
struct Record {
    writes: Vec<(PathBuf, Vec<u8>)>,
}

impl Record {
    /// Reads the release's `SHA256SUMS` and the store's two manifests and computes their
    /// new text: lines for the files in `stale` go, the release's lines come in.
    fn plan(
        root: &Path,
        name: &str,
        release_dir: &Path,
        stale: &[String],
    ) -> Result<Record, StoreError> {
        let entries = read_manifest(&release_dir.join("SHA256SUMS"))?;
        let meta = root.join(name);
        let mut writes = Vec::new();
        let rd = std::fs::read_dir(release_dir).map_err(|e| StoreError::io(release_dir, e))?;
        let mut confs: Vec<String> = rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf") && !hidden(n))
            .collect();
        confs.sort();
        for conf in confs {
            let bytes = std::fs::read(release_dir.join(&conf))
                .map_err(|e| StoreError::io(&release_dir.join(&conf), e))?;
            writes.push((meta.join(conf), bytes));
        }
        for manifest in [meta.join("SHA256SUMS"), root.join("SHA256SUMS/SHA256SUMS")] {
            let mut lines: BTreeMap<String, String> = if manifest.is_file() {
                read_manifest(&manifest)?
                    .into_iter()
                    .map(|e| (e.file, e.digest))
                    .collect()
            } else {
                BTreeMap::new()
            };
            for file in stale {
                lines.remove(file);
            }
            for e in &entries {
                lines.insert(e.file.clone(), e.digest.clone());
            }
            writes.push((manifest, sha256sums::render(&lines).into_bytes()));
        }
        Ok(Record { writes })
    }

    /// Writes every file (each temp file, then rename); on a failure, puts back what was
    /// written before it, so the store is left as it was.
    fn apply(&self) -> Result<(), StoreError> {
        let mut undo: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
        let mut made: Vec<PathBuf> = Vec::new();
        let mut step = |path: &Path, bytes: &[u8]| -> Result<(), StoreError> {
            let parent = path.parent().unwrap_or(Path::new("."));
            if !parent.is_dir() {
                std::fs::create_dir(parent).map_err(|e| StoreError::io(parent, e))?;
                made.push(parent.to_path_buf());
            }
            let before = match std::fs::read(path) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(StoreError::io(path, e)),
            };
            crate::atomic::write_bytes(path, bytes).map_err(|e| StoreError::io(path, e))?;
            undo.push((path.to_path_buf(), before));
            Ok(())
        };
        let mut failed = None;
        for (path, bytes) in &self.writes {
            if let Err(e) = step(path, bytes) {
                failed = Some(e);
                break;
            }
        }
        let Some(error) = failed else {
            return Ok(());
        };
        for (path, before) in undo.into_iter().rev() {
            let _ = match before {
                Some(bytes) => crate::atomic::write_bytes(&path, &bytes),
                None => std::fs::remove_file(&path),
            };
        }
        for dir in made.into_iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        Err(error)
    }
}

/// Records a release directory already in the store at `root` (`root/NAME-VERSION/` with
/// its images, `SHA256SUMS` and transfer files) the way the bakery's `release_meta.sh`
/// does: its lines go into the metadata release's `NAME/SHA256SUMS` and the global
/// `SHA256SUMS/SHA256SUMS`, its transfer files into `NAME/`. Each file is replaced whole.
///
/// Nothing makes the folder itself whole; [`build_release`] builds a release and records it
/// all or nothing.
pub fn add_release(root: &Path, name: &str, release_dir: &Path) -> Result<(), StoreError> {
    Record::plan(root, name, release_dir, &[])?.apply()
}

fn digest(path: &Path) -> Result<String, StoreError> {
    sha256sums::digest_file(path).map_err(|e| StoreError::io(path, e))
}

/// `NAME.conf` or `NAME-vMAJ.MIN.conf` (and nothing of an extension whose name merely
/// starts with NAME, such as `docker-compose.conf` for docker).
fn conf_belongs(path: &Path, name: &str) -> bool {
    let Some(file) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    let Some(stem) = file.strip_suffix(".conf") else {
        return false;
    };
    stem == name
        || stem
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix("-v"))
            .is_some_and(|r| r.chars().next().is_some_and(|c| c.is_ascii_digit()))
}

/// The version of the tag folder a conf sits in (`NAME-VERSION/`), or "" elsewhere.
fn tag_version(path: &Path, name: &str) -> String {
    path.parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| n.strip_prefix(&format!("{name}-")).map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn sums(dir: &Path, files: &[(&str, &[u8])]) {
        let mut m = BTreeMap::new();
        for (f, b) in files {
            use sha2::Digest;
            m.insert(f.to_string(), hex::encode(sha2::Sha256::digest(b)));
        }
        let path = dir.join("SHA256SUMS");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&sha256sums::render(&m));
        write(&path, text.as_bytes());
    }

    /// Two releases of docker-compose and one of docker, both arches, laid out per tag with
    /// the metadata and global manifests, as the bakery publishes them.
    fn per_tag_store(root: &Path) {
        let mut all = Vec::new();
        for (name, version) in [
            ("docker-compose", "2.34.0"),
            ("docker-compose", "2.4.1"),
            ("docker", "28.0.4"),
        ] {
            let tag = root.join(format!("{name}-{version}"));
            let mut files = Vec::new();
            for arch in ["x86-64", "arm64"] {
                let file = format!("{name}-{version}-{arch}.raw");
                let bytes = format!("{file} bytes").into_bytes();
                write(&tag.join(&file), &bytes);
                files.push((file, bytes));
            }
            write(&tag.join(format!("{name}.conf")), b"[Transfer]\n");
            let refs: Vec<(&str, &[u8])> = files
                .iter()
                .map(|(f, b)| (f.as_str(), b.as_slice()))
                .collect();
            sums(&tag, &refs);
            sums(&root.join(name), &refs);
            all.extend(files);
        }
        let refs: Vec<(&str, &[u8])> = all
            .iter()
            .map(|(f, b)| (f.as_str(), b.as_slice()))
            .collect();
        sums(&root.join("SHA256SUMS"), &refs);
    }

    #[test]
    fn a_per_tag_store_groups_releases_in_version_order() {
        let tmp = tempfile::tempdir().unwrap();
        per_tag_store(tmp.path());
        assert!(looks_like_store(tmp.path()));
        let store = open(tmp.path()).unwrap();
        assert_eq!(store.shape, Shape::PerTag);
        let names: Vec<&str> = store.extensions.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["docker", "docker-compose"]);
        let compose = &store.extensions[1];
        let versions: Vec<&str> = compose
            .releases
            .iter()
            .map(|r| r.version.as_str())
            .collect();
        assert_eq!(versions, ["2.4.1", "2.34.0"]);
        assert_eq!(compose.updates(Arch::Arm64).len(), 1);
        assert_eq!(store.images().count(), 6);
        // docker's conf is not docker-compose's.
        assert_eq!(store.extensions[0].confs.len(), 1);
        assert!(store.extensions[0].conf().is_some());
        // tag, metadata and global manifests were all read.
        assert_eq!(store.manifests.len(), 3 + 2 + 1);
        assert!(store.manifests.iter().all(|(_, n)| *n > 0));
    }

    #[test]
    fn releases_added_one_by_one_make_a_store_that_opens() {
        let tmp = tempfile::tempdir().unwrap();
        for version in ["1.0", "1.1"] {
            let dir = tmp.path().join(format!("hello-{version}"));
            for arch in ["x86-64", "arm64"] {
                let f = format!("hello-{version}-{arch}.raw");
                write(&dir.join(&f), f.as_bytes());
                sums(&dir, &[(&f, f.as_bytes())]);
            }
            write(&dir.join("hello.conf"), b"[Transfer]\n");
            add_release(tmp.path(), "hello", &dir).unwrap();
        }
        let global = std::fs::read_to_string(tmp.path().join("SHA256SUMS/SHA256SUMS")).unwrap();
        assert_eq!(global.lines().count(), 4);
        assert!(tmp.path().join("hello/hello.conf").is_file());
        let store = open(tmp.path()).unwrap();
        assert_eq!(store.extensions[0].releases.len(), 2);
        assert_eq!(store.extensions[0].updates(Arch::X86_64).len(), 1);
    }

    #[test]
    fn a_flipped_digest_names_the_file_and_both_digests() {
        let tmp = tempfile::tempdir().unwrap();
        per_tag_store(tmp.path());
        let victim = tmp.path().join("docker-28.0.4/docker-28.0.4-arm64.raw");
        let before = sha256sums::digest_file(&victim).unwrap();
        write(&victim, b"tampered");
        let err = open(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{msg}");
        assert!(msg.contains("docker-28.0.4-arm64.raw"), "{msg}");
        assert!(msg.contains(&before), "{msg}");
        assert!(
            msg.contains(&sha256sums::digest_file(&victim).unwrap()),
            "{msg}"
        );
    }

    #[test]
    fn a_flat_folder_of_assets_is_a_store_too() {
        let tmp = tempfile::tempdir().unwrap();
        let a = b"one".as_slice();
        let b = b"two".as_slice();
        write(&tmp.path().join("tailscale-v1.80.0-x86-64.raw"), a);
        write(&tmp.path().join("tailscale-v1.82.0-x86-64.raw"), b);
        sums(
            tmp.path(),
            &[
                ("tailscale-v1.80.0-x86-64.raw", a),
                ("tailscale-v1.82.0-x86-64.raw", b),
            ],
        );
        let store = open(tmp.path()).unwrap();
        assert_eq!(store.shape, Shape::Flat);
        assert_eq!(store.extensions[0].updates(Arch::X86_64).len(), 1);
        assert!(store.extensions[0].updates(Arch::Arm64).is_empty());
    }

    #[rstest::rstest]
    #[case::empty(&[], "no extension images")]
    #[case::unlisted(&[("docker-1.0-x86-64.raw", false)], "listed in no SHA256SUMS")]
    #[case::misnamed(&[("docker.raw", true)], "not named NAME-VERSION-ARCH.raw")]
    fn a_store_that_cannot_be_trusted_is_refused(
        #[case] files: &[(&str, bool)],
        #[case] words: &str,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        for (f, list) in files {
            write(&tmp.path().join(f), b"x");
            if *list {
                sums(tmp.path(), &[(f, b"x")]);
            }
        }
        let msg = open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains(words), "{msg}");
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
    }

    #[test]
    fn a_broken_manifest_line_is_refused_with_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("docker-1.0-x86-64.raw"), b"x");
        write(
            &tmp.path().join("SHA256SUMS"),
            b"nonsense  docker-1.0-x86-64.raw\n",
        );
        let msg = open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("SHA256SUMS:1"), "{msg}");
    }

    /// Every file and folder under `root` with its SHA-256, dot-names included: what "the
    /// store as it was" means.
    fn tree(root: &Path) -> BTreeMap<PathBuf, Option<String>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(dir) = todo.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.map(Result::unwrap) {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                if p.is_dir() {
                    out.insert(rel, None);
                    todo.push(p);
                } else {
                    out.insert(rel, Some(sha256sums::digest_file(&p).unwrap()));
                }
            }
        }
        out
    }

    /// A spec for `hello` at `version`, with one text file, in its own folder.
    fn spec(dir: &Path, version: &str) -> Spec {
        let path = dir.join(format!("hello-{version}.toml"));
        write(
            &path,
            format!(
                "name = \"hello\"\nversion = \"{version}\"\n[[file]]\npath = \"/usr/share/hello/v\"\ntext = \"{version}\"\n"
            )
            .as_bytes(),
        );
        Spec::load(&path).unwrap()
    }

    fn build(root: &Path, spec_dir: &Path, version: &str, arches: &[Arch]) -> BuiltRelease {
        let spec = spec(spec_dir, version);
        build_release(root, &spec, spec_dir, arches, &build::Options::default()).unwrap()
    }

    /// Builds x86-64 for real and fails arm64 as a missing package or a full disk would.
    fn build_failing_arm64(root: &Path, spec_dir: &Path, version: &str) -> StoreError {
        let spec = spec(spec_dir, version);
        build_release_with(root, &spec, &Arch::ALL, |arch, dir| match arch {
            Arch::Arm64 => Err(BuildError::Fetch("arm64 package not found".into())),
            _ => build_arch(&spec, spec_dir, dir, arch, &build::Options::default()),
        })
        .unwrap_err()
    }

    #[test]
    fn a_release_whose_second_arch_fails_leaves_the_store_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        build(&root, tmp.path(), "1.0", &Arch::ALL);
        let before = tree(&root);

        // A new version, and a rebuild of the one there: neither leaves a trace.
        for version in ["2.0", "1.0"] {
            let err = build_failing_arm64(&root, tmp.path(), version);
            let msg = err.to_string();
            assert!(
                matches!(
                    err,
                    StoreError::Build {
                        arch: Arch::Arm64,
                        ..
                    }
                ),
                "{msg}"
            );
            assert!(msg.contains(&format!("hello-{version}")), "{msg}");
            assert!(msg.contains("the store is as it was"), "{msg}");
            assert_eq!(tree(&root), before, "after the failed build of {version}");
        }
        open(&root).unwrap();
    }

    #[test]
    fn a_failed_first_release_does_not_even_leave_the_store_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        build_failing_arm64(&root, tmp.path(), "1.0");
        assert!(!root.exists());
    }

    #[test]
    fn a_broken_manifest_in_the_store_stops_the_build_before_anything_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        build(&root, tmp.path(), "1.0", &Arch::ALL);
        write(&root.join("hello/SHA256SUMS"), b"garbage\n");
        let before = tree(&root);
        let err = build_release(
            &root,
            &spec(tmp.path(), "2.0"),
            tmp.path(),
            &Arch::ALL,
            &build::Options::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("hello/SHA256SUMS:1"), "{err}");
        assert_eq!(tree(&root), before);
    }

    #[test]
    fn a_store_built_release_by_release_opens_with_both_arches_of_each() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        for version in ["1.0", "1.1"] {
            let built = build(&root, tmp.path(), version, &Arch::ALL);
            assert_eq!(built.dir, root.join(format!("hello-{version}")));
            assert!(!built.replaced);
            for image in &built.images {
                assert!(image.output.image.starts_with(&built.dir));
                assert!(image.output.image.is_file());
            }
        }
        let mode = std::fs::metadata(root.join("hello-1.0")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o755);
        let store = open(&root).unwrap();
        assert_eq!(store.shape, Shape::PerTag);
        assert_eq!(store.extensions[0].updates(Arch::Arm64).len(), 1);
        assert!(store.extensions[0].conf().is_some());
        assert!(
            tree(&root)
                .keys()
                .all(|p| !p.to_string_lossy().contains("/."))
        );
    }

    #[test]
    fn rebuilding_a_version_replaces_it_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        build(&root, tmp.path(), "1.0", &Arch::ALL);
        write(&root.join("hello-1.0/stale.txt"), b"from the first build");
        let built = build(&root, tmp.path(), "1.0", &[Arch::X86_64]);
        assert!(built.replaced);
        assert!(built.left_behind.is_none());
        let files: Vec<String> = std::fs::read_dir(root.join("hello-1.0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !files
                .iter()
                .any(|f| f == "stale.txt" || f.contains("arm64")),
            "{files:?}"
        );
        for manifest in [
            "hello-1.0/SHA256SUMS",
            "hello/SHA256SUMS",
            "SHA256SUMS/SHA256SUMS",
        ] {
            let text = std::fs::read_to_string(root.join(manifest)).unwrap();
            assert_eq!(text.lines().count(), 1, "{manifest}: {text}");
            assert!(text.contains("hello-1.0-x86-64.raw"), "{manifest}: {text}");
        }
        let store = open(&root).unwrap();
        assert_eq!(store.images().count(), 1);
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    /// `sysext-test check` writes `<fixture>/<arch>/` release directories: images under
    /// folders no image is named after, so neither level is a store with a folder per tag.
    #[test]
    fn build_outputs_per_fixture_and_arch_are_not_a_store() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("fixtures-release");
        for arch in ["x86-64", "arm64"] {
            let dir = out.join("hello").join(arch);
            let f = format!("hello-1.0-{arch}.raw");
            write(&dir.join(&f), f.as_bytes());
            sums(&dir, &[(&f, f.as_bytes())]);
            write(&dir.join("hello.conf"), b"[Transfer]\n");
        }
        for dir in [out.clone(), out.join("hello")] {
            assert!(!looks_like_store(&dir), "{}", dir.display());
            assert_eq!(detect(&dir), None, "{}", dir.display());
            assert!(
                matches!(open(&dir), Err(StoreError::Empty { .. })),
                "{}",
                dir.display()
            );
        }
        // Each arch's folder is one release directory: a flat store, not one per tag.
        let one = out.join("hello/x86-64");
        assert_eq!(detect(&one), Some(Shape::Flat));
        assert!(!looks_like_store(&one));
        assert_eq!(open(&one).unwrap().images().count(), 1);
    }

    #[test]
    fn a_folder_named_after_its_images_makes_a_store_per_tag() {
        let tmp = tempfile::tempdir().unwrap();
        per_tag_store(tmp.path());
        assert_eq!(detect(tmp.path()), Some(Shape::PerTag));
        // A tag folder's own images, not just any images in a folder.
        let other = tempfile::tempdir().unwrap();
        write(
            &other.path().join("docker-28.0/docker-28.0.4-x86-64.raw"),
            b"x",
        );
        assert_eq!(detect(other.path()), None);
    }

    /// A transfer file listed in a manifest that does not hold it (the metadata release
    /// without its copy, the global manifest) is checked as the copy the update cycles use.
    #[test]
    fn a_conf_whose_bytes_differ_from_its_manifest_line_stops_open() {
        let tmp = tempfile::tempdir().unwrap();
        per_tag_store(tmp.path());
        let conf = tmp.path().join("docker-28.0.4/docker.conf");
        sums(
            &tmp.path().join("docker"),
            &[("docker.conf", b"[Transfer]\n")],
        );
        open(tmp.path()).unwrap();
        write(&conf, b"[Transfer]\nVerify=no\n");
        let err = open(tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{msg}");
        assert!(msg.starts_with(&conf.display().to_string()), "{msg}");
        assert!(msg.contains("docker/SHA256SUMS:"), "{msg}");
        assert!(
            msg.contains(&sha256sums::digest_file(&conf).unwrap()),
            "{msg}"
        );
        assert!(msg.contains("regenerate the manifest"), "{msg}");
        assert_eq!(msg.lines().count(), 1);
    }

    #[test]
    fn a_conf_listed_beside_it_is_checked_too() {
        let tmp = tempfile::tempdir().unwrap();
        per_tag_store(tmp.path());
        let tag = tmp.path().join("docker-28.0.4");
        sums(&tag, &[("docker.conf", b"[Transfer]\n")]);
        open(tmp.path()).unwrap();
        write(&tag.join("docker.conf"), b"[Transfer]\nVerify=no\n");
        assert!(matches!(
            open(tmp.path()),
            Err(StoreError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn the_conf_the_cycles_use_is_reported_unlisted_once_until_a_manifest_lists_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        per_tag_store(root);
        let store = open(root).unwrap();
        let compose = &store.extensions[1];
        let in_use = compose.conf().unwrap().to_path_buf();
        assert_eq!(
            in_use,
            root.join("docker-compose-2.34.0/docker-compose.conf")
        );
        // As the bakery publishes: manifests list images only. Reported on the newest tag.
        assert_eq!(
            unlisted_transfer(&root.join("docker-compose-2.34.0")).unwrap(),
            Some(in_use.clone())
        );
        assert_eq!(
            unlisted_transfer(&root.join("docker-compose-2.4.1")).unwrap(),
            None
        );
        assert_eq!(
            unlisted_transfer(&root.join("docker-compose")).unwrap(),
            None
        );
        // The metadata release's own copy, listed beside it, is another file.
        let bytes = b"[Transfer]\n";
        write(&root.join("docker-compose/docker-compose.conf"), bytes);
        sums(
            &root.join("docker-compose"),
            &[("docker-compose.conf", bytes)],
        );
        open(root).unwrap();
        assert_eq!(
            unlisted_transfer(&root.join("docker-compose-2.34.0")).unwrap(),
            Some(in_use.clone())
        );
        // The global manifest names it without holding it: that line is the in-use copy's.
        sums(&root.join("SHA256SUMS"), &[("docker-compose.conf", bytes)]);
        open(root).unwrap();
        assert_eq!(
            unlisted_transfer(&root.join("docker-compose-2.34.0")).unwrap(),
            None
        );
        // docker's conf is still nobody's line.
        assert!(
            unlisted_transfer(&root.join("docker-28.0.4"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_release_dir_recorded_in_the_store_keeps_the_other_releases_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        build(&root, tmp.path(), "1.0", &Arch::ALL);
        let dir = root.join("hello-1.1");
        let f = "hello-1.1-x86-64.raw";
        write(&dir.join(f), f.as_bytes());
        sums(&dir, &[(f, f.as_bytes())]);
        add_release(&root, "hello", &dir).unwrap();
        let global = std::fs::read_to_string(root.join("SHA256SUMS/SHA256SUMS")).unwrap();
        assert_eq!(global.lines().count(), 3, "{global}");
    }

    #[rstest::rstest]
    #[case("kubernetes-v1.32.conf", "kubernetes", true)]
    #[case("kubernetes.conf", "kubernetes", true)]
    #[case("docker-compose.conf", "docker", false)]
    #[case("docker-buildx.conf", "docker", false)]
    fn confs_belong_to_their_extension_only(
        #[case] file: &str,
        #[case] name: &str,
        #[case] belongs: bool,
    ) {
        assert_eq!(conf_belongs(Path::new(file), name), belongs);
    }
}
