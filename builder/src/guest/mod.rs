//! Guest images for the VM cases: a trimmed Debian trixie (systemd 257, the generation
//! Flatcar ships) with an SSH server and systemd-sysupdate, for x86-64 and arm64.
//!
//! A guest is three files (kernel, a tiny busybox initramfs, an ext4 root image) built from
//! Debian's archive with mmdebstrap and no loop mounts, then cached outside the clone under
//! a hash of its recipe: the same recipe is reused in seconds, a changed one rebuilds.

mod cpio;
mod debian;
mod kernel;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::cache;
use crate::errors::BuildError;

/// Printed on the serial console by the initramfs once eth0 has its address: from then on
/// a connection to the guest's port 22 is answered (accepted or refused) at once, so the
/// harness can try logins instead of having user-net hold a connection to a guest whose
/// NIC is not up yet.
pub const NETWORK_BEACON: &str = "SYSEXT-TEST-NETWORK-UP";

/// Printed on the serial console once the SSH server has started: the boot's progress, for
/// the logs and `bench --vm`.
pub const READY_BEACON: &str = "SYSEXT-TEST-GUEST-READY";

/// Kernel modules every sysext merge needs (loop devices, the image formats, overlayfs).
/// Loaded before the guest's state is saved: `modprobe` of these costs about 1.1 s under TCG,
/// which every case's first merge would otherwise pay.
pub const PRELOAD_MODULES: &[&str] = &["loop", "squashfs", "erofs", "overlay"];

/// Bump when the build steps change in a way the recipe text below does not capture.
const RECIPE_VERSION: u32 = 3;

/// Packages on top of mmdebstrap's minbase.
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "systemd-container",
    "dropbear-bin",
    "udev",
    "iproute2",
    "kmod",
    "zstd",
    "xz-utils",
];

/// What a guest is made of; its hash names the cache entry.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub arch: Arch,
    pub suite: &'static str,
    pub packages: &'static [&'static str],
    /// The kernel metapackage; the cloud flavour is small and made for virtio guests.
    pub kernel_package: String,
    pub disk_mib: u64,
}

impl Recipe {
    pub fn debian(arch: Arch) -> Recipe {
        Recipe {
            arch,
            suite: crate::deb::SUITE,
            packages: PACKAGES,
            kernel_package: format!("linux-image-cloud-{}", arch.debian_name()),
            disk_mib: 2048,
        }
    }

    /// A stable hash of everything that decides the guest's contents, including the
    /// customisation files this crate writes into it.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "v{RECIPE_VERSION}\n{}\n{}\n{}\n{}\n{}\n",
            self.arch,
            self.suite,
            self.packages.join(","),
            self.kernel_package,
            self.disk_mib
        ));
        for (path, content) in debian::customizations(self.arch) {
            h.update(path.as_bytes());
            h.update(content.as_bytes());
        }
        h.update(kernel::INIT_SCRIPT.as_bytes());
        hex::encode(&h.finalize()[..8])
    }

    pub fn cache_dir(&self) -> PathBuf {
        cache::root().join("guests").join(format!(
            "debian-{}-{}-{}",
            self.suite,
            self.arch,
            self.hash()
        ))
    }
}

/// A built guest, ready to boot with `-kernel`/`-initrd` and the disk.
#[derive(Debug, Clone)]
pub struct Guest {
    pub arch: Arch,
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// ext4 root filesystem (raw); boot it through a qcow2 overlay, never directly.
    pub disk: PathBuf,
    pub kernel_version: String,
}

impl Guest {
    /// The serial console device name inside the guest.
    pub fn console(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }

    fn at(dir: &Path, arch: Arch) -> Result<Guest, BuildError> {
        let kernel_version = std::fs::read_to_string(dir.join("kernel-version"))
            .map_err(|e| BuildError::io(&dir.join("kernel-version"), e))?
            .trim()
            .to_string();
        Ok(Guest {
            arch,
            dir: dir.to_path_buf(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.cpio"),
            disk: dir.join("root.img"),
            kernel_version,
        })
    }
}

/// Returns the cached guest for `recipe`, building it first if needed. `progress` gets one
/// line per long step. Needs root (mmdebstrap, binfmt registration for foreign arches).
pub fn build_or_reuse(recipe: &Recipe, progress: &dyn Fn(&str)) -> Result<Guest, BuildError> {
    let dir = recipe.cache_dir();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    // One lock per recipe: building the arm64 guest must not hold up x86-64 cases.
    let lock_dir = parent
        .join(".locks")
        .join(dir.file_name().unwrap_or_default());
    let _lock = cache::Lock::acquire(&lock_dir).map_err(|e| BuildError::io(&lock_dir, e))?;
    if dir.join(".complete").exists() {
        return Guest::at(&dir, recipe.arch);
    }
    let start = std::time::Instant::now();
    let work = parent.join(format!(
        ".{}.build",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    let result = (|| {
        let root = work.join("root");
        progress(&format!(
            "guest {}: fetching kernel {}",
            recipe.arch, recipe.kernel_package
        ));
        let k = kernel::fetch(recipe)?;
        progress(&format!(
            "guest {}: mmdebstrap {} (arm64 on x86 takes minutes)",
            recipe.arch, recipe.suite
        ));
        debian::bootstrap(recipe, &root)?;
        progress(&format!(
            "guest {}: customising, installing kernel {}",
            recipe.arch, k.version
        ));
        debian::customize(recipe.arch, &root)?;
        kernel::install(&k, &root, &work)?;
        progress(&format!("guest {}: making the root image", recipe.arch));
        debian::make_disk(&root, &work.join("root.img"), recipe.disk_mib)?;
        std::fs::remove_dir_all(&root).map_err(|e| BuildError::io(&root, e))?;
        std::fs::write(work.join("recipe-hash"), recipe.hash())
            .map_err(|e| BuildError::io(&work, e))?;
        std::fs::write(work.join(".complete"), b"").map_err(|e| BuildError::io(&work, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&work, &dir).map_err(|e| BuildError::io(&dir, e))?;
    progress(&format!(
        "guest {}: built in {:.0}s at {}",
        recipe.arch,
        start.elapsed().as_secs_f64(),
        dir.display()
    ));
    Guest::at(&dir, recipe.arch)
}
