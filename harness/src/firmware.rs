//! UEFI firmware for the guests that boot from their disk (Flatcar's way): OVMF on x86-64,
//! AAVMF on arm64, from Debian's `ovmf` and `qemu-efi-aarch64`. The code is shared and
//! read-only; every VM gets its own copy of the variable store, which the firmware writes
//! (boot entries) and a saved state carries.

use std::path::{Path, PathBuf};

use sysext_builder::Arch;

use crate::errors::{HarnessError, Result};

/// The firmware's code and the pristine variable store for `arch`, and the package.
fn files(arch: Arch) -> (&'static str, &'static str, &'static str) {
    match arch {
        Arch::X86_64 => (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
            "ovmf",
        ),
        Arch::Arm64 => (
            "/usr/share/AAVMF/AAVMF_CODE.fd",
            "/usr/share/AAVMF/AAVMF_VARS.fd",
            "qemu-efi-aarch64",
        ),
    }
}

/// The firmware code for `arch`, or an error naming the package to install.
pub fn code(arch: Arch) -> Result<PathBuf> {
    let (code, _, package) = files(arch);
    present(code, package)
}

/// Writes a fresh variable store for `arch` to `dest`.
pub fn fresh_vars(arch: Arch, dest: &Path) -> Result<()> {
    let (_, vars, package) = files(arch);
    let vars = present(vars, package)?;
    copy_vars(&vars, dest)
}

/// Copies a variable store (a saved state's into a restored VM's own).
pub fn copy_vars(from: &Path, dest: &Path) -> Result<()> {
    std::fs::copy(from, dest)
        .map(|_| ())
        .map_err(|e| HarnessError::io(dest, e))
}

fn present(path: &str, package: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(HarnessError::io(
            &p,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "UEFI firmware missing: install the Debian package {package} (`bash .ci/setup` does)"
                ),
            ),
        ))
    }
}
