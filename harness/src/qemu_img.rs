//! `qemu-img`, which makes every qcow2 overlay the harness boots: a guest's writable disk
//! over its cached image or saved state (`vm`), and the payload disk over the image a case
//! installs (`payload`). One wrapper, so both get the same flags, and a missing qemu-utils
//! is reported the same way (through `host_tool`).

use std::path::Path;
use std::process::Command;

use crate::errors::Result;

/// What an overlay is backed by. The format is always named, never probed: a raw image
/// that happens to start with a qcow2 header must not make QEMU open another file.
#[derive(Debug, Clone, Copy)]
pub enum Backing<'a> {
    /// A raw disk image (a cached guest, an extension image on the payload disk).
    Raw(&'a Path),
    /// A qcow2 file (a saved guest's frozen disk).
    Qcow2(&'a Path),
}

/// Creates the qcow2 file `dest` over `backing` (or over nothing), `size` bytes as the guest
/// sees it (`None`: the backing file's size).
pub fn create_overlay(dest: &Path, backing: Option<Backing>, size: Option<u64>) -> Result<()> {
    sysext_builder::host_tool::output(&mut create_command(dest, backing, size), "qemu-utils")?;
    Ok(())
}

/// `qemu-img create -q -f qcow2 [-F FORMAT -b FILE] DEST [SIZE]`.
fn create_command(dest: &Path, backing: Option<Backing>, size: Option<u64>) -> Command {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2"]);
    match backing {
        Some(Backing::Raw(file)) => cmd.args(["-F", "raw", "-b"]).arg(file),
        Some(Backing::Qcow2(file)) => cmd.args(["-F", "qcow2", "-b"]).arg(file),
        None => &mut cmd,
    };
    cmd.arg(dest);
    if let Some(size) = size {
        cmd.arg(size.to_string());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn an_overlay_names_its_backing_format_and_takes_its_size_from_it_unless_told() {
        let raw = Backing::Raw(Path::new("/cache/guest.raw"));
        assert_eq!(
            args(&create_command(
                Path::new("/run/disk.qcow2"),
                Some(raw),
                None
            )),
            [
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "/cache/guest.raw",
                "/run/disk.qcow2"
            ]
        );
        let saved = Backing::Qcow2(Path::new("/snap/disk.qcow2"));
        assert_eq!(
            args(&create_command(
                Path::new("/run/d.qcow2"),
                Some(saved),
                None
            ))[4..7],
            ["-F", "qcow2", "-b"]
        );
        assert_eq!(
            args(&create_command(
                Path::new("/run/p.qcow2"),
                None,
                Some(1 << 30)
            )),
            ["create", "-q", "-f", "qcow2", "/run/p.qcow2", "1073741824"]
        );
    }

    /// The real program: what it made is a qcow2 file over the right backing file, of the
    /// size asked for.
    #[test]
    fn qemu_img_makes_the_overlay_it_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let dest = dir.path().join("over.qcow2");
        create_overlay(&dest, Some(Backing::Raw(&base)), Some(8 << 20)).unwrap();
        let info = sysext_builder::host_tool::stdout(
            Command::new("qemu-img")
                .args(["info", "--output=json"])
                .arg(&dest),
            "qemu-utils",
        )
        .unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["virtual-size"], 8 << 20);
        assert_eq!(info["backing-filename"], base.to_str().unwrap());
        assert_eq!(info["backing-filename-format"], "raw");
    }
}
