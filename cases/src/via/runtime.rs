//! The run-time way: the run's saved guest restored on its own overlay (cold-booted and
//! saved first when no valid state is cached), the image on its payload disk, installed as
//! bakery users do (the file under /opt/extensions/NAME/, the symlink
//! /etc/extensions/NAME.raw, `/dev/null` masks for the Flatcar built-ins it replaces) and
//! merged with `systemd-sysext merge`, all in one batch.

use std::path::Path;

use sysext_builder::Arch;
use sysext_builder::guest::Profile;
use sysext_harness::ssh::Output;
use sysext_harness::{HarnessError, Place, Vm};

use crate::outcome::{Assertion, CaseError, NotReached};
use crate::subject::Subject;
use crate::sysext_status::{merged_on, refusal_lines};

/// `/usr` as a user would compare it before and after: mount, options, top-level listing.
pub const USR_FINGERPRINT: &str =
    "findmnt -n -o TARGET,OPTIONS --target /usr; ls -A /usr /usr/bin | md5sum";

fn no_guest(stage: &str, e: impl std::fmt::Display) -> NotReached {
    NotReached::harness(stage, e)
}

/// The run's saved guest of `arch`, restored (saved first by a cold boot when no valid
/// state is cached; saved again once when it does not come back) with `carrying` on its
/// payload disk. The notes say when the guest is not the one the run started with.
pub fn restore(
    arch: Arch,
    profile: Profile,
    place: &Place,
    carrying: Option<&Path>,
    progress: &dyn Fn(&str),
) -> Result<(Vm, Vec<String>), NotReached> {
    let guest = crate::via::guest::resolve(arch, profile, progress)?;
    let snapshots = place.snapshots();
    let snap = sysext_harness::snapshot::shared(&guest, &snapshots, progress)
        .map_err(|e| no_guest(&format!("cold boot of the {arch} guest: {}", e.stage()), e))?;
    match Vm::restore_carrying(&snap, carrying) {
        Ok(vm) => Ok((vm, Vec::new())),
        Err(e) if e.is_boot_failure() => {
            progress(&format!(
                "the saved {arch} guest did not come back ({}); saving a new one",
                e.stage()
            ));
            sysext_harness::snapshot::invalidate(&snap);
            let snap =
                sysext_harness::snapshot::shared(&guest, &snapshots, progress).map_err(|e| {
                    no_guest(&format!("cold boot of the {arch} guest: {}", e.stage()), e)
                })?;
            let vm = Vm::restore_carrying(&snap, carrying)
                .map_err(|e| no_guest(&format!("restore (second try): {}", e.stage()), e))?;
            Ok((
                vm,
                vec![format!(
                    "this case ran on a newly saved guest: the old state did not restore ({})",
                    e.to_string().lines().next().unwrap_or_default()
                )],
            ))
        }
        Err(e) => Err(no_guest(&format!("restore: {}", e.stage()), e)),
    }
}

/// What the guest looked like right after `systemd-sysext merge`, from one round trip.
pub struct Merged {
    /// `/usr` before the merge ([`USR_FINGERPRINT`]).
    pub usr_before: String,
    pub merge: Output,
    /// `systemd-sysext status --json=short`.
    pub status: String,
    /// `/usr/.systemd-sysext/extensions`.
    pub meta: String,
    /// `test -e` of each of the subject's sample files, in order.
    pub samples_present: Vec<bool>,
    /// `touch` on `/usr` (should fail with EROFS).
    pub usr_write: Output,
}

/// Installs the image as bakery users do and merges it with systemd's debug log on, so a
/// refusal carries systemd's reason (at the default level it only says "1 ignored").
/// `MergeRefused` unless the extension is listed on /usr afterwards: the exit status alone
/// says nothing (0 also when every image was ignored).
pub fn install_and_merge(vm: &Vm, s: &Subject) -> Result<Merged, CaseError> {
    let dir = format!("/opt/extensions/{}", s.name);
    // The bakery's docs mask the Flatcar built-ins an image replaces; the one unmerge
    // before the merge takes those merged at boot off, so `/usr` is the base system's
    // when it is fingerprinted (a no-op on a guest with nothing merged).
    let masks: String = sysext_builder::guest::builtins::replaced_by_image(&s.image)
        .map_err(|e| CaseError::Harness(HarnessError::Ssh(e.to_string())))?
        .iter()
        .map(|b| format!(" && ln -sfn /dev/null /etc/extensions/{b}.raw"))
        .collect();
    let link = format!(
        "mkdir -p /etc/extensions && ln -sfn {dir}/{} /etc/extensions/{}.raw{masks} && systemd-sysext unmerge >/dev/null",
        s.file_name, s.name
    );
    let samples: Vec<String> = s
        .sample_files
        .iter()
        .map(|f| format!("test -e {}", crate::shell::quote(f)))
        .collect();
    let mut cmds: Vec<&str> = vec![
        &link,
        USR_FINGERPRINT,
        "SYSTEMD_LOG_LEVEL=debug systemd-sysext merge",
        "systemd-sysext status --json=short",
        "cat /usr/.systemd-sysext/extensions",
        "touch /usr/.sysext-test-probe",
    ];
    cmds.extend(samples.iter().map(String::as_str));
    let out = vm.upload_and_batch(&s.image, &format!("{dir}/{}", s.file_name), &cmds)?;
    if out.len() != cmds.len() {
        return Err(CaseError::Harness(HarnessError::Command {
            cmd: "the install and merge batch".into(),
            what: format!("answered {} of {} commands", out.len(), cmds.len()),
            output: String::new(),
        }));
    }
    if out[0].status != 0 {
        return Err(CaseError::Harness(HarnessError::Command {
            cmd: link,
            what: format!("exited {}", out[0].status),
            output: out[0].combined(),
        }));
    }
    let mut out = out.into_iter().skip(1);
    let mut next = || {
        out.next().unwrap_or(Output {
            status: -1,
            stdout: String::new(),
            stderr: String::new(),
        })
    };
    let merged = Merged {
        usr_before: next().stdout,
        merge: next(),
        status: next().stdout,
        meta: next().stdout,
        usr_write: next(),
        samples_present: (0..samples.len()).map(|_| next().status == 0).collect(),
    };
    let on_usr = merged_on(&merged.status, "/usr").map_err(CaseError::MergeRefused)?;
    if merged.merge.status != 0 || !on_usr.contains(&s.name) {
        let said = if merged.merge.status != 0 {
            format!("it exited {}", merged.merge.status)
        } else {
            format!("it exited 0 but /usr has {on_usr:?}")
        };
        return Err(CaseError::MergeRefused(
            Assertion::new(format!(
                "expected `systemd-sysext merge` to merge '{}' onto /usr; {said}",
                s.name
            ))
            .with_evidence(&refusal_lines(&merged.merge.combined(), &s.name)),
        ));
    }
    Ok(merged)
}
