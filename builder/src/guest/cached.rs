//! What the guest cache holds, and which of it this sysext-test would still use.
//!
//! Every change to a recipe (a package, a customisation, the Flatcar facts) names a new
//! guest directory by its hash, and a disk rewritten in place is read into a new one: the
//! old entries, hundreds of MB each, are never used again but stay until
//! `sysext-test guest clean --stale` removes them. This module tells the two apart without
//! building anything.

use std::path::{Path, PathBuf};

use super::{Guest, Profile, Recipe, image};
use crate::arch::Arch;
use crate::cache;
use crate::errors::BuildError;

/// One entry of the guest cache.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub what: What,
    /// Bytes it holds on disk (sparse disks count what they use).
    pub bytes: u64,
    /// `Ok` when this sysext-test uses it; `Err` says why it never will again.
    pub used: Result<(), String>,
}

/// What kind of entry it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A guest `guest build` made (or a case built on first use).
    Built { profile: Profile, arch: Arch },
    /// A disk someone else made (`--guest PATH`, `guest fetch`), read into the cache.
    Image,
    /// The SSH key kept beside the guest named `of`.
    Key { of: String },
    /// mmdebstrap's root tarball, which guests of every profile start from.
    RootTarball,
    /// What an interrupted build or read left behind.
    Unfinished,
}

impl What {
    pub fn label(&self) -> String {
        match self {
            What::Built { profile, arch } => format!("{profile} guest, {arch}"),
            What::Image => "guest read from a disk".into(),
            What::Key { of } => format!("SSH key of {of}"),
            What::RootTarball => "Debian root tarball".into(),
            What::Unfinished => "unfinished build".into(),
        }
    }
}

/// The guest cache's directory.
pub fn root() -> PathBuf {
    cache::root().join("guests")
}

/// Every entry under [`root`], sorted by name; the lock folder and unknown files are left
/// out.
pub fn list() -> Vec<Entry> {
    list_in(&root(), &current_names())
}

/// The names this sysext-test's recipes give their guests and root tarballs.
fn current_names() -> Vec<String> {
    let mut names = Vec::new();
    for arch in Arch::ALL {
        for profile in Profile::ALL {
            let recipe = Recipe::new(profile, arch);
            names.extend(
                [recipe.cache_dir(), recipe.root_tarball()]
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned()),
            );
        }
    }
    names
}

fn list_in(dir: &Path, current: &[String]) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut out: Vec<Entry> = names
        .iter()
        .filter_map(|name| classify(dir, name, current, &names))
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

fn classify(dir: &Path, name: &str, current: &[String], all: &[String]) -> Option<Entry> {
    let path = dir.join(name);
    let is_current = current.iter().any(|c| c == name);
    let (what, used) = if name == ".locks" {
        return None;
    } else if name.starts_with('.') && (name.ends_with(".build") || name.ends_with(".reading")) {
        (
            What::Unfinished,
            Err("left by a build that did not finish".to_string()),
        )
    } else if let Some(of) = name.strip_suffix(".ssh") {
        let guest_used = all
            .iter()
            .any(|n| n == of)
            .then(|| classify(dir, of, current, all))
            .flatten()
            .map(|e| e.used);
        let used = match guest_used {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) => Err(format!("its guest {of} is not used")),
            None => Err(format!("its guest {of} is gone")),
        };
        (What::Key { of: of.into() }, used)
    } else if name.starts_with("root-") && name.contains(".tar") {
        let used = if is_current {
            Ok(())
        } else if name.ends_with(".part.tar") {
            Err("left by a bootstrap that did not finish".into())
        } else {
            Err("made for an older recipe".into())
        };
        (What::RootTarball, used)
    } else if name.starts_with("image-") && path.is_dir() {
        let used = if path.join(".complete").exists() {
            image::still_read_from_source(&path)
        } else {
            Err("its read did not finish".into())
        };
        (What::Image, used)
    } else if let Some((profile, arch)) = built_name(name) {
        let used = if is_current {
            if path.join(".complete").exists() {
                Ok(())
            } else {
                Err("its build did not finish".into())
            }
        } else {
            Err("made by an older recipe (this sysext-test builds another)".into())
        };
        (What::Built { profile, arch }, used)
    } else {
        return None;
    };
    Some(Entry {
        bytes: du(&path),
        dir: path,
        what,
        used,
    })
}

/// The profile and arch a built guest's directory name (`PROFILE-SUITE-ARCH-HASH`) says.
fn built_name(name: &str) -> Option<(Profile, Arch)> {
    let (rest, hash) = name.rsplit_once('-')?;
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let arch = Arch::ALL
        .into_iter()
        .find(|a| rest.ends_with(&format!("-{a}")))?;
    let rest = rest.strip_suffix(&format!("-{arch}"))?;
    let (profile, _suite) = rest.rsplit_once('-')?;
    Some((profile.parse().ok()?, arch))
}

/// The cached guest named `name` (a directory under [`root`]), if it is complete.
pub fn open(name: &str) -> Option<Result<Guest, BuildError>> {
    let dir = root().join(name);
    if !dir.join(".complete").exists() {
        return None;
    }
    if name.starts_with("image-") {
        return Some(image::load(&dir));
    }
    let (profile, arch) = built_name(name)?;
    Some(Guest::at(&dir, arch, profile))
}

/// Removes an entry; one whose lock is held (a build or read running now) is left alone
/// and reported as `Ok(false)`.
pub fn remove(entry: &Entry) -> Result<bool, BuildError> {
    let name = entry
        .dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let locks = entry.dir.with_file_name(".locks");
    let lock_dir = locks.join(lock_name(&name));
    let Some(lock) =
        cache::Lock::try_acquire(&lock_dir).map_err(|e| BuildError::io(&lock_dir, e))?
    else {
        return Ok(false);
    };
    if entry.dir.is_dir() {
        crate::userns::remove_tree(&entry.dir)?;
    } else {
        std::fs::remove_file(&entry.dir).map_err(|e| BuildError::io(&entry.dir, e))?;
    }
    // A guest's own locks go with it (nothing asks for a superseded name again).
    if matches!(entry.what, What::Built { .. } | What::Image) {
        drop(lock);
        for dir in [lock_dir.clone(), locks.join(format!("{name}-baseline"))] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(true)
}

/// The lock an entry's maker holds while it writes it: builds and reads lock
/// `.locks/NAME` and write `.NAME.build` (or `.reading`); a bootstrap locks the tarball's
/// name and writes `NAME.part.tar`; a key is made under its guest's lock.
fn lock_name(name: &str) -> String {
    let name = name.strip_suffix(".part.tar").unwrap_or(name);
    let name = name.strip_suffix(".ssh").unwrap_or(name);
    match name.strip_prefix('.') {
        Some(work) => work
            .strip_suffix(".build")
            .or_else(|| work.strip_suffix(".reading"))
            .unwrap_or(work)
            .to_string(),
        None => name.to_string(),
    }
}

/// Bytes used under `path`, a file or a tree (symlinks not followed).
fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, complete: bool) {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("root.img"), vec![1u8; 8192]).unwrap();
        if complete {
            std::fs::write(p.join(".complete"), b"").unwrap();
        }
    }

    fn used_of<'a>(entries: &'a [Entry], name: &str) -> &'a Result<(), String> {
        &entries
            .iter()
            .find(|e| e.dir.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("{name} not listed: {entries:?}"))
            .used
    }

    #[test]
    fn an_older_recipes_guest_and_its_key_are_not_used_and_the_current_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(d, "flatcar-trixie-x86-64-63d03ee625125e09", true);
        touch(d, "flatcar-trixie-x86-64-0123456789abcdef", true);
        touch(d, "flatcar-trixie-x86-64-0123456789abcdef.ssh", false);
        touch(d, "flatcar-initrd-trixie-arm64-fc10d8a67a837a36", false);
        touch(d, ".debian-trixie-arm64-652c0fe356ffc1a1.build", false);
        std::fs::write(d.join("root-trixie-arm64-aee11d01bbcff5f0.tar"), b"t").unwrap();
        std::fs::write(
            d.join("root-trixie-arm64-d74eff30f1d4e518.tar.part.tar"),
            b"t",
        )
        .unwrap();
        std::fs::create_dir_all(d.join(".locks")).unwrap();
        std::fs::write(d.join("notes.txt"), b"mine").unwrap();
        let current = vec![
            "flatcar-trixie-x86-64-63d03ee625125e09".to_string(),
            "flatcar-initrd-trixie-arm64-fc10d8a67a837a36".to_string(),
            "root-trixie-arm64-aee11d01bbcff5f0.tar".to_string(),
        ];
        let entries = list_in(d, &current);
        assert_eq!(entries.len(), 7, "{entries:?}");
        assert_eq!(
            used_of(&entries, "flatcar-trixie-x86-64-63d03ee625125e09"),
            &Ok(())
        );
        assert!(used_of(&entries, "flatcar-trixie-x86-64-0123456789abcdef").is_err());
        assert!(
            used_of(&entries, "flatcar-trixie-x86-64-0123456789abcdef.ssh")
                .as_ref()
                .is_err_and(|e| e.contains("not used"))
        );
        // The current recipe's name, but its build was interrupted: rebuilt, not used.
        assert!(used_of(&entries, "flatcar-initrd-trixie-arm64-fc10d8a67a837a36").is_err());
        assert!(used_of(&entries, ".debian-trixie-arm64-652c0fe356ffc1a1.build").is_err());
        assert_eq!(
            used_of(&entries, "root-trixie-arm64-aee11d01bbcff5f0.tar"),
            &Ok(())
        );
        assert!(used_of(&entries, "root-trixie-arm64-d74eff30f1d4e518.tar.part.tar").is_err());
        let built = entries
            .iter()
            .find(|e| e.dir.ends_with("flatcar-trixie-x86-64-63d03ee625125e09"))
            .unwrap();
        assert_eq!(
            built.what,
            What::Built {
                profile: Profile::Flatcar,
                arch: Arch::X86_64
            }
        );
        assert!(built.bytes >= 8192, "{}", built.bytes);
    }

    #[test]
    fn each_entry_is_removed_under_the_lock_its_maker_holds() {
        assert_eq!(
            lock_name(".debian-trixie-arm64-652c0fe356ffc1a1.build"),
            "debian-trixie-arm64-652c0fe356ffc1a1"
        );
        assert_eq!(
            lock_name(".image-x-0123456789abcdef.reading"),
            "image-x-0123456789abcdef"
        );
        assert_eq!(
            lock_name("root-trixie-arm64-d74eff30f1d4e518.tar.part.tar"),
            "root-trixie-arm64-d74eff30f1d4e518.tar"
        );
        assert_eq!(
            lock_name("flatcar-trixie-x86-64-0123456789abcdef.ssh"),
            "flatcar-trixie-x86-64-0123456789abcdef"
        );
    }

    #[test]
    fn a_guest_name_gives_its_profile_and_arch() {
        assert_eq!(
            built_name("flatcar-initrd-trixie-arm64-fc10d8a67a837a36"),
            Some((Profile::FlatcarInitrd, Arch::Arm64))
        );
        assert_eq!(
            built_name("debian-trixie-x86-64-a119398c701a91bd"),
            Some((Profile::Debian, Arch::X86_64))
        );
        assert_eq!(
            built_name("debian-trixie-x86-64-a119398c701a91bd.ssh"),
            None
        );
        assert_eq!(built_name("mine-x86-64-zzzz"), None);
    }

    #[test]
    fn a_disk_read_into_the_cache_is_unused_once_the_disk_changes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::write(&disk, b"first").unwrap();
        let key = key_for_test(&disk);
        let entry = dir.path().join(format!("image-disk-{key}"));
        std::fs::create_dir_all(&entry).unwrap();
        std::fs::write(entry.join("source"), disk.display().to_string()).unwrap();
        assert_eq!(image::still_read_from_source(&entry), Ok(()));
        std::fs::write(&disk, b"second, longer").unwrap();
        assert!(
            image::still_read_from_source(&entry)
                .is_err_and(|e| e.contains("changed since it was read"))
        );
        std::fs::remove_file(&disk).unwrap();
        assert!(image::still_read_from_source(&entry).is_err_and(|e| e.contains("is gone")));
    }

    fn key_for_test(disk: &Path) -> String {
        image::key_of(disk).unwrap()
    }
}
