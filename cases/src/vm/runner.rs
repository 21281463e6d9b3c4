//! Running one VM case end to end: guest (cached), its saved state (cached across runs), a
//! restored VM, the case, and the verdict, with artifacts saved whenever the case failed or
//! the harness broke. Used by nextest (one case per process) and by `sysext-test run`.

use std::time::{Duration, Instant};

use sysext_builder::Arch;
use sysext_builder::guest::Profile;
use sysext_harness::{Place, Vm};

use super::{Assertion, Case, CaseError, CaseResult, Subject, Verdict};
use crate::manifest::ExpectedFailure;

/// How one case went.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    pub duration: Duration,
    /// The merge itself was refused: cases run after this one in the same session need not
    /// say so again.
    pub merge_refused: bool,
}

impl Outcome {
    /// The nextest form: notes on stderr for a pass, the whole story as the error otherwise.
    pub fn into_test_result(self, name: &str) -> Result<(), String> {
        match self.verdict {
            Verdict::Pass {
                expected_failure,
                notes,
            } => {
                if let Some(a) = expected_failure {
                    eprintln!("{name}: failed as expected: {a}");
                }
                for n in notes {
                    eprintln!("{name}: note: {n}");
                }
                Ok(())
            }
            Verdict::Fail { assertion, notes } => {
                let mut s = assertion.to_string();
                for n in notes {
                    s.push_str(&format!("\n{n}"));
                }
                Err(s)
            }
            Verdict::Error { stage, message } => Err(format!(
                "harness error at {stage} (not a verdict on the extension): {message}"
            )),
            Verdict::NotRun { reason } => Err(format!("not run: {reason}")),
        }
    }
}

/// Runs `case` for `subject` on `arch`. `name` names the artifact directory.
pub fn run_case(
    name: &str,
    subject: &Subject,
    arch: Arch,
    case: Case,
    place: &Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    run_in_guest(
        name,
        arch,
        place,
        subject.manifest.expected_failure(case),
        Some(&subject.image),
        progress,
        |vm| super::run(case, vm, subject),
    )
}

/// Why the runner could not get a guest to run the case in.
fn harness(stage: &str, e: impl std::fmt::Display) -> Verdict {
    Verdict::Error {
        stage: stage.to_string(),
        message: e.to_string(),
    }
}

/// The run's saved guest of `arch`, restored (saved first by a cold boot when no valid
/// state is cached; saved again once when it does not come back) with `carrying` on its
/// payload disk. The notes say when the guest is not the one the run started with.
pub fn restored(
    arch: Arch,
    profile: Profile,
    place: &Place,
    carrying: Option<&std::path::Path>,
    progress: &dyn Fn(&str),
) -> Result<(Vm, Vec<String>), Verdict> {
    let recipe = sysext_builder::guest::Recipe::new(profile, arch);
    let guest = sysext_builder::guest::build_or_reuse(&recipe, progress).map_err(|e| {
        harness(
            "guest image",
            format!("{arch}: {e} (build it with `sysext-test guest build --arch {arch}`)"),
        )
    })?;
    let snapshots = place.snapshots();
    let snap = sysext_harness::snapshot::shared(&guest, &snapshots, progress)
        .map_err(|e| harness(&format!("cold boot of the {arch} guest: {}", e.stage()), e))?;
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
                    harness(&format!("cold boot of the {arch} guest: {}", e.stage()), e)
                })?;
            let vm = Vm::restore_carrying(&snap, carrying)
                .map_err(|e| harness(&format!("restore (second try): {}", e.stage()), e))?;
            Ok((
                vm,
                vec![format!(
                    "this case ran on a newly saved guest: the old state did not restore ({})",
                    e.to_string().lines().next().unwrap_or_default()
                )],
            ))
        }
        Err(e) => Err(harness(&format!("restore: {}", e.stage()), e)),
    }
}

/// The verdict on a case's result: against `expected` (a negative test) only the guest's
/// own words count, and a harness error never does. `keep` saves the artifacts (console,
/// journal, sysext status) of anything but a plain pass and says where they went.
pub fn judge(
    result: CaseResult,
    expected: Option<&ExpectedFailure>,
    mut notes: Vec<String>,
    keep: impl FnOnce() -> std::path::PathBuf,
) -> Verdict {
    let mut keep = Some(keep);
    let mut keep = |notes: &mut Vec<String>| {
        if let Some(k) = keep.take() {
            notes.push(format!("artifacts: {}", k().display()));
        }
    };
    match (result, expected) {
        (Ok(()), None) => Verdict::Pass {
            expected_failure: None,
            notes,
        },
        (Ok(()), Some(exp)) => {
            keep(&mut notes);
            Verdict::Fail {
                assertion: Assertion::new(format!(
                    "expected this case to fail with the guest saying {:?}, but it passed",
                    exp.systemd
                )),
                notes,
            }
        }
        (Err(CaseError::Harness(e)), _) => {
            keep(&mut notes);
            Verdict::Error {
                stage: e.stage(),
                message: format!("{e}\n{}", notes.join("\n")),
            }
        }
        (Err(CaseError::Fail(a) | CaseError::MergeRefused(a)), None) => {
            keep(&mut notes);
            Verdict::Fail {
                assertion: a,
                notes,
            }
        }
        (Err(CaseError::Fail(a) | CaseError::MergeRefused(a)), Some(exp)) => {
            keep(&mut notes);
            match a.evidence_contains_all(&exp.systemd) {
                Ok(()) => Verdict::Pass {
                    expected_failure: Some(a),
                    notes,
                },
                Err(missing) => Verdict::Fail {
                    assertion: Assertion {
                        explanation: format!(
                            "failed, but not for the reason it exists for: the guest never said {missing:?} ({})",
                            a.explanation
                        ),
                        evidence: a.evidence,
                    },
                    notes,
                },
            }
        }
    }
}

/// Restores a guest (with `carrying`, the image the body installs, on its payload disk)
/// and runs `body` in it, judging the result against `expected` (a negative test) and
/// keeping artifacts of every failure, expected or not.
pub fn run_in_guest(
    name: &str,
    arch: Arch,
    place: &Place,
    expected: Option<&ExpectedFailure>,
    carrying: Option<&std::path::Path>,
    progress: &dyn Fn(&str),
    body: impl FnOnce(&Vm) -> CaseResult,
) -> Outcome {
    let start = Instant::now();
    let (vm, notes) = match restored(arch, Profile::Debian, place, carrying, progress) {
        Ok(v) => v,
        Err(verdict) => {
            return Outcome {
                verdict,
                duration: start.elapsed(),
                merge_refused: false,
            };
        }
    };
    progress(&format!(
        "restored the {arch} guest in {:.1}s ({:.1}s since the case started)",
        vm.startup.as_secs_f64(),
        start.elapsed().as_secs_f64()
    ));
    let body_start = Instant::now();
    let result = body(&vm);
    progress(&format!(
        "case body took {:.1}s",
        body_start.elapsed().as_secs_f64()
    ));
    let merge_refused = matches!(result, Err(CaseError::MergeRefused(_)));
    let verdict = judge(result, expected, notes, || {
        vm.save_artifacts(&place.artifacts(name))
    });
    Outcome {
        verdict,
        duration: start.elapsed(),
        merge_refused,
    }
}

/// One case of one image in a `sysext-test run` session.
pub struct Row {
    pub image: String,
    pub arch: Arch,
    pub case: Case,
    pub outcome: Outcome,
}

/// Runs `cases` (in [`Case::ALL`] order) for every subject. When an image's merge is
/// refused, its later cases are not run: the merge case already says why, once.
pub fn run_session(
    subjects: &[(Subject, Arch)],
    cases: &[Case],
    place: &Place,
    progress: &dyn Fn(&str),
) -> Vec<Row> {
    let mut cases = cases.to_vec();
    cases.sort();
    cases.dedup();
    let mut rows = Vec::new();
    for (subject, arch) in subjects {
        let mut refused = false;
        for &case in &cases {
            let name = match case {
                Case::Boot => format!("boot::{arch}::{}", subject.name),
                Case::Ignition => format!("ignition::{arch}::{}", subject.name),
                _ => format!("vm::{arch}::{}::{case}", subject.name),
            };
            let outcome = if refused && case.needs_merge() {
                Outcome {
                    verdict: Verdict::NotRun {
                        reason: "the merge was refused (see the merge case)".into(),
                    },
                    duration: Duration::ZERO,
                    merge_refused: true,
                }
            } else {
                progress(&format!("{name} ..."));
                let indent = |l: &str| progress(&format!("  {l}"));
                let o = if case == Case::Ignition {
                    crate::ignition::run(
                        &name,
                        subject,
                        *arch,
                        crate::ignition::Variant::AsPrinted,
                        subject.manifest.expected_failure(Case::Ignition),
                        place,
                        &indent,
                    )
                } else if case == Case::Boot {
                    // The bakery's layout: NAME.conf beside the image is baked in too.
                    let conf = subject
                        .image
                        .with_file_name(format!("{}.conf", subject.name));
                    let conf = conf.is_file().then_some(conf);
                    crate::boot::run(
                        &name,
                        subject,
                        *arch,
                        conf.as_deref(),
                        place,
                        &indent,
                        |_| Ok(()),
                    )
                } else {
                    run_case(&name, subject, *arch, case, place, &indent)
                };
                progress(&format!(
                    "{name}: {} in {:.1}s",
                    o.verdict.word(),
                    o.duration.as_secs_f64()
                ));
                o
            };
            refused |= outcome.merge_refused;
            rows.push(Row {
                image: subject.file_name.clone(),
                arch: *arch,
                case,
                outcome,
            });
        }
    }
    rows
}

/// The exit status of a session: 2 when the harness broke anywhere (no verdict), else 1
/// when a case failed or did not run, else 0.
pub fn exit_status(rows: &[Row]) -> u8 {
    if rows
        .iter()
        .any(|r| matches!(r.outcome.verdict, Verdict::Error { .. }))
    {
        2
    } else if rows.iter().all(|r| r.outcome.verdict.is_pass()) {
        0
    } else {
        1
    }
}
