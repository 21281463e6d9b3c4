//! Saved guest states that outlive a run: boot each (guest, arch) cold once, save it, and
//! restore every later case from it, in this run and the next ones, from the CLI and from
//! nextest alike.
//!
//! A saved state is only as good as everything that made it, so its directory is named by
//! a hash of all of it: the guest recipe, the QEMU version, the accelerator, the machine
//! command line (devices, kernel arguments) and the SSH key the guest trusts (a stable key
//! per cached guest, `guests/<guest>.ssh/id_ed25519`, 0600 in a 0700 directory). Change any
//! of them and the old state is simply not found; it is removed when a new one is saved.
//! Concurrent processes create it under a lock; a state that fails to restore is removed
//! with [`invalidate`] and the caller boots a new one once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sysext_builder::Arch;
use sysext_builder::guest::{Guest, cached};

use crate::accel::{self, Accel};
use crate::errors::{HarnessError, Result};
use crate::qemu::{Launch, Profile};
use crate::vm::{Snapshot, Vm};

/// Bump when what is done to the guest before saving changes (preloaded modules, idle wait,
/// udev settled).
const STATE_VERSION: u32 = 3;

/// Everything that makes a saved state valid, kept beside it as `record.json` so
/// `sysext-test guest status` can say why it is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub arch: Arch,
    /// The cached guest's directory name (recipe and its hash).
    pub guest: String,
    pub recipe_hash: String,
    /// First line of `qemu-system-* --version`.
    pub qemu: String,
    pub accel: Accel,
    /// The QEMU command line with the per-VM paths and ports left out.
    pub machine: String,
    /// The kernel command line the guest booted with (it carries the key credential).
    pub kernel_cmdline: String,
    /// SHA256 fingerprint of the public key the guest trusts.
    pub key: String,
    /// Seconds since the epoch when the state was saved.
    pub saved_at: u64,
    pub cold_boot_seconds: f64,
    /// QEMU start to the network beacon on the guest's console (printed by the initramfs).
    pub beacon_seconds: Option<f64>,
    /// Saved in the initramfs's hold ([`initrd_held`]), not with the guest up.
    #[serde(default)]
    pub initrd_hold: bool,
}

impl Record {
    /// The directory name: the guest's name and a hash of every field that decides validity.
    fn dir_name(&self) -> String {
        let key = format!(
            "state v{STATE_VERSION}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.guest,
            self.recipe_hash,
            self.qemu,
            self.accel.name(),
            self.machine,
            self.kernel_cmdline,
            self.key
        );
        let (key, suffix) = if self.initrd_hold {
            (format!("{key}initrd hold\n"), "-initrd")
        } else {
            (key, "")
        };
        format!(
            "{}-{}{suffix}",
            self.guest,
            &sha256_hex(key.as_bytes())[..16]
        )
    }

    /// The guest's profile and arch without its recipe hash: states of the same kind
    /// replace each other, states of other kinds (the Debian guest's, the Flatcar guest's,
    /// a held one) live side by side.
    fn kind(&self) -> (String, bool) {
        let name = self
            .guest
            .rsplit_once('-')
            .map(|(k, _)| k)
            .unwrap_or(&self.guest);
        (name.to_string(), self.initrd_hold)
    }
}

/// The SSH key a cached guest trusts: made once, kept beside the guest, root-only.
pub struct GuestKey {
    pub private_pem: String,
    pub public: String,
}

impl GuestKey {
    fn dir(guest: &Guest) -> PathBuf {
        let name = guest.dir.file_name().unwrap_or_default().to_string_lossy();
        guest.dir.with_file_name(format!("{name}.ssh"))
    }

    /// The guest's key if it has one; never makes one (for `guest status`).
    fn existing(guest: &Guest) -> Option<GuestKey> {
        let dir = Self::dir(guest);
        Some(GuestKey {
            private_pem: std::fs::read_to_string(dir.join("id_ed25519")).ok()?,
            public: std::fs::read_to_string(dir.join("id_ed25519.pub")).ok()?,
        })
    }

    /// Loads the guest's key, creating it (under the caller's lock) when there is none.
    pub fn for_guest(guest: &Guest) -> Result<GuestKey> {
        let dir = Self::dir(guest);
        let private = dir.join("id_ed25519");
        let public = dir.join("id_ed25519.pub");
        if let (Ok(private_pem), Ok(public)) = (
            std::fs::read_to_string(&private),
            std::fs::read_to_string(&public),
        ) {
            return Ok(GuestKey {
                private_pem,
                public,
            });
        }
        let (private_pem, public_text) = crate::ssh::ephemeral_key()?;
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io(&dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| HarnessError::io(&dir, e))?;
        write_private(&private, private_pem.as_bytes())?;
        write_private(&public, public_text.as_bytes())?;
        Ok(GuestKey {
            private_pem,
            public: public_text,
        })
    }

    fn fingerprint(&self) -> String {
        self.public
            .parse::<ssh_key::PublicKey>()
            .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
            .unwrap_or_else(|_| format!("sha256:{}", sha256_hex(self.public.as_bytes())))
    }
}

/// A key file, 0600 from its first byte and complete or absent (`atomic::write_private`).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    sysext_builder::atomic::write_private(path, bytes).map_err(|e| HarnessError::io(path, e))
}

/// First line of `qemu-system-* --version`; a changed QEMU cannot load an older state.
pub fn qemu_version(arch: Arch) -> Result<String> {
    let p = Profile::for_arch(arch);
    let out =
        sysext_builder::host_tool::output(Command::new(p.binary).arg("--version"), p.package)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// What a cold boot of `guest` would be: its record (without timings) and launch settings.
fn expected(guest: &Guest, key: &GuestKey) -> Result<Record> {
    expected_as(guest, key, false)
}

/// [`expected`], or for a state held in the initramfs (no payload disk: a held guest has
/// no login to carry files to).
fn expected_as(guest: &Guest, key: &GuestKey, initrd_hold: bool) -> Result<Record> {
    let accel = accel::choose(guest.arch, &guest.kernel);
    let mut launch = Launch::new(
        guest,
        accel,
        Path::new("/"),
        PathBuf::new(),
        0,
        &crate::vm::key_credential(&key.public),
    );
    // What `Vm::boot_with_key` attaches, and every restore must attach again.
    if !initrd_hold {
        launch.payload = Some(PathBuf::from("PAYLOAD"));
    }
    Ok(Record {
        arch: guest.arch,
        guest: guest
            .dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        recipe_hash: std::fs::read_to_string(guest.dir.join("recipe-hash"))
            .unwrap_or_default()
            .trim()
            .to_string(),
        qemu: qemu_version(guest.arch)?,
        accel,
        machine: launch.machine_signature(),
        kernel_cmdline: launch.cmdline.clone(),
        key: key.fingerprint(),
        saved_at: 0,
        cold_boot_seconds: 0.0,
        beacon_seconds: None,
        initrd_hold,
    })
}

/// The saved state of `guest`, booting and saving it first when none is valid. `progress`
/// gets a line when a cold boot happens.
pub fn shared(guest: &Guest, base: &Path, progress: &dyn Fn(&str)) -> Result<Snapshot> {
    std::fs::create_dir_all(base).map_err(|e| HarnessError::io(base, e))?;
    let lock_dir = base.join(".locks").join(guest.arch.systemd_name());
    let _lock = sysext_builder::cache::Lock::acquire(&lock_dir)
        .map_err(|e| HarnessError::io(&lock_dir, e))?;
    let key = GuestKey::for_guest(guest)?;
    let mut want = expected(guest, &key)?;
    let dir = base.join(want.dir_name());
    if dir.join(".complete").exists() {
        if let Ok(snap) = load(&dir, guest, &key) {
            return Ok(snap);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    progress(&format!(
        "cold-booting the {} guest to save its state (kept for later runs under {})",
        guest.arch,
        base.display()
    ));
    // A guest that died before SSH (an early TCG oops, QEMU exiting) is booted once more:
    // one flaky cold boot must not fail every case. The second failure stands.
    let vm = match Vm::boot_with_key(guest, &key.private_pem, &key.public) {
        Ok(vm) => vm,
        Err(e) if e.is_boot_failure() => {
            progress(&format!(
                "the {} guest died during its cold boot; booting it once more. First failure: {}",
                guest.arch,
                e.to_string().lines().next().unwrap_or_default()
            ));
            Vm::boot_with_key(guest, &key.private_pem, &key.public)?
        }
        Err(e) => return Err(e),
    };
    want.cold_boot_seconds = vm.startup.as_secs_f64();
    want.beacon_seconds = vm.beacon.map(|d| d.as_secs_f64());
    want.saved_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    progress(&format!(
        "the {} guest had its network up in {} and a working SSH login in {:.1}s; saving it",
        guest.arch,
        want.beacon_seconds
            .map(|s| format!("{s:.1}s"))
            .unwrap_or_else(|| "?".into()),
        want.cold_boot_seconds
    ));
    // What every case would otherwise load on its first merge.
    let _ = vm.execute(&format!(
        "modprobe -a {}",
        sysext_builder::guest::PRELOAD_MODULES.join(" ")
    ));
    save_as(vm, base, &want, &dir)?;
    remove_superseded(base, &want, &dir);
    load(&dir, guest, &key)
}

/// The state of a Flatcar-format `guest` held in its initramfs, booting to the hold and
/// saving it first when none is valid: what boot cases resume with their own disk beneath
/// ([`Vm::resume_held`]), skipping the firmware, GRUB and the kernel (seconds per boot
/// under TCG).
pub fn initrd_held(guest: &Guest, base: &Path, progress: &dyn Fn(&str)) -> Result<Snapshot> {
    std::fs::create_dir_all(base).map_err(|e| HarnessError::io(base, e))?;
    let lock_dir = base
        .join(".locks")
        .join(format!("{}-initrd", guest.arch.systemd_name()));
    let _lock = sysext_builder::cache::Lock::acquire(&lock_dir)
        .map_err(|e| HarnessError::io(&lock_dir, e))?;
    let key = GuestKey::for_guest(guest)?;
    let mut want = expected_as(guest, &key, true)?;
    let dir = base.join(want.dir_name());
    if dir.join(".complete").exists() {
        if let Ok(snap) = load(&dir, guest, &key) {
            return Ok(snap);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    progress(&format!(
        "booting the {} {} guest to its initramfs and saving it there (kept under {})",
        guest.arch,
        guest.profile,
        base.display()
    ));
    let options = crate::vm::BootOptions {
        hold_in_initrd: true,
        ..Default::default()
    };
    let boot = || crate::vm::Vm::boot_with_key_and(guest, &key.private_pem, &key.public, &options);
    let vm = match boot() {
        Ok(vm) => vm,
        Err(e) if e.is_boot_failure() => boot()?,
        Err(e) => return Err(e),
    };
    want.cold_boot_seconds = vm.startup.as_secs_f64();
    want.saved_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    save_as(vm, base, &want, &dir)?;
    progress(&format!(
        "the {} guest held in its initramfs after {:.1}s; saved",
        guest.arch, want.cold_boot_seconds
    ));
    remove_superseded(base, &want, &dir);
    load(&dir, guest, &key)
}

/// Saves `vm` with its record as `dir` under `base`: complete under its name, or not at all.
fn save_as(vm: crate::vm::Vm, base: &Path, want: &Record, dir: &Path) -> Result<()> {
    let tmp = base.join(format!(".{}.saving", want.dir_name()));
    let _ = std::fs::remove_dir_all(&tmp);
    let saved = (|| {
        vm.save(&tmp)?;
        let json = serde_json::to_string_pretty(want)
            .map_err(|e| HarnessError::io(&tmp, std::io::Error::other(e)))?;
        std::fs::write(tmp.join("record.json"), json).map_err(|e| HarnessError::io(&tmp, e))?;
        std::fs::write(tmp.join(".complete"), b"").map_err(|e| HarnessError::io(&tmp, e))?;
        std::fs::rename(&tmp, dir).map_err(|e| HarnessError::io(dir, e))
    })();
    if saved.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    saved
}

/// Removes a saved state that failed to restore, so the next [`shared`] boots a new one.
pub fn invalidate(snap: &Snapshot) {
    let base = snap.dir.parent().map(Path::to_path_buf);
    let _lock = base.as_ref().map(|b| {
        sysext_builder::cache::Lock::acquire(
            &b.join(".locks").join(snap.launch.arch.systemd_name()),
        )
    });
    let _ = std::fs::remove_dir_all(&snap.dir);
}

fn load(dir: &Path, guest: &Guest, key: &GuestKey) -> Result<Snapshot> {
    let record = read_record(dir)?;
    let mut launch = Launch::new(guest, record.accel, dir, dir.join("disk.qcow2"), 0, "");
    launch.cmdline = record.kernel_cmdline.clone();
    // Each restore makes its own (`Vm::restore_carrying`).
    if !record.initrd_hold {
        launch.payload = Some(dir.join("payload.qcow2"));
    }
    Ok(Snapshot {
        dir: dir.to_path_buf(),
        launch,
        key_pem: key.private_pem.clone(),
    })
}

/// A state's record; a missing or garbled one is an error, never a default.
pub fn read_record(dir: &Path) -> Result<Record> {
    let path = dir.join("record.json");
    let text = std::fs::read_to_string(&path).map_err(|e| HarnessError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        HarnessError::io(
            &path,
            std::io::Error::other(format!(
                "not a snapshot record ({e}); remove it with `sysext-test guest clean`"
            )),
        )
    })
}

/// States of the same arch that a new one replaces (another recipe, QEMU or key), left
/// alone for a minute in case another process is just restoring from one.
fn remove_superseded(base: &Path, current: &Record, keep: &Path) {
    for entry in list(base) {
        if entry.dir == keep {
            continue;
        }
        let same_arch = match &entry.record {
            Ok(r) => r.arch == current.arch && r.kind() == current.kind(),
            Err(_) => true,
        };
        let old = std::fs::metadata(&entry.dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        if same_arch && old {
            let _ = std::fs::remove_dir_all(&entry.dir);
        }
    }
}

/// One saved state on disk.
pub struct Entry {
    pub dir: PathBuf,
    pub record: Result<Record>,
    pub bytes: u64,
}

/// Every saved state under `base`, complete or not.
pub fn list(base: &Path) -> Vec<Entry> {
    let Ok(rd) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".locks"))
        })
        .map(|dir| Entry {
            record: read_record(&dir),
            bytes: du(&dir),
            dir,
        })
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// Why `entry` would or would not be restored for `guest` now: `Ok(())` when it is the
/// state [`shared`] would use, else what differs.
pub fn validity(entry: &Entry, guest: &Guest) -> std::result::Result<(), String> {
    let record = entry.record.as_ref().map_err(|e| e.to_string())?;
    if !entry.dir.join(".complete").exists() {
        return Err("incomplete (a save was interrupted)".into());
    }
    let key = GuestKey::existing(guest)
        .ok_or("the guest's SSH key is gone (the next run makes a new key and state)")?;
    let want = expected_as(guest, &key, record.initrd_hold).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    if record.guest != want.guest {
        diffs.push(format!(
            "guest recipe changed ({} → {})",
            record.guest, want.guest
        ));
    }
    if record.qemu != want.qemu {
        diffs.push(format!("QEMU changed ({} → {})", record.qemu, want.qemu));
    }
    if record.accel != want.accel {
        diffs.push(format!(
            "accelerator changed ({} → {})",
            record.accel.name(),
            want.accel.name()
        ));
    }
    if record.machine != want.machine || record.kernel_cmdline != want.kernel_cmdline {
        diffs.push("QEMU or kernel command line changed".into());
    }
    if record.key != want.key {
        diffs.push("the guest's SSH key changed".into());
    }
    if diffs.is_empty() && entry.dir.file_name() != Some(std::ffi::OsStr::new(&want.dir_name())) {
        diffs.push(
            "saved by another version of sysext-test (what is done before saving changed)".into(),
        );
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Whether `entry` would be restored now, judged against the guest it was saved from
/// (its record names it) and that guest's use (`guests`, [`cached::list`]): `Err` says why
/// not.
pub fn judge(entry: &Entry, guests: &[cached::Entry]) -> std::result::Result<(), String> {
    let record = entry.record.as_ref().map_err(|e| e.to_string())?;
    if let Some(Err(why)) = guests
        .iter()
        .find(|g| g.dir.file_name().is_some_and(|n| *n == *record.guest))
        .map(|g| &g.used)
    {
        return Err(format!("its guest {} is unused ({why})", record.guest));
    }
    match cached::open(&record.guest) {
        None => Err(format!(
            "its guest {} is no longer cached (or never finished building)",
            record.guest
        )),
        Some(Err(e)) => Err(format!("its guest {} does not load: {e}", record.guest)),
        Some(Ok(guest)) => validity(entry, &guest),
    }
}

/// Removes one saved state unless a run holds its arch's lock now (it may be saving or
/// restoring): `Ok(false)` then.
pub fn remove(entry: &Entry) -> Result<bool> {
    let base = entry.dir.parent().unwrap_or(Path::new("/"));
    let arches = match &entry.record {
        Ok(r) => vec![r.arch],
        Err(_) => Arch::ALL.to_vec(),
    };
    let mut held = Vec::new();
    for arch in arches {
        for name in [
            arch.systemd_name().to_string(),
            format!("{}-initrd", arch.systemd_name()),
        ] {
            let dir = base.join(".locks").join(name);
            match sysext_builder::cache::Lock::try_acquire(&dir) {
                Ok(Some(lock)) => held.push(lock),
                Ok(None) => return Ok(false),
                Err(e) => return Err(HarnessError::io(&dir, e)),
            }
        }
    }
    std::fs::remove_dir_all(&entry.dir).map_err(|e| HarnessError::io(&entry.dir, e))?;
    Ok(true)
}

fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| if m.is_dir() { 0 } else { m.blocks() * 512 })
                .sum()
        })
        .unwrap_or(0)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            arch: Arch::X86_64,
            guest: "debian-trixie-x86-64-0123".into(),
            recipe_hash: "0123".into(),
            qemu: "QEMU emulator version 7.2.19".into(),
            accel: Accel::Tcg,
            machine: "-machine q35".into(),
            kernel_cmdline: "console=ttyS0".into(),
            key: "SHA256:abc".into(),
            saved_at: 1,
            cold_boot_seconds: 10.0,
            beacon_seconds: Some(9.0),
            initrd_hold: false,
        }
    }

    #[test]
    fn a_state_held_in_the_initramfs_lives_beside_the_guests_running_state() {
        let up = record();
        let held = Record {
            initrd_hold: true,
            ..record()
        };
        assert_ne!(up.dir_name(), held.dir_name());
        assert!(held.dir_name().ends_with("-initrd"));
        assert_ne!(up.kind(), held.kind());
        let other_recipe = Record {
            guest: "debian-trixie-x86-64-4567".into(),
            ..record()
        };
        assert_eq!(
            up.kind(),
            other_recipe.kind(),
            "a new recipe replaces the old"
        );
        let flatcar = Record {
            guest: "flatcar-trixie-x86-64-0123".into(),
            ..record()
        };
        assert_ne!(up.kind(), flatcar.kind(), "another profile does not");
    }

    #[test]
    fn a_record_saved_before_held_states_still_reads() {
        let mut v = serde_json::to_value(record()).expect("json");
        v.as_object_mut().expect("object").remove("initrd_hold");
        let r: Record = serde_json::from_value(v).expect("an old record parses");
        assert!(!r.initrd_hold);
    }

    #[test]
    fn a_changed_qemu_names_another_state() {
        let a = record();
        let mut b = record();
        b.qemu = "QEMU emulator version 8.2.0".into();
        assert_ne!(a.dir_name(), b.dir_name());
        let mut c = record();
        c.cold_boot_seconds = 99.0;
        assert_eq!(a.dir_name(), c.dir_name(), "timings do not decide validity");
    }

    #[test]
    fn a_garbled_record_is_an_error_not_tcg() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("record.json"), "kvm\n-cpu host\n").unwrap();
        assert!(read_record(dir.path()).is_err());
        let good = serde_json::to_string(&record()).unwrap();
        std::fs::write(dir.path().join("record.json"), good).unwrap();
        assert_eq!(read_record(dir.path()).unwrap(), record());
    }
}
