//! After a first boot provisioned by Ignition (in the initramfs, as Flatcar's initrd runs
//! it): the mirror served the image whole, both of Ignition's stages finished, the image
//! is merged with its units up and nothing else broken (the boot checks), sysupdate is
//! configured for it and `systemd-sysupdate.timer` is enabled and active. With a wrong
//! `verification.hash` the boot must stop before a login (Flatcar's emergency mode), and
//! only Ignition's own words on the console can say why: a login is this case's failure.

use sysext_harness::{Mirror, Vm};

use crate::checks::{boot, builtins};
use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::subject::Subject;
use crate::via::cold_boot::Baseline;
use crate::via::ignition::Variant;

/// The journal identifier Ignition's initramfs log carries in the booted guest.
const IDENTIFIER: &str = "ignition";

/// Ignition's words at the end of a stage that did its work.
const FINISHED: &str = "Ignition finished successfully";

/// The ignition case's checks for the config `variant` the guest got.
pub fn check(
    vm: &Vm,
    s: &Subject,
    variant: Variant,
    mirror: &Mirror,
    baseline: &Baseline,
) -> CaseResult {
    match variant {
        Variant::AsPrinted => {
            provisioned(vm, s, mirror)?;
            boot::check(vm, s, baseline)?;
            sysupdate_configured(vm, s)
        }
        // Provisioned, and the built-in's programs are the ones that run (the image is
        // merged, below it): the reason the masks exist.
        Variant::Unmasked => {
            provisioned(vm, s, mirror)?;
            builtins::builtin_wins(vm, s)
        }
        // A login at all means Ignition did not stop the boot: returning here makes the
        // judge fail the case (it expected Ignition's words for the wrong digest).
        Variant::WrongHash => Ok(()),
    }
}

/// Both of Ignition's stages (fetch, files) finished in the initramfs, and nothing it
/// logged was critical; the mirror served the image whole (Ignition fetched it; nothing
/// else in the guest knows the URL).
fn provisioned(vm: &Vm, s: &Subject, mirror: &Mirror) -> CaseResult {
    let out = vm.execute(&format!(
        "journalctl -b -o cat --no-pager -t {IDENTIFIER} | grep -e 'Stage:' -e 'CRITICAL' -e '{FINISHED}'"
    ))?;
    let finished = out.stdout.lines().filter(|l| l.contains(FINISHED)).count();
    if finished < 2 || out.stdout.contains("CRITICAL") {
        return Err(Assertion::new(format!(
            "expected Ignition to provision {} at first boot (both stages finished); it finished {finished} of 2",
            s.file_name
        ))
        .with_evidence(&out.stdout)
        .into());
    }
    let size = std::fs::metadata(&s.image).map(|m| m.len()).unwrap_or(0);
    let path = format!("/extensions/{}", s.file_name);
    let whole = mirror
        .requests()
        .iter()
        .any(|r| r.path == path && r.status == 200 && r.bytes == size && r.method == "GET");
    if !whole {
        return Err(CaseError::from(format!(
            "expected Ignition to download {path} ({size} bytes) from the mirror; it never served it whole"
        )));
    }
    Ok(())
}

/// The sysupdate side of the config: NAME.conf and noop.conf in place, the drop-in loaded,
/// the timer enabled and running.
fn sysupdate_configured(vm: &Vm, s: &Subject) -> CaseResult {
    let name = &s.name;
    let outs = vm.batch(&[
        &format!(
            "test -s /etc/sysupdate.{name}.d/{name}.conf && test -s /etc/sysupdate.d/noop.conf"
        ),
        "systemctl is-enabled systemd-sysupdate.timer",
        "systemctl is-active systemd-sysupdate.timer",
        "systemctl cat systemd-sysupdate.service",
    ])?;
    let checks = [
        (
            outs[0].status == 0,
            "the transfer files in /etc/sysupdate.*",
        ),
        (
            outs[1].stdout.trim() == "enabled",
            "systemd-sysupdate.timer enabled",
        ),
        (
            outs[2].stdout.trim() == "active",
            "systemd-sysupdate.timer active",
        ),
        (
            outs[3]
                .stdout
                .contains(&format!("systemd-sysupdate -C {name} update")),
            "the systemd-sysupdate.service drop-in",
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| *w)
        .collect();
    if !missing.is_empty() {
        return Err(Assertion::new(format!(
            "expected Ignition's config to set up sysupdate for {name}; missing: {}",
            missing.join(", ")
        ))
        .with_evidence(&format!(
            "is-enabled: {}is-active: {}",
            outs[1].stdout, outs[2].stdout
        ))
        .into());
    }
    Ok(())
}
