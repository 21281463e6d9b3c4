//! unmerge: after `systemd-sysext unmerge` the extension's files are gone and /usr is exactly
//! as it was before the merge (writable again, same top-level listing).

use sysext_harness::Vm;

use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::subject::Subject;
use crate::sysext_status::merged_on;
use crate::via::runtime::{Merged, USR_FINGERPRINT};

pub fn check(vm: &Vm, s: &Subject, m: &Merged) -> CaseResult {
    let samples: Vec<String> = s
        .sample_files
        .iter()
        .map(|f| format!("test -e {}", crate::shell::quote(f)))
        .collect();
    let mut cmds = vec![
        "systemd-sysext unmerge",
        "systemd-sysext status --json=short",
        USR_FINGERPRINT,
        "touch /usr/.sysext-test-probe && rm /usr/.sysext-test-probe",
    ];
    cmds.extend(samples.iter().map(String::as_str));
    let out = vm.batch(&cmds)?;
    let (unmerge, status, after, write) = (&out[0], &out[1], &out[2], &out[3]);
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
        .zip(&out[4..])
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
    if write.status != 0 {
        return Err(Assertion::new("expected /usr writable again after unmerge")
            .with_evidence(&write.combined())
            .into());
    }
    Ok(())
}
