//! Static checks of extension images against the Extension Image rules: no VM, milliseconds.
//!
//! [`Linter::lint_path`] takes what a user points us at (an image file, a directory image, or
//! a bakery release directory) and returns one report per image plus one for the release
//! directory's own files. Findings say what systemd will do and how to fix it.

pub mod context;
pub mod deployment;
pub mod effects;
pub mod finding;
pub mod gates;
pub mod rules;
pub mod target;
pub mod together;

use std::path::{Path, PathBuf};

use serde::Serialize;
use sysext_builder::Arch;
use sysext_builder::errors::ImageError;
use sysext_builder::image::Image;
use sysext_builder::osrelease::OsRelease;

use context::Context;
pub use finding::{Finding, Rule, Severity};
use rules::image::UNREADABLE;
use rules::{binaries, content, matching, naming, release_dir, release_file, served, units};
pub use target::{Accounts, SystemdRange, Target, TargetKind, TargetSpec};

/// Problems that stop lint from checking at all (as opposed to findings): exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Environment(ImageError),
    /// A release store whose digests or names cannot be trusted (or that holds nothing).
    #[error(transparent)]
    Store(#[from] sysext_builder::store::StoreError),
    /// A directory with nothing to check: a pass here would be a false green.
    #[error(
        "{}: no extension images (.raw) in it; pass an image, a release directory or a store with a folder per release tag",
        path.display()
    )]
    NothingToCheck { path: PathBuf },
}

/// What a report is about: one image, or a release directory as a whole (SHA256SUMS,
/// transfer files, what its mirror would serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    Image,
    ReleaseDir,
    /// Several extensions as one host merges them (collisions between them).
    Together,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub path: String,
    /// The image name systemd will use, when the file is an image.
    pub name: Option<String>,
    pub kind: ReportKind,
    pub format: Option<&'static str>,
    pub findings: Vec<Finding>,
}

impl ImageReport {
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `flatcar`, `flatcar:stable`, `flatcar:4593.2.5` or `generic`.
    pub target: TargetSpec,
    /// The target's systemd major version, when the user knows it (`--systemd`).
    pub systemd: Option<u32>,
    pub host_os_release: Option<OsRelease>,
    /// The host's own users and groups (`--host-passwd`, `--host-group`).
    pub host_accounts: Option<Accounts>,
    /// Whether the host's `/usr/sbin` is a symlink to `bin`, when it is known.
    pub host_sbin_merged: Option<bool>,
    pub arch: Option<Arch>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: TargetSpec {
                kind: TargetKind::Flatcar,
                version: None,
            },
            systemd: None,
            host_os_release: None,
            host_accounts: None,
            host_sbin_merged: None,
            arch: None,
        }
    }
}

pub struct Linter {
    target: Target,
    host: OsRelease,
    arch: Option<Arch>,
}

impl Linter {
    pub fn new(opts: Options) -> Linter {
        let mut target = Target::from_spec(&opts.target, opts.systemd);
        if let Some(a) = opts.host_accounts {
            target.accounts = a;
        }
        if let Some(merged) = opts.host_sbin_merged {
            target.sbin_merged = merged;
            target.sbin_known = true;
        }
        let host = opts
            .host_os_release
            .unwrap_or_else(|| target.os_release.clone());
        Linter {
            target,
            host,
            arch: opts.arch,
        }
    }

    /// Lints an image file, a directory image, or a release directory.
    pub fn lint_path(&self, path: &Path) -> Result<Vec<ImageReport>, LintError> {
        let meta = std::fs::metadata(path).map_err(|source| LintError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() && sysext_builder::store::looks_like_store(path) {
            return self.lint_store(path);
        }
        if meta.is_dir() && is_release_dir(path) {
            let reports = self.lint_release_dir(path)?;
            if !reports.iter().any(|r| r.kind == ReportKind::Image) {
                return Err(LintError::NothingToCheck {
                    path: path.to_path_buf(),
                });
            }
            return Ok(reports);
        }
        // A folder of release directories (`check`'s `<fixture>/<arch>/` outputs, or a
        // folder of those): each one as a release directory, never the whole as one image.
        if meta.is_dir() && !is_directory_image(path) {
            let dirs = release_dirs_below(path, 2);
            if dirs.is_empty() {
                return Err(LintError::NothingToCheck {
                    path: path.to_path_buf(),
                });
            }
            let mut reports = Vec::new();
            for d in dirs {
                reports.extend(self.lint_release_dir(&d)?);
            }
            return Ok(reports);
        }
        Ok(vec![self.lint_image(path)?.0])
    }

    /// A bakery release store: digests verified first (a mismatch is an error, not a
    /// finding: nothing in it can be trusted), then each release tag's folder as a release
    /// directory.
    fn lint_store(&self, dir: &Path) -> Result<Vec<ImageReport>, LintError> {
        let store = sysext_builder::store::open(dir)?;
        let mut folders: Vec<PathBuf> = store
            .images()
            .filter_map(|(_, _, _, p)| p.parent().map(Path::to_path_buf))
            .collect();
        folders.sort();
        folders.dedup();
        let mut reports = Vec::new();
        for folder in folders {
            reports.extend(self.lint_release_dir(&folder)?);
        }
        Ok(reports)
    }

    fn lint_release_dir(&self, dir: &Path) -> Result<Vec<ImageReport>, LintError> {
        let io = |source| LintError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut images: Vec<String> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".raw"))
            .collect();
        images.sort();
        let mut reports = Vec::new();
        let mut release_names = Vec::new();
        for img in &images {
            let (report, release) = self.lint_image(&dir.join(img))?;
            if let Some(name) = release {
                release_names.push((img.clone(), name));
            }
            reports.push(report);
        }
        let rd = release_dir::ReleaseDir {
            dir,
            images,
            release_names,
        };
        reports.push(ImageReport {
            path: dir.display().to_string(),
            name: None,
            kind: ReportKind::ReleaseDir,
            format: None,
            findings: self.finish({
                let mut f = release_dir::check(&rd);
                f.extend(naming::check_version_order(
                    &rd.images,
                    &rd.release_names
                        .iter()
                        .map(|(_, n)| n.clone())
                        .collect::<Vec<_>>(),
                ));
                f.extend(served::check(dir, &release_dir::transfer_files(dir)));
                f
            }),
        });
        Ok(reports)
    }

    /// Lints one image; also returns its release name for the release-directory checks.
    pub fn lint_image(&self, path: &Path) -> Result<(ImageReport, Option<String>), LintError> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let is_dir = path.is_dir();
        let mut findings = naming::check_file_name(&file_name, is_dir);
        let mut report = ImageReport {
            path: path.display().to_string(),
            name: None,
            kind: ReportKind::Image,
            format: None,
            findings: Vec::new(),
        };
        let image = match Image::open(path) {
            Ok(i) => i,
            Err(e) if e.is_environment() => return Err(LintError::Environment(e)),
            Err(e) => {
                findings.push(Finding::new(
                    &UNREADABLE,
                    "",
                    format!("{e}; systemd refuses such a file and, with it, merges no extension at all. Rebuild the image"),
                ));
                report.findings = self.finish(findings);
                return Ok((report, None));
            }
        };
        report.format = Some(image.format.name());
        let names = release_file::candidate_names(&image);
        let triple = if is_dir {
            None
        } else {
            naming::triple(&file_name, &names)
        };
        let image_name = triple
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_else(|| naming::image_name(&file_name, is_dir));
        let (release, f) = release_file::check(&image, &image_name);
        findings.extend(f);
        let arch = self.arch.or_else(|| triple.as_ref().map(|t| t.arch));
        let ctx = Context {
            file_name,
            image_name: image_name.clone(),
            image: &image,
            target: &self.target,
            host: &self.host,
            arch,
            release,
        };
        findings.extend(naming::check(&ctx, triple.as_ref()));
        findings.extend(matching::check(&ctx));
        findings.extend(content::check(&ctx));
        findings.extend(binaries::check(&ctx));
        findings.extend(units::check(&ctx));
        report.name = Some(image_name);
        report.findings = self.finish(findings);
        Ok((report, ctx.release.map(|r| r.name)))
    }
}

/// A directory is a release directory (not a directory image) when it holds `.raw` files or
/// a `SHA256SUMS` and no `usr/` tree of its own.
/// A directory image: an extension's tree, `usr/` or `opt/` at its top.
fn is_directory_image(dir: &Path) -> bool {
    dir.join("usr").is_dir() || dir.join("opt").is_dir()
}

/// The release directories under `dir`, up to `depth` folders down, sorted.
fn release_dirs_below(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    let mut subs: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subs.sort();
    for sub in subs {
        if is_release_dir(&sub) {
            found.push(sub);
        } else if depth > 1 && !is_directory_image(&sub) {
            found.extend(release_dirs_below(&sub, depth - 1));
        }
    }
    found
}

fn is_release_dir(dir: &Path) -> bool {
    if is_directory_image(dir) {
        return false;
    }
    dir.join("SHA256SUMS").exists()
        || std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".raw"))
            })
            .unwrap_or(false)
}

impl Linter {
    /// The target findings are judged against.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Drops findings of rules that do not hold on this target (`gates`), then sorts:
    /// errors first, then warnings, then info; within a severity, the order rules ran in.
    fn finish(&self, mut v: Vec<Finding>) -> Vec<Finding> {
        v.retain(|f| gates::applies(f.rule, &self.target));
        v.sort_by_key(|f| std::cmp::Reverse(f.severity));
        v
    }
}

#[cfg(test)]
mod tests;
