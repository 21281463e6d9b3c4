//! A guest from a disk someone else made: a Flatcar release (`guest fetch`), or any disk in
//! Flatcar's format (`--guest PATH`). Nothing is built; what the harness needs is read off
//! the disk itself and cached beside a raw copy of it:
//!
//! - the arch, from the removable-media GRUB on the ESP (`bootx64.efi`, `bootaa64.efi`);
//! - the release, from `/usr/lib/os-release` on USR-A (`ID=flatcar`, `VERSION_ID`), and so
//!   its merge model and the rest of [`crate::flatcar_release`]'s facts;
//! - the kernel on the ESP (`flatcar/vmlinuz-a`), for the accelerator probe;
//! - whether its initramfs holds where the harness asks ([`super::HOLD_BEACON`] in the
//!   ESP's `flatcar/initrd-a`; Flatcar's own initramfs, inside its kernel, does not).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{Guest, HOLDS_MARKER, Profile};
use crate::arch::Arch;
use crate::cache;
use crate::errors::BuildError;
use crate::flatcar_release::Facts;
use crate::gpt;
use crate::host_tool;

/// The guest for the disk at `path` (raw or qcow2), reading it the first time and reusing
/// what it read while the file is unchanged (same path, size and modification time).
pub fn from_disk(path: &Path, progress: &dyn Fn(&str)) -> Result<Guest, BuildError> {
    let not_a_disk = |problem: String| {
        BuildError::Spec(format!(
            "{}: {problem}; give a Flatcar disk image (flatcar_production_qemu_uefi_image.img, from `sysext-test guest fetch`) or a disk `sysext-test guest build --profile flatcar` made",
            path.display()
        ))
    };
    let meta = std::fs::metadata(path).map_err(|e| not_a_disk(e.to_string()))?;
    if !meta.is_file() {
        return Err(not_a_disk("not a file".into()));
    }
    let key = key_of(path).map_err(|e| BuildError::io(path, e))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect::<String>();
    let dir = cache::root()
        .join("guests")
        .join(format!("image-{stem}-{key}"));
    let parent = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
    let lock_dir = parent
        .join(".locks")
        .join(dir.file_name().unwrap_or_default());
    let _lock = cache::Lock::acquire(&lock_dir).map_err(|e| BuildError::io(&lock_dir, e))?;
    if dir.join(".complete").exists() {
        return load(&dir);
    }
    let work = parent.join(format!(
        ".{}.reading",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    let result = read_disk(path, &work, &key, progress, &not_a_disk);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).map_err(|e| BuildError::io(&dir, e))?;
    load(&dir)
}

/// What names a disk's cache entry: its real path, size and modification time, so a disk
/// rewritten in place is read again.
pub(super) fn key_of(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    let canonical = std::fs::canonicalize(path)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(hex::encode(
        &Sha256::digest(format!("{}\n{}\n{mtime}\n", canonical.display(), meta.len()).as_bytes())
            [..8],
    ))
}

/// Whether the cache entry at `dir` still stands for its disk: the disk is where it was,
/// unchanged. `Err` says why not.
pub fn still_read_from_source(dir: &Path) -> Result<(), String> {
    let source = std::fs::read_to_string(dir.join("source"))
        .map(|s| PathBuf::from(s.trim()))
        .map_err(|_| "no record of the disk it was read from".to_string())?;
    let key =
        key_of(&source).map_err(|e| format!("its disk {} is gone ({e})", source.display()))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(&format!("-{key}")) {
        Ok(())
    } else {
        Err(format!(
            "its disk {} changed since it was read",
            source.display()
        ))
    }
}

pub(super) fn load(dir: &Path) -> Result<Guest, BuildError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| BuildError::io(&p, e))
    };
    let arch: Arch = read("arch")?
        .parse()
        .map_err(|e| BuildError::Spec(format!("{}: {e}", dir.display())))?;
    let profile: Profile = read("profile")?
        .parse()
        .map_err(|e| BuildError::Spec(format!("{}: {e}", dir.display())))?;
    Guest::at(dir, arch, profile)
}

fn read_disk(
    path: &Path,
    work: &Path,
    key: &str,
    progress: &dyn Fn(&str),
    not_a_disk: &dyn Fn(String) -> BuildError,
) -> Result<(), BuildError> {
    let disk = work.join("root.img");
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
        let _ = f.read(&mut magic).map_err(|e| BuildError::io(path, e))?;
    }
    if &magic == b"QFI\xfb" {
        progress(&format!("{}: qcow2, converting to raw", path.display()));
        host_tool::output(
            Command::new("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(path)
                .arg(&disk),
            "qemu-utils",
        )?;
    } else {
        progress(&format!("{}: copying (sparse)", path.display()));
        host_tool::output(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(path)
                .arg(&disk),
            "coreutils",
        )?;
    }
    let parts = gpt::read(&disk).map_err(|e| not_a_disk(e.to_string()))?;
    let part = |label: &str| {
        parts
            .iter()
            .find(|p| p.label == label)
            .ok_or_else(|| not_a_disk(format!("no partition labelled {label}")))
    };
    let esp = part("EFI-SYSTEM")?;
    let on_esp = format!("{}@@{}", disk.display(), esp.offset());
    let listing = host_tool::stdout(
        super::esp::mtools("mdir", &on_esp).args(["-b", "::/EFI/boot"]),
        "mtools",
    )
    .map_err(|e| not_a_disk(format!("no UEFI boot loader on EFI-SYSTEM ({e})")))?
    .to_ascii_lowercase();
    let arch = if listing.contains("bootx64.efi") {
        Arch::X86_64
    } else if listing.contains("bootaa64.efi") {
        Arch::Arm64
    } else {
        return Err(not_a_disk(format!(
            "EFI-SYSTEM has neither EFI/boot/bootx64.efi nor bootaa64.efi ({})",
            listing.trim()
        )));
    };
    let copy_from_esp = |from: &str, to: &Path| {
        host_tool::output(
            super::esp::mtools("mcopy", &on_esp)
                .args(["-n", &format!("::/{from}")])
                .arg(to),
            "mtools",
        )
    };
    copy_from_esp(super::esp::KERNEL, &work.join("vmlinuz")).map_err(|e| {
        not_a_disk(format!(
            "no kernel at {} on EFI-SYSTEM ({e})",
            super::esp::KERNEL
        ))
    })?;
    let initrd = work.join("initrd.cpio");
    let holds = copy_from_esp(super::esp::INITRD, &initrd).is_ok()
        && std::fs::read(&initrd).is_ok_and(|b| {
            b.windows(super::HOLD_BEACON.len())
                .any(|w| w == super::HOLD_BEACON.as_bytes())
        });
    if !initrd.exists() {
        std::fs::write(&initrd, b"").map_err(|e| BuildError::io(&initrd, e))?;
    }

    let usr = part("USR-A")?;
    let usr_img = work.join("usr-a.img");
    crate::partition_image::extract(&disk, usr, &usr_img).map_err(|e| BuildError::io(&disk, e))?;
    let os_release = crate::btrfs::read_file(&usr_img, "/lib/os-release");
    let _ = std::fs::remove_file(&usr_img);
    let os_release =
        os_release?.ok_or_else(|| not_a_disk("USR-A has no /usr/lib/os-release".into()))?;
    let (release, _) = crate::osrelease::OsRelease::parse(&String::from_utf8_lossy(&os_release));
    if release.get("ID") != Some("flatcar") {
        return Err(not_a_disk(format!(
            "its os-release says ID={}, not flatcar",
            release.get("ID").unwrap_or("(none)")
        )));
    }
    let version = release.get("VERSION_ID").unwrap_or_default().to_string();
    let facts = semver::Version::parse(&version)
        .map(|v| Facts::for_version(&v))
        .map_err(|e| {
            not_a_disk(format!(
                "VERSION_ID={version} is not a release number ({e})"
            ))
        })?;
    let profile = Profile::flatcar(facts.merge);
    progress(&format!(
        "{}: Flatcar {version} for {arch} ({}), its initramfs {}",
        path.display(),
        facts.describe(),
        if holds {
            "holds for the harness"
        } else {
            "does not hold: every boot starts at the firmware"
        }
    ));
    let write = |name: &str, text: &str| {
        let p = work.join(name);
        std::fs::write(&p, text).map_err(|e| BuildError::io(&p, e))
    };
    write("arch", arch.systemd_name())?;
    write("profile", profile.name())?;
    write(
        "kernel-version",
        &format!("flatcar {version} (from the disk)"),
    )?;
    write("recipe-hash", key)?;
    write("source", &path.display().to_string())?;
    if holds {
        write(HOLDS_MARKER, "")?;
    }
    write(".complete", "")?;
    Ok(())
}

/// The disk a guest was read from, for messages.
pub fn source_of(guest: &Guest) -> Option<PathBuf> {
    std::fs::read_to_string(guest.dir.join("source"))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_disk_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let not = dir.path().join("notes.txt");
        std::fs::write(&not, vec![b'x'; 64 * 1024]).unwrap();
        let e = from_disk(&not, &|_| {}).unwrap_err().to_string();
        assert!(e.contains("notes.txt"), "{e}");
        assert!(e.contains("give a Flatcar disk image"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let missing = from_disk(&dir.path().join("gone.img"), &|_| {})
            .unwrap_err()
            .to_string();
        assert!(missing.contains("gone.img"), "{missing}");
    }
}
