//! services: units the image enables become active after the merge, as they would at boot;
//! the other shipped services start once without failing; nothing failed, and no unit of the
//! extension logged an error.

use std::time::Duration;

use super::{CaseResult, Subject, h, install, merge_and_verify};
use sysext_harness::Vm;

pub fn run(vm: &Vm, s: &Subject) -> CaseResult {
    install(vm, s)?;
    merge_and_verify(vm, s)?;
    if !s.reload_manager {
        // Without EXTENSION_RELOAD_MANAGER=1 systemd does not see the units until this.
        vm.succeed("systemctl daemon-reload").map_err(h)?;
    }
    // Boot would start what the active targets now want (.wants links); Upholds= needs nothing.
    vm.succeed("systemctl start multi-user.target sockets.target timers.target")
        .map_err(h)?;
    for unit in &s.enabled_services {
        vm.wait_for_unit(unit, Duration::from_secs(15))
            .map_err(|e| {
                format!("expected {unit} (enabled by the image) to be active after the merge: {e}")
            })?;
    }
    for unit in &s.enabled_services {
        stays_up(vm, unit)?;
    }
    for unit in &s.other_services {
        let out = vm
            .execute(&format!(
                "systemctl start {unit} 2>&1; sleep 1; systemctl is-failed {unit}"
            ))
            .map_err(h)?;
        if out.stdout.lines().last().map(str::trim) == Some("failed") {
            let status = vm
                .execute(&format!("systemctl status --no-pager {unit}"))
                .map(|o| o.combined())
                .unwrap_or_default();
            return Err(format!(
                "expected {unit} to start (it needs no configuration per the manifest), it failed:\n{status}"
            ));
        }
    }
    let failed = vm
        .succeed("systemctl --failed --no-legend --plain")
        .map_err(h)?;
    if !failed.trim().is_empty() {
        return Err(format!(
            "expected `systemctl --failed` to be empty, it lists:\n{failed}"
        ));
    }
    for unit in &s.units {
        let errors = vm
            .succeed(&format!("journalctl -b --no-pager -o cat -p err -u {unit}"))
            .map_err(h)?;
        if !errors.trim().is_empty() && !errors.contains("-- No entries --") {
            return Err(format!(
                "expected no errors logged by {unit}, saw:\n{errors}"
            ));
        }
    }
    Ok(())
}

/// A `Type=simple` service is "active" the moment its process is forked, so one look can
/// catch a daemon that is about to exit 1. Up means still active, in the same activation
/// (`InvocationID`), two seconds later; anything else is reported as the failure it is.
fn stays_up(vm: &Vm, unit: &str) -> CaseResult {
    let look =
        format!("systemctl show -P ActiveState {unit}; systemctl show -P InvocationID {unit}");
    let before = vm.succeed(&look).map_err(h)?;
    let after = vm.succeed(&format!("sleep 2; {look}")).map_err(h)?;
    if after.lines().next().map(str::trim) == Some("active") && before == after {
        return Ok(());
    }
    let status = vm
        .execute(&format!(
            "systemctl status --no-pager -l {unit}; journalctl -b --no-pager -n 20 -o cat -u {unit}"
        ))
        .map(|o| o.combined())
        .unwrap_or_default();
    Err(format!(
        "expected {unit} (enabled by the image) to stay up after the merge; it failed or was restarted within 2 s (state then: {}):\n{status}",
        after.lines().next().unwrap_or("?").trim()
    ))
}
