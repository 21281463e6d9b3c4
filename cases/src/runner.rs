//! One runner joins a way of reaching the guest (`via/`) and what a case checks there
//! (`checks/`): reach the guest, run the checks, judge the result against the manifest's
//! expected failure (systemd's words only; a harness error never counts) and keep the
//! artifacts of anything but a plain pass. nextest's trials (one case per process), the
//! sysupdate cycles and `sysext-test run` (a session of cases) all come through here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sysext_builder::Arch;
use sysext_builder::guest::Profile;
use sysext_harness::{Mirror, Place, Vm, kernel_death};

use crate::checks;
use crate::outcome::{
    Assertion, Case, CaseError, CaseResult, ExpectedFailure, NotReached, Outcome, Verdict, judge,
};
use crate::subject::Subject;
use crate::via::Via;
use crate::via::baked::{self, Baked};
use crate::via::ignition::{self, Provisioned, Variant};
use crate::via::runtime;
use sysext_builder::flatcar_release::MergeModel;

/// A way of reaching the guest ([`Via`]) with what it needs.
#[derive(Clone, Copy)]
pub enum Setup<'a> {
    /// A restored guest of `profile` with `carrying` on its payload disk (the case
    /// installs it).
    Runtime {
        carrying: Option<&'a Path>,
        profile: Profile,
    },
    /// `subject` (and `conf`, its sysupdate config) baked into the disk of the Flatcar
    /// guest of merge `model`, cold-booted.
    Baked {
        subject: &'a Subject,
        conf: Option<&'a Path>,
        model: MergeModel,
    },
    /// `subject` provisioned by Ignition with the `variant` config, first-booted on the
    /// Flatcar guest of merge `model`.
    Ignition {
        subject: &'a Subject,
        variant: Variant,
        model: MergeModel,
    },
}

impl<'a> Setup<'a> {
    /// The plain setup of `case`'s way for `subject`.
    pub fn for_case(case: Case, subject: &'a Subject) -> Setup<'a> {
        match case.via() {
            // A reboot is only worth the boot on the host the image is for: the Flatcar
            // guest (its merge at boot, ensure-sysext's reload), unless the manifest
            // names another.
            Via::Runtime if case == Case::Reboot => Setup::Runtime {
                carrying: Some(&subject.image),
                profile: subject
                    .manifest
                    .guest
                    .as_deref()
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(Profile::Flatcar),
            },
            Via::Runtime => Setup::Runtime {
                carrying: Some(&subject.image),
                profile: subject.manifest.runtime_profile(),
            },
            Via::Baked => Setup::Baked {
                subject,
                conf: None,
                model: MergeModel::RealRoot,
            },
            Via::Ignition => Setup::Ignition {
                subject,
                variant: Variant::AsPrinted,
                model: MergeModel::RealRoot,
            },
        }
    }

    pub fn via(&self) -> Via {
        match self {
            Setup::Runtime { .. } => Via::Runtime,
            Setup::Baked { .. } => Via::Baked,
            Setup::Ignition { .. } => Via::Ignition,
        }
    }
}

/// A guest the image has reached, as its way hands it over.
pub enum Reached {
    Runtime { vm: Vm, notes: Vec<String> },
    Baked(Baked),
    Ignition(Provisioned),
}

impl Reached {
    pub fn vm(&self) -> &Vm {
        match self {
            Reached::Runtime { vm, .. } => vm,
            Reached::Baked(b) => &b.vm,
            Reached::Ignition(p) => &p.vm,
        }
    }

    /// The guest, to reboot it.
    pub fn vm_mut(&mut self) -> &mut Vm {
        match self {
            Reached::Runtime { vm, .. } => vm,
            Reached::Baked(b) => &mut b.vm,
            Reached::Ignition(p) => &mut p.vm,
        }
    }

    fn notes(&self) -> Vec<String> {
        match self {
            Reached::Runtime { notes, .. } => notes.clone(),
            _ => Vec::new(),
        }
    }

    fn mirror(&self) -> Option<&Mirror> {
        match self {
            Reached::Ignition(p) => Some(&p.mirror),
            _ => None,
        }
    }
}

/// Reaches the guest the way `setup` says.
fn reach(
    arch: Arch,
    setup: &Setup,
    place: &Place,
    progress: &dyn Fn(&str),
) -> Result<Reached, NotReached> {
    match *setup {
        Setup::Runtime { carrying, profile } => {
            let (vm, notes) = runtime::restore(arch, profile, place, carrying, progress)?;
            Ok(Reached::Runtime { vm, notes })
        }
        Setup::Baked {
            subject,
            conf,
            model,
        } => baked::reach(subject, arch, conf, model, progress).map(Reached::Baked),
        Setup::Ignition {
            subject,
            variant,
            model,
        } => ignition::reach(subject, arch, variant, model, progress).map(Reached::Ignition),
    }
}

/// Reaches the guest the way `setup` says, runs `body` there and judges it against
/// `expected` (a negative test). `name` names the artifacts directory.
pub fn run_with(
    name: &str,
    arch: Arch,
    setup: Setup,
    expected: Option<&ExpectedFailure>,
    place: &Place,
    progress: &dyn Fn(&str),
    body: impl FnOnce(&mut Reached) -> CaseResult,
) -> Outcome {
    let start = Instant::now();
    let artifacts = place.artifacts(name);
    let mut reached = match reach(arch, &setup, place, progress) {
        Ok(r) => r,
        Err(NotReached::Harness { stage, message }) => {
            return Outcome::harness_error(&stage, message, start.elapsed());
        }
        Err(NotReached::BrokeBoot { assertion, console }) => {
            let verdict = judge(
                Err(CaseError::Fail(assertion)),
                expected,
                Vec::new(),
                || keep_console(&artifacts, &console),
            );
            return Outcome {
                verdict,
                duration: start.elapsed(),
                merge_refused: false,
            };
        }
    };
    progress(&format!(
        "the {arch} guest answered {:.1}s after QEMU started ({:.1}s since the case started)",
        reached.vm().startup.as_secs_f64(),
        start.elapsed().as_secs_f64()
    ));
    let body_start = Instant::now();
    let result = body(&mut reached);
    progress(&format!(
        "case body took {:.1}s",
        body_start.elapsed().as_secs_f64()
    ));
    let merge_refused = matches!(result, Err(CaseError::MergeRefused(_)));
    let verdict = judge(result, expected, reached.notes(), || {
        let dir = reached.vm().save_artifacts(&artifacts);
        if let Some(m) = reached.mirror() {
            keep_mirror_log(&dir, m);
        }
        dir
    });
    Outcome {
        verdict,
        duration: start.elapsed(),
        merge_refused,
    }
}

/// Several subjects on one restored guest of `arch`, merged at once
/// ([`checks::together`]): each one's manifest commands must work, and `progress` hears
/// which image's copy of its program each command reached. The first subject rides on the
/// payload disk, the others go through SSH.
pub fn run_together(
    name: &str,
    subjects: &[Subject],
    arch: Arch,
    expected: Option<&ExpectedFailure>,
    place: &Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    let setup = Setup::Runtime {
        carrying: None,
        profile: Profile::Debian,
    };
    run_with(name, arch, setup, expected, place, progress, |reached| {
        checks::together::check(reached.vm(), subjects, progress)
    })
}

/// One case of one subject on one arch: what nextest runs as a trial and a session runs
/// as a row.
#[derive(Clone, Copy)]
pub struct Trial<'a> {
    /// Names the artifacts directory (the trial's name).
    pub name: &'a str,
    pub subject: &'a Subject,
    pub arch: Arch,
    pub case: Case,
    /// How the image reaches the guest; [`Setup::for_case`] unless a caller needs more.
    pub setup: Setup<'a>,
    /// The failure it exists for (a negative test); the manifest's by default.
    pub expected: Option<&'a ExpectedFailure>,
}

impl<'a> Trial<'a> {
    /// `case` for `subject` the plain way, expecting what its manifest says.
    pub fn new(name: &'a str, subject: &'a Subject, arch: Arch, case: Case) -> Trial<'a> {
        Trial {
            name,
            subject,
            arch,
            case,
            setup: Setup::for_case(case, subject),
            expected: subject.manifest.expected_failure(case),
        }
    }

    /// Runs the trial. A harness error whose guest kernel died (an oops or a panic on the
    /// console) runs once more: under TCG with two vCPUs the kernel's own code patching
    /// (int3 in `get_page_from_freelist`, seen in a restored guest) sometimes oopses with no
    /// image involved. The second attempt's outcome is the verdict, with a note; an image
    /// that kills the kernel kills it again, and stays a harness error, never a pass.
    pub fn run(&self, place: &Place, progress: &dyn Fn(&str)) -> Outcome {
        let attempt = || {
            run_with(
                self.name,
                self.arch,
                self.setup,
                self.expected,
                place,
                progress,
                |reached| check(self.case, reached, self.subject, progress),
            )
        };
        let started = std::time::SystemTime::now();
        let first = attempt();
        let Verdict::Error { message, .. } = &first.verdict else {
            return first;
        };
        // The error names the death when the harness saw it (a boot, a lost guest); a
        // case's command that failed after an oops left it only in the kept console, read
        // if this attempt wrote it (an older run's console says nothing of this one).
        let console_log = place.artifacts(self.name).join("console.log");
        let fresh = std::fs::metadata(&console_log)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= started);
        let kept = if fresh {
            std::fs::read_to_string(&console_log).unwrap_or_default()
        } else {
            String::new()
        };
        let Some(died) = kernel_death::line(message)
            .or_else(|| kernel_death::line(&kept))
            .map(str::to_string)
        else {
            return first;
        };
        progress(&format!(
            "the guest's kernel died ({died}); TCG sometimes kills it with no image involved, so running the case once more (an image that kills it does again)"
        ));
        let second = attempt();
        second.noted(format!(
            "run twice: the first attempt's guest kernel died ({died}); the second attempt is the verdict"
        ))
    }
}

/// What `case` checks in the guest its way reached.
fn check(case: Case, reached: &mut Reached, s: &Subject, progress: &dyn Fn(&str)) -> CaseResult {
    match (case, reached) {
        (
            Case::Merge | Case::Binaries | Case::Services | Case::Unmerge | Case::Reboot,
            Reached::Runtime { vm, .. },
        ) => {
            // The services case reads the journal from here on (a cursor); the reboot case
            // compares the next boot with this one's own bad lines. The other cases do not
            // scan, so they pay no round trip for it.
            let (cursor, before) = match case {
                Case::Services => (Some(journal_cursor(vm)?), Vec::new()),
                Case::Reboot => {
                    let out = vm.execute(&checks::journal::scan_command(None))?;
                    let before = checks::journal::bad_lines(&out.stdout)
                        .iter()
                        .map(|l| checks::journal::fold(l))
                        .collect();
                    (None, before)
                }
                _ => (None, Vec::new()),
            };
            let merged = runtime::install_and_merge(vm, s)?;
            match case {
                Case::Merge => checks::merge::check(s, &merged),
                Case::Binaries => checks::binaries::check(vm, s),
                Case::Services => {
                    checks::services::check(vm, s)?;
                    // The units have started and been watched: a crash on the way is in
                    // the journal now, whatever state they ended in.
                    checks::journal::check(
                        vm,
                        cursor.as_deref(),
                        &[],
                        &format!("the services case with {}", s.file_name),
                    )
                }
                Case::Reboot => checks::reboot::check(vm, s, &before, progress),
                _ => checks::unmerge::check(vm, s, &merged),
            }
        }
        (Case::Boot, Reached::Baked(b)) => checks::boot::check(&b.vm, s, &b.baseline),
        (Case::Ignition, Reached::Ignition(p)) => {
            checks::ignition::check(&p.vm, s, p.variant, &p.mirror, &p.baseline)
        }
        (case, _) => Err(CaseError::Fail(Assertion::new(format!(
            "the {case} case runs only {}: the runner was given another way",
            case.via()
        )))),
    }
}

/// The journal's position now; a guest that cannot say it is a harness problem, never a
/// reason to read the whole boot instead.
fn journal_cursor(vm: &Vm) -> Result<String, CaseError> {
    let out = vm.execute(checks::journal::CURSOR)?;
    checks::journal::parse_cursor(&out.stdout).ok_or_else(|| {
        CaseError::Harness(sysext_harness::HarnessError::Command {
            cmd: checks::journal::CURSOR.into(),
            what: "printed no cursor".into(),
            output: out.combined(),
        })
    })
}

fn keep_console(dir: &Path, console: &str) -> PathBuf {
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = sysext_builder::atomic::write_bytes(&dir.join("console.log"), console.as_bytes());
    }
    dir.to_path_buf()
}

/// The server's side of a case that did not pass, next to the guest's.
pub fn keep_mirror_log(dir: &Path, mirror: &Mirror) {
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(json) = serde_json::to_string_pretty(&mirror.requests())
    {
        let _ =
            sysext_builder::atomic::write_bytes(&dir.join("mirror-requests.json"), json.as_bytes());
    }
}

/// One case of one image in a `sysext-test run` session.
pub struct Row {
    pub image: String,
    pub arch: Arch,
    pub case: Case,
    pub outcome: Outcome,
}

/// The trial name of `case` for `subject` on `arch` (`vm::…::<case>`, `boot::…`,
/// `ignition::…`): the same names nextest lists.
pub fn trial_name(case: Case, arch: Arch, subject: &str) -> String {
    match case.via() {
        Via::Runtime => format!("vm::{arch}::{subject}::{case}"),
        via => format!("{}::{arch}::{subject}", via.family()),
    }
}

/// Runs `cases` (in [`Case::ALL`] order) for every subject. When an image's merge is
/// refused, its later run-time cases are not run: the merge case already says why, once.
/// `progress` hears `[k/N] name ...` before each case and its verdict after.
pub fn run_session(
    subjects: &[(Subject, Arch)],
    cases: &[Case],
    place: &Place,
    progress: &dyn Fn(&str),
) -> Vec<Row> {
    let mut cases = cases.to_vec();
    cases.sort();
    cases.dedup();
    let total = subjects.len() * cases.len();
    let mut rows = Vec::new();
    for (subject, arch) in subjects {
        let mut refused = false;
        for &case in &cases {
            let name = trial_name(case, *arch, &subject.name);
            let k = rows.len() + 1;
            let outcome = if refused && case.needs_merge() {
                Outcome {
                    verdict: Verdict::NotRun {
                        reason: "the merge was refused (see the merge case)".into(),
                    },
                    duration: Duration::ZERO,
                    merge_refused: true,
                }
            } else {
                progress(&format!("[{k}/{total}] {name} ..."));
                let indent = |l: &str| progress(&format!("  {l}"));
                // The bakery's layout: NAME.conf beside the image is baked in too.
                let conf = subject
                    .image
                    .with_file_name(format!("{}.conf", subject.name));
                let mut trial = Trial::new(&name, subject, *arch, case);
                if let Setup::Baked { subject, model, .. } = trial.setup {
                    trial.setup = Setup::Baked {
                        subject,
                        conf: conf.is_file().then_some(conf.as_path()),
                        model,
                    };
                }
                trial.run(place, &indent)
            };
            progress(&format!(
                "[{k}/{total}] {name}: {} in {:.1}s",
                outcome.verdict.word(),
                outcome.duration.as_secs_f64()
            ));
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
    } else if !rows.is_empty() && rows.iter().all(|r| r.outcome.verdict.is_pass()) {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_names_are_the_ones_nextest_lists() {
        assert_eq!(
            trial_name(Case::Services, Arch::Arm64, "hello"),
            "vm::arm64::hello::services"
        );
        assert_eq!(
            trial_name(Case::Boot, Arch::X86_64, "hello"),
            "boot::x86-64::hello"
        );
        assert_eq!(
            trial_name(Case::Ignition, Arch::X86_64, "hello"),
            "ignition::x86-64::hello"
        );
    }

    #[test]
    fn a_session_with_no_case_is_not_green() {
        assert_eq!(exit_status(&[]), 1);
    }
}
