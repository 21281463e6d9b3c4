//! merge: the extension is listed on /usr (and /opt when it ships /opt), systemd's metadata
//! agrees, its files are visible, and /usr is read-only.

use super::{CaseResult, Subject, h, install, merge_and_verify, merged_on};
use sysext_harness::Vm;

pub fn run(vm: &Vm, s: &Subject) -> CaseResult {
    install(vm, s)?;
    merge_and_verify(vm, s)?;
    let status = vm
        .succeed("systemd-sysext status --json=short")
        .map_err(h)?;
    if s.has_opt && !merged_on(&status, "/opt").contains(&s.name) {
        return Err(format!(
            "the image ships /opt, expected '{}' merged on /opt; status: {status}",
            s.name
        ));
    }
    let meta = vm
        .succeed("cat /usr/.systemd-sysext/extensions")
        .map_err(h)?;
    if !meta.lines().any(|l| l.trim() == s.name) {
        return Err(format!(
            "expected /usr/.systemd-sysext/extensions to list '{}', it says: {meta:?}",
            s.name
        ));
    }
    for f in &s.sample_files {
        vm.succeed(&format!("test -e '{f}'")).map_err(|e| {
            format!("expected {f} from the image to be visible after the merge: {e}")
        })?;
    }
    let touch = vm
        .execute("touch /usr/.sysext-test-probe 2>&1")
        .map_err(h)?;
    if touch.status == 0 || !touch.combined().contains("Read-only file system") {
        return Err(format!(
            "expected /usr to be read-only after the merge (EROFS), touch said: {:?} (exit {})",
            touch.combined(),
            touch.status
        ));
    }
    Ok(())
}
