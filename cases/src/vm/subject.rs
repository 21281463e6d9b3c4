//! What the VM cases need to know about an image, read from the image itself (so an
//! author's image needs no spec): its release name, payload files, units and binaries.

use std::path::{Path, PathBuf};

use sysext_builder::image::{Image, Kind};
use sysext_builder::unitfile::IniFile;

use crate::lint::rules::{naming, release_file, units};
use crate::manifest::Manifest;

#[derive(Debug, Clone)]
pub struct Subject {
    /// The name systemd knows the extension by (`/etc/extensions/NAME.raw`).
    pub name: String,
    pub image: PathBuf,
    pub file_name: String,
    pub manifest: Manifest,
    pub reload_manager: bool,
    pub has_opt: bool,
    /// A few regular files of the payload, to check they appear after the merge.
    pub sample_files: Vec<String>,
    /// Service units the image enables (`.wants/` links, `Upholds=`/`Wants=` drop-ins).
    pub enabled_services: Vec<String>,
    /// Other service units it ships.
    pub other_services: Vec<String>,
    /// Every unit file it ships, for journal checks.
    pub units: Vec<String>,
    /// ELF files under bin directories: (absolute path, PT_INTERP if dynamic).
    pub binaries: Vec<(String, Option<String>)>,
}

impl Subject {
    pub fn from_image(image_path: &Path, manifest: Manifest) -> Result<Subject, String> {
        let file_name = image_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let image = Image::open(image_path).map_err(|e| e.to_string())?;
        let names = release_file::candidate_names(&image);
        let name = naming::triple(&file_name, &names)
            .map(|t| t.name)
            .unwrap_or_else(|| naming::image_name(&file_name, false));
        let (release, _) = release_file::check(&image, &name);
        let reload_manager = release
            .as_ref()
            .and_then(|r| r.data.get("EXTENSION_RELOAD_MANAGER"))
            .and_then(sysext_builder::osrelease::parse_bool)
            .unwrap_or(false);
        let has_opt = image
            .entries()
            .iter()
            .any(|e| e.path.starts_with("opt/") && !e.is_dir());
        let sample_files = image
            .entries()
            .iter()
            .filter(|e| {
                e.is_file()
                    && !e.path.starts_with(release_file::DIR)
                    && (e.path.starts_with("usr/") || e.path.starts_with("opt/"))
            })
            .take(5)
            .map(|e| format!("/{}", e.path))
            .collect();
        let unit_files = units::unit_files(&image);
        let mut enabled = Vec::new();
        for e in image.entries() {
            for dir in units::UNIT_DIRS {
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
        enabled.extend(manifest.services.iter().cloned());
        enabled
            .retain(|u| u.ends_with(".service") || u.ends_with(".socket") || u.ends_with(".timer"));
        enabled.sort();
        enabled.dedup();
        let other_services = unit_files
            .iter()
            .map(|(_, n)| n.clone())
            .filter(|n| {
                n.ends_with(".service")
                    && !n.contains('@')
                    && !enabled.contains(n)
                    && !manifest.needs_config.contains(n)
            })
            .collect();
        let mut binaries = Vec::new();
        for e in image.entries().iter().filter(|e| e.is_file()) {
            let in_bin = e.path.starts_with("usr/bin/")
                || e.path.starts_with("usr/local/bin/")
                || (e.path.starts_with("opt/") && e.path.split('/').rev().nth(1) == Some("bin"));
            if !in_bin
                || manifest
                    .exclude_binaries
                    .iter()
                    .any(|x| x.trim_start_matches('/') == e.path)
            {
                continue;
            }
            let Ok(f) = image.open_file(&e.path) else {
                continue;
            };
            let mut head = [0u8; 4];
            if f.read_at(0, &mut head).ok() != Some(4) || !sysext_builder::elf::is_elf(&head) {
                continue;
            }
            let interp = sysext_builder::elf::inspect(f.as_ref())
                .ok()
                .and_then(|i| i.interpreter);
            binaries.push((format!("/{}", e.path), interp));
        }
        Ok(Subject {
            name,
            image: image_path.to_path_buf(),
            file_name,
            manifest,
            reload_manager,
            has_opt,
            sample_files,
            enabled_services: enabled,
            other_services,
            units: unit_files.into_iter().map(|(_, n)| n).collect(),
            binaries,
        })
    }
}
