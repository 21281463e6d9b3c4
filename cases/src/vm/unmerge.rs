//! unmerge: after `systemd-sysext unmerge` the extension's files are gone and /usr is exactly
//! as it was before the merge (writable again, same top-level listing).

use super::{CaseResult, Subject, h, install, merge_and_verify};
use sysext_harness::Vm;

const SNAPSHOT_USR: &str =
    "findmnt -n -o TARGET,OPTIONS --target /usr; ls -A /usr /usr/bin | md5sum";

pub fn run(vm: &Vm, s: &Subject) -> CaseResult {
    install(vm, s)?;
    let before = vm.succeed(SNAPSHOT_USR).map_err(h)?;
    merge_and_verify(vm, s)?;
    vm.succeed("systemd-sysext unmerge").map_err(h)?;
    let status = vm
        .succeed("systemd-sysext status --json=short")
        .map_err(h)?;
    if !super::merged_on(&status, "/usr").is_empty() {
        return Err(format!(
            "expected nothing merged after unmerge, status says: {status}"
        ));
    }
    for f in &s.sample_files {
        vm.fail(&format!("test -e '{f}'"))
            .map_err(|_| format!("expected {f} to be gone after unmerge, it is still there"))?;
    }
    let after = vm.succeed(SNAPSHOT_USR).map_err(h)?;
    if before != after {
        return Err(format!(
            "expected /usr as before the merge; before:\n{before}after:\n{after}"
        ));
    }
    vm.succeed("touch /usr/.sysext-test-probe && rm /usr/.sysext-test-probe")
        .map_err(|e| format!("expected /usr writable again after unmerge: {e}"))?;
    Ok(())
}
