//! reboot: an extension installed at run time the bakery's way survives what a host does
//! to it later. `systemctl restart systemd-sysext` (an unmerge and a merge) leaves it merged
//! and its units up; a real reboot (the guest's own shutdown and a cold boot of its disk,
//! `Vm::reboot`) merges it again at boot with its units up, nothing failed, and nothing in
//! the journal kola fails a boot on that the first boot did not say.

use sysext_harness::Vm;

use crate::checks::{journal, services};
use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::subject::Subject;
use crate::sysext_status::merged_on;

/// The image names merged on `/usr` and `/opt` now.
fn merged(vm: &Vm) -> Result<Vec<String>, CaseError> {
    let status = vm.succeed("systemd-sysext status --json=short")?;
    let mut names = Vec::new();
    for h in ["/usr", "/opt"] {
        names.extend(merged_on(&status, h)?);
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// `before`: the bad lines (folded) the guest's own boot had logged before the image came.
pub fn check(vm: &mut Vm, s: &Subject, before: &[String], progress: &dyn Fn(&str)) -> CaseResult {
    services::start_as_boot_does(vm, s)?;
    services::wait_active(vm, &s.enabled_services)?;
    let merged_first = merged(vm)?;
    if !merged_first.contains(&s.name) {
        return Err(Assertion::new(format!(
            "expected '{}' merged before anything else is tried; merged: {merged_first:?}",
            s.name
        ))
        .into());
    }
    // What `systemctl restart systemd-sysext` does to a host: unmerge, merge again.
    vm.succeed("systemctl restart systemd-sysext.service")?;
    let merged_again = merged(vm)?;
    if merged_again != merged_first {
        return Err(Assertion::new(format!(
            "expected `systemctl restart systemd-sysext` to leave the same extensions merged; before {merged_first:?}, after {merged_again:?}"
        ))
        .with_evidence(
            &vm.execute("journalctl -b -o cat --no-pager -u systemd-sysext.service | tail -n 20")?
                .stdout,
        )
        .into());
    }
    services::wait_active(vm, &s.enabled_services)?;
    let took = vm.reboot()?;
    progress(&format!(
        "rebooted for real in {:.1}s (shutdown, reset, cold boot of the same disk, login)",
        took.as_secs_f64()
    ));
    let outs = vm.batch(&[
        "systemctl is-system-running --wait 2>&1",
        "systemd-sysext status --json=short",
        "journalctl -b -o cat --no-pager -u systemd-sysext.service",
        "systemctl --failed --no-legend --plain",
    ])?;
    let mut after_boot = Vec::new();
    for h in ["/usr", "/opt"] {
        after_boot.extend(merged_on(&outs[1].stdout, h)?);
    }
    if !after_boot.contains(&s.name) {
        return Err(CaseError::Fail(
            Assertion::new(format!(
                "expected '{}' merged again at boot after a real reboot; merged: {after_boot:?}",
                s.name
            ))
            .with_evidence(&outs[2].stdout),
        ));
    }
    let invocations = services::wait_active(vm, &s.enabled_services)?;
    services::stay_up(vm, &invocations)?;
    services::none_failed(vm, &outs[3].stdout, "after the reboot")?;
    journal::check(
        vm,
        None,
        before,
        &format!("the boot after a reboot with {}", s.file_name),
    )
}
