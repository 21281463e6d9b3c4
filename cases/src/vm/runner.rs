//! Running one VM case end to end: guest (cached), the run's snapshot, a restored VM, the
//! case, and the verdict, with artifacts saved whenever the verdict is a failure.

use std::path::Path;
use std::time::{Duration, Instant};

use sysext_builder::Arch;

use super::Subject;
use crate::manifest::ExpectedFailure;

/// How one case went.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `Ok(note)` when the case passed (the note says why for expected failures).
    pub result: Result<Option<String>, String>,
    pub duration: Duration,
}

/// Where a case runs: the arch, and the directories for artifacts and snapshots.
pub struct Place<'a> {
    pub arch: Arch,
    /// Artifacts go under `target_dir/sysext-test/artifacts/<name>/`.
    pub target_dir: &'a Path,
    pub snapshot_base: &'a Path,
}

/// Runs `case` for `subject` on `arch`. `name` names the artifact directory under
/// `target_dir/sysext-test/artifacts/`; snapshots live under `snapshot_base`.
pub fn run_case(
    name: &str,
    subject: &Subject,
    arch: Arch,
    case: &str,
    target_dir: &Path,
    snapshot_base: &Path,
    progress: &dyn Fn(&str),
) -> Outcome {
    let place = Place {
        arch,
        target_dir,
        snapshot_base,
    };
    run_in_guest(
        name,
        &place,
        case,
        subject.manifest.expected_failure(case),
        progress,
        |vm| super::run(case, vm, subject),
    )
}

/// Restores a guest from the run's snapshot and runs `body` in it, judging the result
/// against `expected` (a negative test) and keeping artifacts of every failure.
pub fn run_in_guest(
    name: &str,
    place: &Place,
    case: &str,
    expected: Option<&ExpectedFailure>,
    progress: &dyn Fn(&str),
    body: impl FnOnce(&sysext_harness::Vm) -> super::CaseResult,
) -> Outcome {
    let start = Instant::now();
    let (arch, target_dir) = (place.arch, place.target_dir);
    let result = (|| {
        let guest = sysext_builder::guest::build_or_reuse(&sysext_builder::guest::Recipe::debian(arch), progress)
            .map_err(|e| format!("guest image for {arch}: {e} (build it with `sysext-test guest build --arch {arch}`)"))?;
        let snap = sysext_harness::snapshot::shared(&guest, place.snapshot_base, progress)
            .map_err(|e| format!("booting the {arch} guest: {e}"))?;
        // A guest that never reached SSH is retried once (an early TCG oops is not the
        // extension's fault), and the note says so; a case's assertions never are.
        let vm = match sysext_harness::Vm::restore(&snap) {
            Ok(vm) => vm,
            Err(e) if e.is_boot_failure() => {
                progress(&format!(
                    "the restored guest never reached SSH ({e}); retrying the restore once"
                ));
                let vm = sysext_harness::Vm::restore(&snap)
                    .map_err(|e| format!("restoring the {arch} guest (second try): {e}"))?;
                eprintln!("{name}: note: this case ran after retrying a failed boot: {e}");
                vm
            }
            Err(e) => return Err(format!("restoring the {arch} guest: {e}")),
        };
        let artifacts = || {
            vm.save_artifacts(&sysext_harness::artifacts::dir_for(target_dir, name))
                .display()
                .to_string()
        };
        match (body(&vm), expected) {
            (Ok(()), None) => Ok(None),
            (Err(msg), None) => Err(format!("{msg}\nartifacts: {}", artifacts())),
            (Err(msg), Some(exp)) => {
                let missing: Vec<&String> = exp
                    .contains
                    .iter()
                    .filter(|c| !msg.contains(c.as_str()))
                    .collect();
                if missing.is_empty() {
                    // An expected failure still leaves its evidence, as a real one would.
                    Ok(Some(format!(
                        "failed as expected: {msg}\nartifacts: {}",
                        artifacts()
                    )))
                } else {
                    Err(format!(
                        "failed, but not for the expected reason (missing {missing:?}):\n{msg}\nartifacts: {}",
                        artifacts()
                    ))
                }
            }
            (Ok(()), Some(exp)) => Err(format!(
                "expected the {case} case to fail with {:?}, but it passed\nartifacts: {}",
                exp.contains,
                artifacts()
            )),
        }
    })();
    Outcome {
        result,
        duration: start.elapsed(),
    }
}
