//! Which accelerator QEMU gets. `/dev/kvm` existing proves nothing (on our CI machines it
//! exists and guests hang), so KVM is used only after a short real boot under it printed the
//! kernel banner; the verdict is cached per host boot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sysext_builder::Arch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// How much slower than KVM waits must be: every timeout is multiplied by this.
    pub fn slowdown(self, arch: Arch) -> u32 {
        match (self, arch) {
            (Accel::Kvm, _) => 1,
            (Accel::Tcg, Arch::X86_64) => 4,
            (Accel::Tcg, Arch::Arm64) => 6,
        }
    }
}

/// The accelerator for `arch` guests: `SYSEXT_TEST_ACCEL=kvm|tcg` forces one; a foreign arch
/// is always TCG; otherwise a cached probe decides.
pub fn choose(arch: Arch, kernel: &Path) -> Accel {
    match std::env::var("SYSEXT_TEST_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    if Arch::host() != Some(arch) || !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = sysext_builder::cache::root().join(format!("accel-{}", boot_id.trim()));
    if let Ok(v) = std::fs::read_to_string(&cache) {
        return if v.trim() == "kvm" {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
    }
    let verdict = if probe_kvm(arch, kernel) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let _ = std::fs::create_dir_all(cache.parent().unwrap_or(Path::new("/")));
    // Other test processes read this file while it is written: a half-written (empty) one
    // would read as TCG, and their saved states would be named for another accelerator.
    let _ = sysext_builder::atomic::write_bytes(&cache, verdict.name().as_bytes());
    verdict
}

/// Boots the guest kernel under KVM for up to 15 s and looks for its banner on the console.
fn probe_kvm(arch: Arch, kernel: &Path) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let log = dir.path().join("console.log");
    let profile = crate::qemu::Profile::for_arch(arch);
    let child = Command::new(profile.binary)
        .args([
            "-accel",
            "kvm",
            "-machine",
            profile.machine,
            "-cpu",
            "host",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", &format!("console={} panic=-1", profile.console)])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut ok = false;
    while Instant::now() < deadline {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Linux version")) {
            ok = true;
            break;
        }
        if child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    ok
}
