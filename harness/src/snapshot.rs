//! One cold boot per (guest, arch) per test run, shared by every VM case of that run.
//!
//! nextest runs each test in its own process, so the snapshot lives on disk: the first case
//! to need it boots the guest and saves it under a lock; the others wait for the lock and
//! restore. The key is per run (`NEXTEST_RUN_ID`), so snapshots never outlive their run's
//! SSH key for long: older run directories are removed when a new run starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sysext_builder::guest::Guest;

use crate::errors::{HarnessError, Result};
use crate::vm::{Snapshot, Vm};

/// Where this run's snapshots live: `<base>/<run id>/`.
pub fn run_dir(base: &Path) -> PathBuf {
    let run =
        std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
    base.join(run)
}

/// The snapshot of `guest` for this run, booting and saving it if no case did yet.
/// `progress` gets a line when a cold boot happens.
pub fn shared(guest: &Guest, base: &Path, progress: &dyn Fn(&str)) -> Result<Snapshot> {
    let run = run_dir(base);
    std::fs::create_dir_all(&run).map_err(|e| HarnessError::io(&run, e))?;
    remove_stale(base, &run);
    let name = guest
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = run.join(&name);
    let _lock =
        sysext_builder::cache::Lock::acquire(&run).map_err(|e| HarnessError::io(&run, e))?;
    if dir.join(".complete").exists() {
        return load(&dir, guest);
    }
    progress(&format!(
        "cold-booting the {} guest for this run's snapshot",
        guest.arch
    ));
    // A guest that died before SSH (an early TCG oops, QEMU exiting) is booted once more:
    // one flaky cold boot must not fail every case of the run. The second failure stands.
    let vm = match Vm::boot(guest) {
        Ok(vm) => vm,
        Err(e) if e.is_boot_failure() => {
            progress(&format!(
                "the {} guest died during its cold boot; booting it once more. First failure: {}",
                guest.arch,
                first_line(&e.to_string())
            ));
            Vm::boot(guest)?
        }
        Err(e) => return Err(e),
    };
    let boot = vm.startup;
    let tmp = run.join(format!(".{name}.saving"));
    let _ = std::fs::remove_dir_all(&tmp);
    let snap = vm.save(&tmp)?;
    std::fs::write(tmp.join("launch"), serialize(&snap)).map_err(|e| HarnessError::io(&tmp, e))?;
    std::fs::write(
        tmp.join("cold-boot-seconds"),
        format!("{:.2}\n", boot.as_secs_f64()),
    )
    .map_err(|e| HarnessError::io(&tmp, e))?;
    std::fs::write(tmp.join(".complete"), b"").map_err(|e| HarnessError::io(&tmp, e))?;
    std::fs::rename(&tmp, &dir).map_err(|e| HarnessError::io(&dir, e))?;
    load(&dir, guest)
}

/// The qcow2 overlay records its backing file by absolute path, and the state file is read by
/// path; both move with the directory rename, so only those two fields are rewritten.
fn load(dir: &Path, guest: &Guest) -> Result<Snapshot> {
    let text = std::fs::read_to_string(dir.join("launch")).map_err(|e| HarnessError::io(dir, e))?;
    let key_pem = std::fs::read_to_string(dir.join("key")).map_err(|e| HarnessError::io(dir, e))?;
    let mut lines = text.lines();
    let accel = match lines.next() {
        Some("kvm") => crate::accel::Accel::Kvm,
        _ => crate::accel::Accel::Tcg,
    };
    let cmdline = lines.next().unwrap_or_default().to_string();
    let mut launch = crate::qemu::Launch::new(guest, accel, dir, dir.join("disk.qcow2"), 0, "");
    launch.cmdline = cmdline;
    Ok(Snapshot {
        dir: dir.to_path_buf(),
        launch,
        key_pem,
    })
}

fn serialize(s: &Snapshot) -> String {
    format!("{}\n{}\n", s.launch.accel.name(), s.launch.cmdline)
}

/// Removes other runs' snapshot directories older than an hour (each holds ~200 MB).
fn remove_stale(base: &Path, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p == keep {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}
