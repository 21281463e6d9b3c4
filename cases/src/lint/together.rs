//! Lint over several images at once: the extensions a host would merge together.
//!
//! Only images of one arch meet on a host, and of one extension only one release (the
//! newest: what sysupdate leaves linked), so images are grouped by arch and each
//! extension's newest is taken. On a Flatcar target the built-in extensions join every
//! group, their file lists read from the Flatcar guest's stand-ins (`builtins::paths`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sysext_builder::guest::builtins;
use sysext_builder::image::{Image, Kind, facts};
use sysext_builder::{Arch, flatcar_release, naming, version};

use super::rules::collisions::{self, Copy, Member};
use super::{ImageReport, LintError, Linter, ReportKind, TargetKind};

/// The largest file whose bytes are compared (bigger ones are compared by size and a
/// digest of their first MiB, enough to tell two builds apart).
const COMPARE_WHOLE: u64 = 64 << 20;

/// A built-in's paths, with the text of those its spec writes inline.
type BuiltinPaths = Vec<(String, Option<String>)>;

/// One image: where it is, its extension name, version and arch.
struct Candidate {
    path: PathBuf,
    name: String,
    version: String,
    arch: Option<Arch>,
}

impl Linter {
    /// Collision findings for images that would be merged together: one report per arch
    /// group holding two extensions or more (none otherwise).
    pub fn lint_together(&self, images: &[PathBuf]) -> Result<Vec<ImageReport>, LintError> {
        let mut groups: BTreeMap<Option<Arch>, BTreeMap<String, Candidate>> = BTreeMap::new();
        for path in images {
            let c = candidate(path, self.arch);
            let group = groups.entry(c.arch).or_default();
            let newer = group
                .get(&c.name)
                .is_none_or(|old| version::compare(&c.version, &old.version).is_gt());
            if newer {
                group.insert(c.name.clone(), c);
            }
        }
        let mut reports = Vec::new();
        for (arch, group) in groups {
            if group.len() < 2 {
                continue;
            }
            let opened: Vec<(&Candidate, Image)> = group
                .values()
                .filter_map(|c| Image::open(&c.path).ok().map(|i| (c, i)))
                .collect();
            let mut members: Vec<Member> = Vec::new();
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            let mut kinds: Vec<Vec<(String, Kind, u64)>> = Vec::new();
            for (_, image) in &opened {
                let entries: Vec<(String, Kind, u64)> = image
                    .entries()
                    .iter()
                    .filter(|e| !e.is_dir() && !e.path.starts_with(facts::RELEASE_DIR))
                    .map(|e| (e.path.clone(), e.kind.clone(), e.size))
                    .collect();
                for (p, _, _) in &entries {
                    *seen.entry(p.clone()).or_default() += 1;
                }
                kinds.push(entries);
            }
            let flatcar = self.target.kind == TargetKind::Flatcar;
            let builtin_paths: Vec<(&str, BuiltinPaths)> = if flatcar {
                flatcar_release::BUILTINS
                    .iter()
                    .map(|b| (*b, builtins::paths(b)))
                    .collect()
            } else {
                Vec::new()
            };
            for (_, paths) in &builtin_paths {
                for (p, _) in paths {
                    *seen.entry(p.clone()).or_default() += 1;
                }
            }
            let shared: BTreeSet<&String> = seen
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(p, _)| p)
                .collect();
            for ((c, image), entries) in opened.iter().zip(kinds) {
                let paths = entries
                    .into_iter()
                    .filter(|(p, _, _)| shared.contains(p))
                    .map(|(p, kind, size)| {
                        let copy = match kind {
                            Kind::File => Copy::File(Some(content(image, &p, size))),
                            Kind::Symlink(t) => Copy::Symlink(t),
                            other => Copy::Other(format!("{other:?}")),
                        };
                        (p, copy)
                    })
                    .collect();
                members.push(Member {
                    name: c.name.clone(),
                    label: file_label(&c.path),
                    builtin: false,
                    paths,
                });
            }
            for (b, paths) in builtin_paths {
                members.push(Member {
                    name: b.to_string(),
                    label: format!("{b} (Flatcar built-in)"),
                    builtin: true,
                    paths: paths
                        .into_iter()
                        .filter(|(p, _)| shared.contains(p))
                        .map(|(p, t)| (p, Copy::File(t.map(String::into_bytes))))
                        .collect(),
                });
            }
            let labels: Vec<String> = group.values().map(|c| file_label(&c.path)).collect();
            reports.push(ImageReport {
                path: format!(
                    "together on {}: {}",
                    arch.map_or("any arch", |a| a.systemd_name()),
                    labels.join(", ")
                ),
                name: None,
                kind: ReportKind::Together,
                format: None,
                findings: self.finish(collisions::check(&members)),
            });
        }
        Ok(reports)
    }
}

fn candidate(path: &Path, arch: Option<Arch>) -> Candidate {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match naming::triple(&file, &[]) {
        Some(t) => Candidate {
            path: path.to_path_buf(),
            name: t.name,
            version: t.version,
            arch: arch.or(Some(t.arch)),
        },
        None => Candidate {
            path: path.to_path_buf(),
            name: naming::image_name(&file, path.is_dir()),
            version: String::new(),
            arch,
        },
    }
}

fn file_label(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A file's bytes, or for a very large one its size and first MiB (two builds of one
/// program differ there; the same file read twice does not).
fn content(image: &Image, path: &str, size: u64) -> Vec<u8> {
    if size <= COMPARE_WHOLE {
        return image.read(path, COMPARE_WHOLE).unwrap_or_default();
    }
    let mut head = vec![0u8; 1 << 20];
    let n = image.read_head(path, &mut head).unwrap_or(0);
    head.truncate(n);
    head.extend_from_slice(&size.to_le_bytes());
    head
}
