//! Facts about an extension image that more than one consumer needs: lint judges them, the
//! VM cases act on them (which name to link, which units to expect, which binaries to run).
//! They live here, with the image reader, so neither consumer reaches into the other.

use super::{Image, Kind};
use crate::osrelease::OsRelease;
use crate::unitfile::IniFile;

/// Where a sysext's release file lives.
pub const RELEASE_DIR: &str = "usr/lib/extension-release.d";
/// `extension-release.NAME`.
pub const RELEASE_PREFIX: &str = "extension-release.";

/// Unit directories systemd reads from a merged `/usr`.
pub const UNIT_DIRS: &[&str] = &["usr/lib/systemd/system", "usr/local/lib/systemd/system"];

const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// The `X` of every `usr/lib/extension-release.d/extension-release.X` entry, of any kind.
pub fn release_names(image: &Image) -> Vec<String> {
    image
        .entries()
        .iter()
        .filter_map(|e| {
            e.path
                .strip_prefix(RELEASE_DIR)
                .and_then(|r| r.strip_prefix('/'))
        })
        .filter(|n| !n.contains('/'))
        .filter_map(|n| n.strip_prefix(RELEASE_PREFIX))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The release file systemd reads for `image_name`: `extension-release.NAME` when present,
/// else the only one the image has (accepted when its strict xattr allows; whether it does
/// is lint's business). Symlinks inside the image are followed.
pub fn release(image: &Image, image_name: &str) -> Option<OsRelease> {
    let names = release_names(image);
    let name = if names.iter().any(|n| n == image_name) {
        image_name.to_string()
    } else if names.len() == 1 {
        names[0].clone()
    } else {
        return None;
    };
    let path = image.resolve(&format!("{RELEASE_DIR}/{RELEASE_PREFIX}{name}"))?;
    let bytes = image.read(&path, 1 << 20).ok()?;
    Some(OsRelease::parse(&String::from_utf8_lossy(&bytes)).0)
}

pub fn is_unit_name(name: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|s| name.ends_with(s) && name.len() > s.len())
}

/// Unit files the image ships: `(path in the image, unit name)`.
pub fn unit_files(image: &Image) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in image.entries() {
        for dir in UNIT_DIRS {
            if let Some(rest) = e.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/'))
                && !rest.contains('/')
                && is_unit_name(rest)
                && matches!(e.kind, Kind::File | Kind::Symlink(_))
            {
                out.push((e.path.clone(), rest.to_string()));
            }
        }
    }
    out
}

/// Units the image pulls in at boot: links in `*.wants/`, `*.upholds/`, `*.requires/`, and
/// `Upholds=`/`Wants=`/`Requires=` in drop-ins for targets. Sorted, each once.
pub fn enabled_units(image: &Image) -> Vec<String> {
    let mut enabled = Vec::new();
    for e in image.entries() {
        for dir in UNIT_DIRS {
            let Some(rest) = e.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((sub, file)) = rest.split_once('/') else {
                continue;
            };
            if [".wants", ".upholds", ".requires"]
                .iter()
                .any(|s| sub.ends_with(s))
                && matches!(e.kind, Kind::Symlink(_))
            {
                enabled.push(file.to_string());
            }
            if sub.ends_with(".target.d")
                && file.ends_with(".conf")
                && let Ok(bytes) = image.read(&e.path, 1 << 20)
            {
                let ini = IniFile::parse(&String::from_utf8_lossy(&bytes));
                for key in ["Upholds", "Wants", "Requires"] {
                    for a in ini.all("Unit", key) {
                        enabled.extend(a.value.split_whitespace().map(str::to_string));
                    }
                }
            }
        }
    }
    enabled.sort();
    enabled.dedup();
    enabled
}

/// A few regular payload files (not the release file), as absolute paths: what must
/// appear under `/usr` or `/opt` once the image is merged.
pub fn sample_files(image: &Image, max: usize) -> Vec<String> {
    image
        .entries()
        .iter()
        .filter(|e| {
            e.is_file()
                && !e.path.starts_with(RELEASE_DIR)
                && (e.path.starts_with("usr/") || e.path.starts_with("opt/"))
        })
        .take(max)
        .map(|e| format!("/{}", e.path))
        .collect()
}

/// Whether the image ships anything under `/opt` (merged only where systemd's default
/// hierarchies include it).
pub fn has_opt(image: &Image) -> bool {
    image
        .entries()
        .iter()
        .any(|e| e.path.starts_with("opt/") && !e.is_dir())
}
