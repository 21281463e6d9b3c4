//! unmerge: after `systemd-sysext unmerge` the extension's files are gone and /usr is exactly
//! as it was before the merge (writable again where it was writable, same top-level listing).

use sysext_harness::Vm;

use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::subject::Subject;
use crate::sysext_status::merged_on;
use crate::via::runtime::{Merged, USR_FINGERPRINT};

/// Waits (at most 30 s) for the jobs the merge queued to finish, as a user at a prompt
/// would. On a Flatcar host, a merged socket or upheld unit pulls in `sysinit.target`'s
/// wants, which starts `systemd-sysext.service`: its refresh, still running, merged the
/// image again right after an immediate unmerge (seen with the bakery's docker).
const SETTLE: &str = "i=0; while [ -n \"$(systemctl list-jobs --no-legend)\" ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done";

pub fn check(vm: &Vm, s: &Subject, m: &Merged) -> CaseResult {
    let samples: Vec<String> = s
        .sample_files
        .iter()
        .map(|f| format!("test -e {}", crate::shell::quote(f)))
        .collect();
    let mut cmds = vec![
        SETTLE,
        "systemd-sysext unmerge",
        "systemd-sysext status --json=short",
        USR_FINGERPRINT,
        "touch /usr/.sysext-test-probe && rm /usr/.sysext-test-probe",
    ];
    cmds.extend(samples.iter().map(String::as_str));
    let out = vm.batch(&cmds)?;
    let (unmerge, status, after, write) = (&out[1], &out[2], &out[3], &out[4]);
    if unmerge.status != 0 {
        return Err(CaseError::Fail(
            Assertion::new(format!(
                "expected `systemd-sysext unmerge` to exit 0, it exited {}",
                unmerge.status
            ))
            .with_evidence(&unmerge.combined()),
        ));
    }
    if !merged_on(&status.stdout, "/usr")?.is_empty() {
        return Err(
            Assertion::new("expected nothing merged on /usr after unmerge")
                .with_evidence(&status.stdout)
                .into(),
        );
    }
    let left: Vec<&str> = s
        .sample_files
        .iter()
        .zip(&out[5..])
        .filter(|(_, o)| o.status == 0)
        .map(|(f, _)| f.as_str())
        .collect();
    if !left.is_empty() {
        return Err(Assertion::new(format!(
            "expected these files to be gone after unmerge, they are still there: {left:?}"
        ))
        .into());
    }
    if m.usr_before != after.stdout {
        return Err(Assertion::new(format!(
            "expected /usr as before the merge; before:\n{}after:\n{}",
            m.usr_before, after.stdout
        ))
        .into());
    }
    // Flatcar's /usr is read-only (USR-A) before any merge: only a /usr that was
    // writable must be writable again.
    if mounted_writable(&m.usr_before) && write.status != 0 {
        return Err(Assertion::new("expected /usr writable again after unmerge")
            .with_evidence(&write.combined())
            .into());
    }
    Ok(())
}

/// Whether [`USR_FINGERPRINT`]'s first line (findmnt's target and options) says `rw`.
fn mounted_writable(fingerprint: &str) -> bool {
    fingerprint
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .is_some_and(|opts| opts.split(',').any(|o| o == "rw"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_usr_mounted_rw_must_be_writable_again() {
        assert!(mounted_writable("/ rw,relatime\nabc  -\n"));
        assert!(!mounted_writable("/usr ro,relatime,seclabel\nabc  -\n"));
        assert!(!mounted_writable(""));
    }
}
