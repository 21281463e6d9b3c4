//! After a boot with the image in it (baked, or provisioned by Ignition): the extension was
//! merged during boot; the units it enables came up with no `daemon-reload`; the manifest's
//! waiting units, ports and paths are there; its commands and binaries work (as in the
//! binaries case); nothing failed and the boot reached `multi-user.target`; the boot logged
//! no error that the same guest's boot without the image does not log; no file of the base
//! `/usr` was hidden by the merge. Every command read here must have worked: an empty
//! listing would make "nothing hidden" pass forever.

use std::collections::BTreeMap;

use sysext_harness::Vm;

use crate::checks::journal::{self, fold};
use crate::checks::{binaries, builtins, services};
use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::subject::Subject;
use crate::sysext_status::{merged_on, refusal_lines};
use crate::via::baked::kind_word;
use crate::via::cold_boot::{BOOT_ERRORS, Baseline, USR_LISTING, journal_lines, listing};

/// The checks after a login, in the order a failure is most telling: merged at all, its
/// units up, nothing failed, no new errors, nothing of the base hidden.
pub fn check(vm: &Vm, s: &Subject, baseline: &Baseline) -> CaseResult {
    let outs = vm.batch(&[
        "systemctl is-system-running --wait 2>&1",
        "systemd-sysext status --json=short",
        "journalctl -b -o cat --no-pager -u systemd-sysext.service",
        "systemctl is-active multi-user.target",
    ])?;
    let merged: Vec<String> = ["/usr", "/opt"]
        .iter()
        .map(|h| merged_on(&outs[1].stdout, h))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    if !merged.contains(&s.name) {
        return Err(CaseError::MergeRefused(
            Assertion::new(format!(
                "expected systemd-sysext.service to merge '{}' during boot; merged: {merged:?}",
                s.name
            ))
            .with_evidence(&refusal_lines(&outs[2].stdout, &s.name)),
        ));
    }
    // Enabled through .wants or Upholds=: up with no daemon-reload and no start by us.
    let invocations = services::wait_active(vm, &s.enabled_services)?;
    services::stay_up(vm, &invocations)?;
    // At boot tmpfiles.d and the units ran for real: the manifest's units that wait for
    // configuration are set up, its ports listen and its paths exist.
    services::waiting_set_up(vm, &s.manifest.waiting)?;
    services::listening_and_created(vm, &s.manifest)?;
    // What a user runs once the baked host is up: the manifest's commands, and every
    // binary loadable.
    binaries::check(vm, s)?;
    // With the Flatcar built-ins it replaces masked, its programs are its own.
    builtins::image_wins(vm, s)?;
    let reads = [
        "systemctl --failed --no-legend --plain",
        BOOT_ERRORS,
        USR_LISTING,
    ];
    let outs2 = vm.batch(&reads)?;
    // Each read must have worked: a `find` that failed lists nothing, and nothing is
    // never "hidden".
    if let Some((cmd, out)) = reads.iter().zip(&outs2).find(|(_, o)| o.status != 0) {
        return Err(Assertion::new(format!(
            "expected `{cmd}` to read the booted guest; it exited {}",
            out.status
        ))
        .with_evidence(&out.stderr)
        .into());
    }
    if outs2.len() != reads.len() || !listing(&outs2[2].stdout).contains_key("/usr/bin") {
        return Err(Assertion::new(format!(
            "expected `{USR_LISTING}` to list the merged /usr; it listed no /usr/bin, so nothing could be compared with the base"
        ))
        .into());
    }
    services::none_failed(
        vm,
        &outs2[0].stdout,
        &format!("after booting with {}", s.file_name),
    )?;
    if outs[3].stdout.trim() != "active" {
        return Err(Assertion::new(format!(
            "expected the boot to reach multi-user.target; it is {} (system: {})",
            outs[3].stdout.trim(),
            outs[0].stdout.trim()
        ))
        .into());
    }
    let new_errors = new_errors(&outs2[1].stdout, &baseline.boot_errors);
    if !new_errors.is_empty() {
        return Err(Assertion::new(format!(
            "expected the boot with {} to log no error the boot without it does not; {} new",
            s.file_name,
            new_errors.len()
        ))
        .with_evidence(&new_errors.join("\n"))
        .into());
    }
    let hidden = hidden_base_paths(&baseline.usr, &listing(&outs2[2].stdout));
    if !hidden.is_empty() {
        return Err(Assertion::new(format!(
            "expected the merge to hide no file of the base /usr; {} hidden: {}",
            hidden.len(),
            hidden
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    // Crashes and failures below the error level, or healed by a restart: kola's words.
    journal::check(
        vm,
        None,
        &baseline.badness,
        &format!("the boot with {}", s.file_name),
    )?;
    Ok(())
}

/// This boot's error lines that the baseline boot does not have (compared folded).
fn new_errors(journal: &str, baseline: &[String]) -> Vec<String> {
    journal_lines(journal)
        .filter(|l| !baseline.contains(&fold(l)))
        .map(str::to_string)
        .collect()
}

/// Base paths the merged `/usr` no longer has, or has as another type (a base symlink now
/// a directory from the image: everything reached through it is gone). A file the image
/// ships over a base file is a replacement, not hidden.
fn hidden_base_paths(
    base: &BTreeMap<String, char>,
    merged: &BTreeMap<String, char>,
) -> Vec<String> {
    base.iter()
        .filter_map(|(path, t)| match merged.get(path) {
            None => Some(format!("{path} (gone)")),
            Some(m) if m != t => Some(format!(
                "{path} ({} in the base, {} merged)",
                kind_word(*t),
                kind_word(*m)
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, char)]) -> BTreeMap<String, char> {
        pairs.iter().map(|(p, t)| (p.to_string(), *t)).collect()
    }

    #[test]
    fn a_directory_over_the_sbin_symlink_hides_it() {
        let base = map(&[
            ("/usr", 'd'),
            ("/usr/bin", 'd'),
            ("/usr/bin/sshd", 'f'),
            ("/usr/sbin", 'l'),
        ]);
        let merged = map(&[
            ("/usr", 'd'),
            ("/usr/bin", 'd'),
            ("/usr/bin/sshd", 'f'),
            ("/usr/sbin", 'd'),
            ("/usr/sbin/tool", 'f'),
        ]);
        let hidden = hidden_base_paths(&base, &merged);
        assert_eq!(
            hidden,
            ["/usr/sbin (a symlink in the base, a directory merged)"]
        );
    }

    #[test]
    fn a_replaced_file_is_not_hidden_but_a_lost_one_is() {
        let base = map(&[
            ("/usr/bin/a", 'f'),
            ("/usr/lib/x", 'd'),
            ("/usr/lib/x/y", 'f'),
        ]);
        let merged = map(&[("/usr/bin/a", 'f'), ("/usr/lib/x", 'f')]);
        let hidden = hidden_base_paths(&base, &merged);
        assert_eq!(
            hidden,
            [
                "/usr/lib/x (a directory in the base, a file merged)",
                "/usr/lib/x/y (gone)"
            ]
        );
    }

    #[test]
    fn only_errors_the_baseline_lacks_are_new() {
        let baseline = crate::via::cold_boot::error_lines("foo[123]: bad thing at 0x1f\n");
        let fresh = new_errors(
            "foo[456]: bad thing at 0x2f\nbar.service: Failed\n",
            &baseline,
        );
        assert_eq!(fresh, ["bar.service: Failed"]);
    }
}
