//! merge: the extension is listed on /usr (and /opt when it ships /opt), systemd's metadata
//! agrees, its files are visible, and /usr is read-only. All of it is read in the same round
//! trip as the merge itself.

use crate::outcome::{Assertion, CaseResult};
use crate::subject::Subject;
use crate::sysext_status::merged_on;
use crate::via::runtime::Merged;

pub fn check(s: &Subject, m: &Merged) -> CaseResult {
    if s.has_opt && !merged_on(&m.status, "/opt")?.contains(&s.name) {
        return Err(Assertion::new(format!(
            "the image ships /opt, expected '{}' merged on /opt",
            s.name
        ))
        .with_evidence(&m.status)
        .into());
    }
    if !m.meta.lines().any(|l| l.trim() == s.name) {
        return Err(Assertion::new(format!(
            "expected /usr/.systemd-sysext/extensions to list '{}'",
            s.name
        ))
        .with_evidence(&m.meta)
        .into());
    }
    let missing: Vec<&str> = s
        .sample_files
        .iter()
        .zip(&m.samples_present)
        .filter(|(_, present)| !**present)
        .map(|(f, _)| f.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Assertion::new(format!(
            "expected these files of the image to be visible after the merge: {missing:?}"
        ))
        .into());
    }
    if m.usr_write.status == 0 || !m.usr_write.combined().contains("Read-only file system") {
        return Err(Assertion::new(format!(
            "expected /usr to be read-only after the merge (EROFS), touch exited {}",
            m.usr_write.status
        ))
        .with_evidence(&m.usr_write.combined())
        .into());
    }
    Ok(())
}
