//! What the VM cases need to know about an image, read from the image itself (so an
//! author's image needs no spec): its release name, payload files, units and binaries.

use std::path::{Path, PathBuf};

use crate::manifest::Manifest;
use sysext_builder::image::{Image, facts};
use sysext_builder::naming;
use sysext_builder::osrelease::parse_bool;

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
        let names = facts::release_names(&image);
        let triple = naming::triple(&file_name, &names);
        // A manifest serves every release of an extension: `@VERSION@` in what a command
        // must print is the version in this image's file name.
        let manifest = match &triple {
            Some(t) => manifest.for_version(&t.version).for_arch(t.arch),
            None => manifest,
        };
        let name = triple
            .map(|t| t.name)
            .unwrap_or_else(|| naming::image_name(&file_name, false));
        let reload_manager = facts::release(&image, &name)
            .and_then(|r| r.get("EXTENSION_RELOAD_MANAGER").and_then(parse_bool))
            .unwrap_or(false);
        let has_opt = facts::has_opt(&image);
        let sample_files = facts::sample_files(&image, 5);
        let unit_files = facts::unit_files(&image);
        let mut enabled = facts::enabled_units(&image);
        enabled.extend(manifest.services.iter().cloned());
        // A unit that waits for configuration is enabled but not expected to run.
        enabled.retain(|u| {
            (u.ends_with(".service") || u.ends_with(".socket") || u.ends_with(".timer"))
                && !manifest.waiting.contains(u)
        });
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
                    && !manifest.waiting.contains(n)
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
