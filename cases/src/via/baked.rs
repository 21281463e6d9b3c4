//! The baked way: the image (and its `NAME.conf`, when given) baked into a copy of the
//! Flatcar guest's disk, as `bake_flatcar_image.sh` users consume it, and merged by
//! `systemd-sysext.service` during a cold boot: the one way no snapshot can stand in for.
//! An image that breaks the boot (no login where the same guest without it boots, and
//! systemd says why) is the image's verdict, with the base paths it hides.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use sysext_builder::Arch;
use sysext_builder::bake::{self, Extension, InstallTo};
use sysext_builder::flatcar_release::MergeModel;
use sysext_builder::guest::{Guest, Profile};
use sysext_builder::image::{Image, Kind};
use sysext_harness::Vm;
use sysext_harness::vm::BootOptions;

use crate::outcome::NotReached;
use crate::subject::Subject;
use crate::via::cold_boot::{self, Baseline, NoLogin};

/// A booted guest with the image baked in, and the plain boot it is compared with.
pub struct Baked {
    pub vm: Vm,
    pub baseline: Baseline,
    /// Holds the baked disk while the guest runs.
    _work: tempfile::TempDir,
}

/// The Flatcar guest of `arch` and merge `model` and its baseline boot: what every
/// boot-time way starts from.
pub fn flatcar_guest(
    arch: Arch,
    model: MergeModel,
    progress: &dyn Fn(&str),
) -> Result<(Guest, Baseline), NotReached> {
    let base = crate::via::guest::resolve(arch, Profile::flatcar(model), progress)?;
    let baseline = cold_boot::baseline(&base, progress)
        .map_err(|e| NotReached::harness(&format!("baseline boot: {}", e.stage()), &e))?;
    Ok((base, baseline))
}

/// Bakes `subject` (with `conf` as its sysupdate config) into a copy of the flatcar
/// disk and cold-boots it.
pub fn reach(
    subject: &Subject,
    arch: Arch,
    conf: Option<&Path>,
    model: MergeModel,
    progress: &dyn Fn(&str),
) -> Result<Baked, NotReached> {
    let (base, baseline) = flatcar_guest(arch, model, progress)?;
    let work = tempfile::tempdir().map_err(|e| NotReached::harness("temp dir", e))?;
    let disk = work.path().join("baked.img");
    let ext = Extension {
        name: subject.name.clone(),
        image: subject.image.clone(),
        file_name: subject.file_name.clone(),
        conf: conf.map(Path::to_path_buf),
    };
    let t = Instant::now();
    bake::bake(&base.disk, &[ext], InstallTo::Root, &disk, &|_| {})
        .map_err(|e| NotReached::harness("bake", e))?;
    progress(&format!(
        "baked {} into a copy of the {} guest's disk in {:.1}s; cold-booting it",
        subject.file_name,
        base.profile,
        t.elapsed().as_secs_f64()
    ));
    let guest = Guest { disk, ..base };
    let options = BootOptions {
        give_up_on: cold_boot::GIVE_UP_ON,
        ..Default::default()
    };
    match cold_boot::boot(&guest, &options, Some(baseline.login_seconds), progress) {
        Ok(vm) => {
            progress(&format!(
                "login after {:.1}s (without the image: {:.1}s)",
                vm.startup.as_secs_f64(),
                baseline.login_seconds
            ));
            Ok(Baked {
                vm,
                baseline,
                _work: work,
            })
        }
        Err(NoLogin::Harness(e)) => Err(NotReached::from(e)),
        Err(NoLogin::Image {
            mut assertion,
            console,
        }) => {
            let hidden = match Image::open(&subject.image) {
                Ok(img) => shadowed_by_image(&baseline.usr, &img),
                Err(_) => Vec::new(),
            };
            assertion.explanation = format!(
                "expected the guest to boot with {} baked in, as it does without it; {}{}",
                subject.file_name,
                assertion.explanation,
                if hidden.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; the image hides these base paths: {}",
                        hidden
                            .iter()
                            .take(8)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            Err(NotReached::BrokeBoot { assertion, console })
        }
    }
}

/// What the image will hide when merged over `base`, read from the image alone: a
/// directory where the base has a symlink or a file, a non-directory where it has a
/// directory.
fn shadowed_by_image(base: &BTreeMap<String, char>, image: &Image) -> Vec<String> {
    image
        .entries()
        .iter()
        .filter(|e| e.path.starts_with("usr/"))
        .filter_map(|e| {
            let path = format!("/{}", e.path);
            let t = *base.get(&path)?;
            let mine = match e.kind {
                Kind::Dir => 'd',
                Kind::Symlink(_) => 'l',
                _ => 'f',
            };
            let hides = (mine == 'd' && t != 'd') || (mine != 'd' && t == 'd');
            hides.then(|| {
                let under = base
                    .keys()
                    .filter(|p| p.starts_with(&format!("{path}/")))
                    .count();
                format!(
                    "{path} ({} in the base, {} in the image{})",
                    kind_word(t),
                    kind_word(mine),
                    if under > 0 {
                        format!(", {under} base paths under it")
                    } else {
                        String::new()
                    }
                )
            })
        })
        .collect()
}

/// How a `find -printf %y` type letter reads in a sentence.
pub fn kind_word(t: char) -> &'static str {
    match t {
        'd' => "a directory",
        'l' => "a symlink",
        'f' => "a file",
        _ => "a special file",
    }
}
