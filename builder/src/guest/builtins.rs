//! Stand-ins for Flatcar's built-in extensions (containerd-flatcar, docker-flatcar), built
//! from Debian bookworm's packages into the Flatcar guest's `/usr` and linked from
//! `/etc/extensions` the way `build_library/sysext_prod_builder` links them. They are why
//! the bakery's docker and containerd docs tell users to mask the built-ins: systemd
//! stacks extensions in the order of their names, so `docker-flatcar` lies above
//! `docker` and its `/usr/bin/docker` is the one a user runs.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::Arch;
use crate::build::{self, Options};
use crate::errors::BuildError;
use crate::flatcar_release::{BUILTIN_DIR, BUILTINS, Facts};
use crate::spec::Spec;

/// Each built-in's spec (`builtins/NAME.toml`), by the name Flatcar gives it.
pub const SPECS: &[(&str, &str)] = &[
    (
        "containerd-flatcar",
        include_str!("builtins/containerd-flatcar.toml"),
    ),
    (
        "docker-flatcar",
        include_str!("builtins/docker-flatcar.toml"),
    ),
];

/// The spec of built-in `name` as the release `facts` ships it (its `VERSION_ID`).
pub fn spec(name: &str, facts: &Facts) -> Result<Spec, BuildError> {
    let (_, text) = SPECS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| BuildError::Spec(format!("no stand-in for the built-in {name}")))?;
    let mut spec = Spec::parse(text, Path::new(&format!("builtins/{name}.toml")))?;
    spec.release
        .insert("VERSION_ID".into(), facts.version.to_string());
    Ok(spec)
}

/// The programs (paths under `usr/`, no leading slash) built-in `name` ships.
pub fn programs(name: &str) -> Vec<String> {
    SPECS
        .iter()
        .filter(|(n, _)| *n == name)
        .filter_map(|(n, text)| Spec::parse(text, Path::new(n)).ok())
        .flat_map(|s| s.files)
        .filter(|f| f.path.starts_with("/usr/bin/"))
        .map(|f| f.path.trim_start_matches('/').to_string())
        .collect()
}

/// Every path built-in `name` ships (no leading slash), with the text of those the spec
/// writes inline (units, drop-ins) and None for packaged files: what a collision check
/// compares an image with, without fetching a package.
pub fn paths(name: &str) -> Vec<(String, Option<String>)> {
    let Some(spec) = SPECS
        .iter()
        .filter(|(n, _)| *n == name)
        .find_map(|(n, text)| Spec::parse(text, Path::new(n)).ok())
    else {
        return Vec::new();
    };
    let rel = |p: &str| p.trim_start_matches('/').to_string();
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    out.extend(spec.files.iter().map(|f| (rel(&f.path), f.text.clone())));
    out.extend(spec.symlinks.iter().map(|s| (rel(&s.path), None)));
    for u in &spec.units {
        out.push((
            rel(&format!("{}/{}", u.dir.trim_end_matches('/'), u.name)),
            Some(u.text.clone()),
        ));
        for t in &u.wanted_by {
            out.push((rel(&crate::layout::wants_link(&u.dir, t, &u.name)), None));
        }
        for t in &u.upheld_by {
            out.push((
                rel(&crate::layout::upholds_dropin(&u.dir, t, &u.name)),
                Some(crate::layout::upholds_dropin_text(&u.name)),
            ));
        }
    }
    out
}

/// The built-ins an image with these entries (paths without a leading slash) replaces:
/// those it ships a program of. The bakery's docs mask exactly these (docker: both;
/// containerd: containerd-flatcar), or the built-in stacks above the image and its
/// program is the one that runs.
pub fn replaced_by<'a>(entries: impl IntoIterator<Item = &'a str>) -> Vec<&'static str> {
    let entries: Vec<&str> = entries.into_iter().collect();
    BUILTINS
        .iter()
        .copied()
        .filter(|b| programs(b).iter().any(|p| entries.contains(&p.as_str())))
        .collect()
}

/// [`replaced_by`] for the image at `path`.
pub fn replaced_by_image(path: &Path) -> Result<Vec<&'static str>, BuildError> {
    let image = crate::image::Image::open(path)
        .map_err(|e| BuildError::Spec(format!("{}: {e}", path.display())))?;
    Ok(replaced_by(image.entries().iter().map(|e| e.path.as_str())))
}

/// Builds every built-in into `root`'s `/usr/share/flatcar/sysext/NAME.raw` and links
/// `/etc/extensions/NAME.raw` to it (an absolute link, as Flatcar's).
pub fn install(root: &Path, arch: Arch, facts: &Facts) -> Result<(), BuildError> {
    let dir = root.join(BUILTIN_DIR.trim_start_matches('/'));
    let links = root.join("etc/extensions");
    for d in [&dir, &links] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::io(d, e))?;
    }
    let scratch = root.join(".sysext-test-builtins");
    for name in BUILTINS {
        let spec = spec(name, facts)?;
        let out = build::build_spec(
            &spec,
            Path::new("."),
            &scratch,
            &Options {
                arch: Some(arch),
                ..Options::default()
            },
        )?;
        let dest = dir.join(format!("{name}.raw"));
        std::fs::rename(&out.image, &dest).map_err(|e| BuildError::io(&dest, e))?;
        let link = links.join(format!("{name}.raw"));
        let _ = std::fs::remove_file(&link);
        symlink(format!("{BUILTIN_DIR}/{name}.raw"), &link)
            .map_err(|e| BuildError::io(&link, e))?;
    }
    std::fs::remove_dir_all(&scratch).map_err(|e| BuildError::io(&scratch, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flatcar_release::Channel;

    #[test]
    fn an_image_replaces_the_builtins_it_ships_a_program_of() {
        let docker = ["usr/bin/docker", "usr/bin/containerd", "usr/lib/x"];
        assert_eq!(
            replaced_by(docker),
            vec!["containerd-flatcar", "docker-flatcar"]
        );
        assert_eq!(
            replaced_by(["usr/bin/ctr", "usr/bin/containerd"]),
            vec!["containerd-flatcar"]
        );
        assert!(replaced_by(["usr/bin/hello"]).is_empty());
    }

    #[test]
    fn every_builtin_has_a_stand_in_that_answers_as_the_release() {
        let facts = Channel::Stable.current();
        for name in BUILTINS {
            let s = spec(name, &facts).unwrap();
            assert_eq!(s.name, *name);
            assert_eq!(s.release["ID"], "flatcar");
            assert_eq!(s.release["VERSION_ID"], facts.version.to_string());
            // Flatcar's built-ins carry no SYSEXT_LEVEL: they match by VERSION_ID.
            assert!(!s.release.contains_key("SYSEXT_LEVEL"));
        }
    }
}
