//! The EFI system partition of the Flatcar-format guests: a vfat filesystem (`mkfs.fat`,
//! files placed with mtools, no mount) holding a GRUB EFI image at the removable-media path
//! the firmware boots by default, GRUB's config, the kernel and initramfs, and Flatcar's
//! first-boot flag.
//!
//! The GRUB image is made with the host's `grub-mkimage` from the modules of Debian's
//! `grub-efi-{amd64,arm64}-bin` of the host's own suite (bookworm): the arm64 package does
//! not install on an amd64 host, so both come out of the archive (`deb.rs`), not apt.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::errors::BuildError;
use crate::host_tool;

/// Where the firmware looks when it has no boot entry (UEFI's removable-media path).
fn boot_file(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "EFI/boot/bootx64.efi",
        Arch::Arm64 => "EFI/boot/bootaa64.efi",
    }
}

/// GRUB's platform name and the package that has its modules.
fn grub_platform(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::X86_64 => ("x86_64-efi", "grub-efi-amd64-bin"),
        Arch::Arm64 => ("arm64-efi", "grub-efi-arm64-bin"),
    }
}

/// The suite whose GRUB modules match the host's `grub-mkimage` (grub-common).
const GRUB_SUITE: &str = "bookworm";

/// What the image carries: the filesystems GRUB reads (the ESP, and the OEM partition for
/// its grub.cfg, as Flatcar's GRUB does), search, config scripting and the Linux loader.
/// No menu, video or network: every module costs load time under TCG.
const GRUB_MODULES: &[&str] = &[
    "part_gpt",
    "fat",
    "btrfs",
    "search",
    "search_fs_file",
    "search_label",
    "normal",
    "configfile",
    "test",
    "echo",
    "linux",
];

/// Where the kernel, the initramfs and GRUB's config live on the ESP (Flatcar's names:
/// `flatcar/vmlinuz-a` is slot A's kernel).
pub const KERNEL: &str = "flatcar/vmlinuz-a";
pub const INITRD: &str = "flatcar/initrd-a";
pub const GRUB_CFG: &str = "flatcar/grub/grub.cfg";
/// Present until the first boot has run Ignition: GRUB then adds `flatcar.first_boot`.
pub const FIRST_BOOT: &str = "flatcar/first_boot";

/// The config built into the GRUB image: find the ESP by its config file and read that.
const EARLY_CFG: &str = "search --no-floppy --file --set=root /flatcar/grub/grub.cfg\nset prefix=($root)/flatcar/grub\nconfigfile ($root)/flatcar/grub/grub.cfg\n";

/// An mtools program (`mmd`, `mcopy`, `mdir`) on the vfat image `image` (`FILE` or
/// `FILE@@OFFSET`). `MTOOLS_SKIP_CHECK=1` is mtools' own switch for its FAT geometry
/// warning (an image file has no disk geometry); it skips nothing of ours.
pub fn mtools(program: &str, image: &str) -> Command {
    let mut c = Command::new(program);
    c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(image);
    c
}

/// Makes the GRUB EFI image for `arch` in `work`.
fn grub_image(arch: Arch, work: &Path) -> Result<PathBuf, BuildError> {
    let (platform, package) = grub_platform(arch);
    let pkg = crate::deb::unpacked_from(package, arch, GRUB_SUITE)?;
    let modules = pkg.join("usr/lib/grub").join(platform);
    let early = work.join("grub-early.cfg");
    std::fs::write(&early, EARLY_CFG).map_err(|e| BuildError::io(&early, e))?;
    let out = work.join("grub.efi");
    let present: Vec<&str> = GRUB_MODULES
        .iter()
        .copied()
        .filter(|m| modules.join(format!("{m}.mod")).is_file())
        .collect();
    host_tool::output(
        Command::new("grub-mkimage")
            .arg("-d")
            .arg(&modules)
            .args(["-O", platform, "-p", "/flatcar/grub", "-c"])
            .arg(&early)
            .arg("-o")
            .arg(&out)
            .args(&present),
        "grub-common",
    )?;
    Ok(out)
}

/// What goes onto the ESP besides GRUB.
pub struct Content<'a> {
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub grub_cfg: &'a str,
}

/// Writes `out` (a `bytes`-sized vfat labelled EFI-SYSTEM) with GRUB, `content` and the
/// first-boot flag.
pub fn make(arch: Arch, content: &Content, bytes: u64, out: &Path) -> Result<(), BuildError> {
    let work = out.with_extension("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    let result = (|| {
        let grub = grub_image(arch, &work)?;
        let cfg = work.join("grub.cfg");
        std::fs::write(&cfg, content.grub_cfg).map_err(|e| BuildError::io(&cfg, e))?;
        let flag = work.join("first_boot");
        std::fs::write(&flag, b"").map_err(|e| BuildError::io(&flag, e))?;
        let _ = std::fs::remove_file(out);
        host_tool::output(
            Command::new("mkfs.fat")
                .args(["-C", "-n", "EFI-SYSTEM"])
                .arg(out)
                .arg((bytes / 1024).to_string()),
            "dosfstools",
        )?;
        let mtools = |program: &str, args: &[&std::ffi::OsStr]| {
            host_tool::output(
                mtools(program, &out.display().to_string()).args(args),
                "mtools",
            )
        };
        for dir in ["::/EFI", "::/EFI/boot", "::/flatcar", "::/flatcar/grub"] {
            mtools("mmd", &[dir.as_ref()])?;
        }
        let to = |rel: &str| format!("::/{rel}");
        for (src, dest) in [
            (grub.as_path(), boot_file(arch)),
            (content.kernel, KERNEL),
            (content.initrd, INITRD),
            (cfg.as_path(), GRUB_CFG),
            (flag.as_path(), FIRST_BOOT),
        ] {
            mtools("mcopy", &[src.as_os_str(), to(dest).as_ref()])?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}
