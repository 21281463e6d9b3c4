//! Guest images for the VM cases: a trimmed Debian trixie (systemd 257, the generation
//! Flatcar ships) with an SSH server and systemd-sysupdate, for x86-64 and arm64.
//!
//! A guest is three files (kernel, a tiny busybox initramfs, a disk image) built from
//! Debian's archive with mmdebstrap and no loop mounts, then cached outside the clone under
//! a hash of its recipe: the same recipe is reused in seconds, a changed one rebuilds.
//! Two profiles share one cached Debian root (the mmdebstrap run, minutes for arm64):
//! `debian` (one ext4 filesystem, the VM cases' guest) and `flatcar` (Flatcar's
//! partitions, read-only `/usr`, and a Flatcar release's os-release, `/usr/sbin` layout,
//! accounts and merge model: the boot cases' guest).

pub mod builtins;
pub mod cached;
mod cpio;
mod debian;
pub mod esp;
mod flatcar;
pub mod image;
mod kernel;

pub use flatcar::USR_A_ATTRIBUTES;

use crate::flatcar_release::{Facts, MergeModel};

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::cache;
use crate::errors::BuildError;

/// Printed on the serial console by the initramfs once eth0 has its address: from then on
/// a connection to the guest's port 22 is answered (accepted or refused) at once, so the
/// harness can try logins instead of having user-net hold a connection to a guest whose
/// NIC is not up yet.
/// The systemd major version both profiles run (Debian trixie's); a manifest's
/// `min-systemd` above it skips that extension's cases.
pub const SYSTEMD_MAJOR: u32 = 257;

pub const NETWORK_BEACON: &str = "SYSEXT-TEST-NETWORK-UP";

/// Printed on the serial console by the Flatcar-format initramfs when the harness asked it
/// to hold (fw_cfg `opt/sysext-test/initrd` reads `hold`): the moment its state is saved,
/// so boot cases restore past the firmware, GRUB and the kernel with their own disk beneath.
pub const HOLD_BEACON: &str = "SYSEXT-TEST-INITRD-HOLDING";

/// Printed on the serial console once the SSH server has started: the boot's progress, for
/// the logs and `bench --vm`.
pub const READY_BEACON: &str = "SYSEXT-TEST-GUEST-READY";

/// Kernel modules every sysext merge needs (loop devices, the image formats, overlayfs).
/// Loaded before the guest's state is saved: `modprobe` of these costs about 1.1 s under TCG,
/// which every case's first merge would otherwise pay.
pub const PRELOAD_MODULES: &[&str] = &["loop", "squashfs", "erofs", "overlay"];

/// Bump when the build steps change in a way the recipe text below does not capture.
const RECIPE_VERSION: u32 = 5;

/// How the Debian root is laid out on the guest's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// One ext4 filesystem holding everything (`root=/dev/vda`).
    Debian,
    /// Flatcar's disk: GPT with EFI-SYSTEM (1), USR-A (3, read-only `/usr`), OEM (6,
    /// `/oem`) and ROOT (9, `/`), answering as the release [`flatcar_release`] names for
    /// the real-root merge (Stable; `flatcar-shaped` is its old name).
    Flatcar,
    /// The same disk answering as a release that merges from the initrd (Beta): the
    /// initramfs merges, no ensure-sysext.
    FlatcarInitrd,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Debian, Profile::Flatcar, Profile::FlatcarInitrd];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Debian => "debian",
            Profile::Flatcar => "flatcar",
            Profile::FlatcarInitrd => "flatcar-initrd",
        }
    }

    /// The Flatcar profile of merge `model`.
    pub fn flatcar(model: MergeModel) -> Profile {
        match model {
            MergeModel::RealRoot => Profile::Flatcar,
            MergeModel::Initrd => Profile::FlatcarInitrd,
        }
    }

    /// The Flatcar merge model a Flatcar profile builds; `None` for Debian.
    pub fn merge_model(self) -> Option<MergeModel> {
        match self {
            Profile::Debian => None,
            Profile::Flatcar => Some(MergeModel::RealRoot),
            Profile::FlatcarInitrd => Some(MergeModel::Initrd),
        }
    }

    /// How the guest starts: the Debian guest from `-kernel` (the fastest cold boot), the
    /// Flatcar ones from their disk through UEFI firmware and GRUB, as Flatcar does.
    pub fn boot(self) -> Boot {
        match self {
            Profile::Debian => Boot::Kernel,
            Profile::Flatcar | Profile::FlatcarInitrd => Boot::Firmware,
        }
    }

    /// The Flatcar release a Flatcar profile answers as: lint's target for it.
    pub fn flatcar_release(self) -> Option<Facts> {
        self.merge_model().map(flatcar::release)
    }

    /// Who the harness logs in as: root on the Debian guest (dropbear, no PAM); `core` on
    /// the Flatcar guests, as on Flatcar, with sudo for everything it runs.
    pub fn login_user(self) -> &'static str {
        match self {
            Profile::Debian => "root",
            Profile::Flatcar | Profile::FlatcarInitrd => "core",
        }
    }
}

/// Where a guest's kernel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads the kernel and initramfs (`-kernel`, `-initrd`, `-append`).
    Kernel,
    /// UEFI firmware boots the disk: GRUB on its ESP loads the kernel with the disk's own
    /// command line. Nothing is passed on a command line; Ignition's config (fw_cfg) is
    /// the way in, as on Flatcar.
    Firmware,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Profile, String> {
        // `flatcar-shaped`: the profile's name before it followed a Flatcar release's facts.
        let s = if s == "flatcar-shaped" { "flatcar" } else { s };
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown guest profile {s:?}: use debian, flatcar or flatcar-initrd")
            })
    }
}

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
    // In Flatcar's base (lvm2): the built-in docker-flatcar's dockerd links it.
    "libdevmapper1.02.1",
    // The Flatcar guests' logins: OpenSSH socket-activated with PAM (and the logind
    // session and bus PAM's pam_systemd asks for), `core` and sudo. The Debian guest keeps
    // dropbear and masks these.
    "openssh-server",
    "sudo",
    "dbus",
    "libpam-systemd",
    // In Flatcar's base: the bakery's dockerd sets up its bridge's NAT with it and does not
    // start without it.
    "iptables",
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
    pub profile: Profile,
}

impl Recipe {
    pub fn debian(arch: Arch) -> Recipe {
        Recipe::new(Profile::Debian, arch)
    }

    pub fn new(profile: Profile, arch: Arch) -> Recipe {
        Recipe {
            arch,
            suite: crate::deb::SUITE,
            packages: PACKAGES,
            kernel_package: format!("linux-image-cloud-{}", arch.debian_name()),
            disk_mib: 2048,
            profile,
        }
    }

    /// The hash of what mmdebstrap makes (the shared Debian root): arch, suite, packages
    /// and the bootstrap options' version.
    fn root_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "root v{}\n{}\n{}\n{}\n",
            debian::BOOTSTRAP_VERSION,
            self.arch,
            self.suite,
            self.packages.join(",")
        ));
        hex::encode(&h.finalize()[..8])
    }

    /// The cached Debian root both profiles start from (a tarball mmdebstrap wrote).
    pub fn root_tarball(&self) -> PathBuf {
        cache::root().join("guests").join(format!(
            "root-{}-{}-{}.tar",
            self.suite,
            self.arch,
            self.root_hash()
        ))
    }

    /// A stable hash of everything that decides the guest's contents, including the
    /// customisation files this crate writes into it.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "v{RECIPE_VERSION}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.profile,
            self.arch,
            self.suite,
            self.packages.join(","),
            self.kernel_package,
            self.disk_mib
        ));
        h.update(self.root_hash().as_bytes());
        for (path, content) in debian::customizations(self.arch) {
            h.update(path.as_bytes());
            h.update(content.as_bytes());
        }
        for unit in debian::MASKED.iter().chain(debian::MASKED_GENERATORS) {
            h.update(unit.as_bytes());
        }
        if let Some(model) = self.profile.merge_model() {
            h.update(flatcar::recipe_text(self.arch, model).as_bytes());
        }
        h.update(kernel::INIT_SCRIPT.as_bytes());
        hex::encode(&h.finalize()[..8])
    }

    pub fn cache_dir(&self) -> PathBuf {
        cache::root().join("guests").join(format!(
            "{}-{}-{}-{}",
            self.profile,
            self.suite,
            self.arch,
            self.hash()
        ))
    }
}

/// A built guest: a disk, and the kernel and initramfs a `-kernel` boot uses (a guest that
/// boots from firmware has the same two on its ESP).
#[derive(Debug, Clone)]
pub struct Guest {
    pub arch: Arch,
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The disk (raw): one ext4 filesystem, or a GPT disk for `flatcar`. Boot it
    /// through a qcow2 overlay, never directly.
    pub disk: PathBuf,
    pub kernel_version: String,
    pub profile: Profile,
    /// Its initramfs holds when the harness asks ([`HOLD_BEACON`]): boot cases resume from
    /// a state saved there. Ours do; a Flatcar release's does not.
    pub holds_in_initrd: bool,
}

/// Beside a guest whose initramfs can hold: written by the build, or by
/// [`image::from_disk`] when the disk's initramfs has the hold in it.
const HOLDS_MARKER: &str = "initrd-holds";

impl Guest {
    /// The serial console device name inside the guest.
    pub fn console(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "ttyS0",
            Arch::Arm64 => "ttyAMA0",
        }
    }

    /// The profile's kernel arguments for a `-kernel` boot (where the root is, for the
    /// initramfs); a guest that boots from firmware has its own in its grub.cfg.
    pub fn boot_args(&self) -> &'static str {
        match self.profile.boot() {
            Boot::Kernel => "root=/dev/vda rw",
            Boot::Firmware => "",
        }
    }

    pub fn boot(&self) -> Boot {
        self.profile.boot()
    }

    pub(crate) fn at(dir: &Path, arch: Arch, profile: Profile) -> Result<Guest, BuildError> {
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
            profile,
            holds_in_initrd: dir.join(HOLDS_MARKER).exists(),
        })
    }
}

/// Returns the cached guest for `recipe`, building it first if needed. `progress` gets one
/// line per long step. As a normal user it needs a user namespace ([`crate::userns`]) and,
/// for a foreign arch, qemu-user already registered with binfmt_misc.
pub fn build_or_reuse(recipe: &Recipe, progress: &dyn Fn(&str)) -> Result<Guest, BuildError> {
    let dir = recipe.cache_dir();
    let parent = dir.parent().unwrap_or(Path::new("/"));
    // One lock per recipe: building the arm64 guest must not hold up x86-64 cases.
    let lock_dir = parent
        .join(".locks")
        .join(dir.file_name().unwrap_or_default());
    let _lock = cache::Lock::acquire(&lock_dir).map_err(|e| BuildError::io(&lock_dir, e))?;
    if dir.join(".complete").exists() {
        return Guest::at(&dir, recipe.arch, recipe.profile);
    }
    crate::userns::check()?;
    let start = std::time::Instant::now();
    let work = parent.join(format!(
        ".{}.build",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = crate::userns::remove_tree(&work);
    std::fs::create_dir_all(&work).map_err(|e| BuildError::io(&work, e))?;
    let result = (|| {
        let root = work.join("root");
        progress(&format!(
            "guest {}: fetching kernel {}",
            recipe.arch, recipe.kernel_package
        ));
        let k = kernel::fetch(recipe)?;
        let tarball = debian_root(recipe, progress)?;
        debian::unpack(&tarball, &root)?;
        progress(&format!(
            "guest {} ({}): customising, installing kernel {}",
            recipe.arch, recipe.profile, k.version
        ));
        debian::customize(recipe.arch, &root)?;
        kernel::install(&k, &root, &work, recipe.profile.boot() == Boot::Firmware)?;
        progress(&format!(
            "guest {} ({}): making the disk image",
            recipe.arch, recipe.profile
        ));
        match recipe.profile {
            Profile::Debian => debian::make_disk(&root, &work.join("root.img"), recipe.disk_mib)?,
            Profile::Flatcar | Profile::FlatcarInitrd => {
                let model = recipe.profile.merge_model().unwrap_or(MergeModel::RealRoot);
                flatcar::install_ignition(recipe.arch, &root)?;
                flatcar::shape(&root, recipe.arch, model)?;
                progress(&format!(
                    "guest {} ({}): building the built-in extensions' stand-ins",
                    recipe.arch, recipe.profile
                ));
                builtins::install(&root, recipe.arch, &flatcar::release(model))?;
                progress(&format!(
                    "guest {} ({}): writing Flatcar's disk (ESP with GRUB, USR-A btrfs with dm-verity, OEM btrfs, ROOT ext4)",
                    recipe.arch, recipe.profile
                ));
                flatcar::make_disk(
                    &root,
                    recipe.arch,
                    model,
                    &flatcar::BootFiles {
                        kernel: &work.join("vmlinuz"),
                        initrd: &work.join("initrd.cpio"),
                    },
                    &work.join("root.img"),
                    &recipe.hash(),
                )?
            }
        }
        crate::userns::remove_tree(&root)?;
        if recipe.profile.boot() == Boot::Firmware {
            std::fs::write(work.join(HOLDS_MARKER), b"").map_err(|e| BuildError::io(&work, e))?;
        }
        std::fs::write(work.join("recipe-hash"), recipe.hash())
            .map_err(|e| BuildError::io(&work, e))?;
        std::fs::write(work.join(".complete"), b"").map_err(|e| BuildError::io(&work, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = crate::userns::remove_tree(&work);
        return Err(e);
    }
    let _ = crate::userns::remove_tree(&dir);
    std::fs::rename(&work, &dir).map_err(|e| BuildError::io(&dir, e))?;
    progress(&format!(
        "guest {} ({}): built in {:.0}s at {}",
        recipe.arch,
        recipe.profile,
        start.elapsed().as_secs_f64(),
        dir.display()
    ));
    Guest::at(&dir, recipe.arch, recipe.profile)
}

/// The cached Debian root for `recipe`'s arch, bootstrapping it first when missing: the
/// one step that takes minutes (arm64 runs its maintainer scripts under qemu-user), shared
/// by both profiles and kept while only our customisations change.
fn debian_root(recipe: &Recipe, progress: &dyn Fn(&str)) -> Result<PathBuf, BuildError> {
    let tarball = recipe.root_tarball();
    let parent = tarball.parent().unwrap_or(Path::new("/"));
    let lock_dir = parent
        .join(".locks")
        .join(tarball.file_name().unwrap_or_default());
    let _lock = cache::Lock::acquire(&lock_dir).map_err(|e| BuildError::io(&lock_dir, e))?;
    if tarball.is_file() {
        return Ok(tarball);
    }
    let start = std::time::Instant::now();
    progress(&format!(
        "guest {}: mmdebstrap {} (arm64 on x86 takes minutes)",
        recipe.arch, recipe.suite
    ));
    let tmp = tarball.with_extension("tar.part.tar");
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = debian::bootstrap(recipe, &tmp, progress) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &tarball).map_err(|e| BuildError::io(&tarball, e))?;
    progress(&format!(
        "guest {}: Debian root bootstrapped in {:.0}s",
        recipe.arch,
        start.elapsed().as_secs_f64()
    ));
    Ok(tarball)
}
