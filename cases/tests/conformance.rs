//! The conformance suite as a nextest binary (libtest-mimic, `harness = false`).
//!
//! Listing is cheap: it reads the fixture specs and nothing else. Each trial builds what it
//! needs inside itself, so `cargo nextest run -E 'test(lint::busybox)'` does only that work.
//!
//! Subjects: the bundled fixtures (`lint::<fixture>`, with the verdict in their `[expect]`),
//! plus any images named by `SYSEXT_TEST_SUBJECTS` (a directory or a comma-separated list of
//! files), which must lint without errors (`lint::subject::<file>`) and pass every VM case
//! (`vm::<arch>::subject::<file>::<case>`, the arch from a bakery-style name, else x86-64,
//! with the manifest `<file without .raw>.toml` beside the image when there is one).
//!
//! sysupdate cycles: `update::<arch>::<fixture>::<cycle>` for every fixture with a
//! `[test.update]` plan, each against a mirror of its own (see `sysext_cases::update`).
//!
//! VM cases: `vm::<arch>::<fixture>::<case>` for every fixture with a `[test]` manifest, on
//! each arch it builds for. A fixture that lists `expect-failure` runs only those cases, and
//! passes when they fail for the stated reason (the negative tests). Each case restores the
//! run's snapshot of the guest; the first case of a run cold-boots and saves it.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use sysext_builder::Arch;
use sysext_builder::build;
use sysext_cases::fixtures::{self, Fixture};
use sysext_cases::lint::{ImageReport, Linter, Options, Severity};
use sysext_cases::manifest::Manifest;
use sysext_cases::manifest::UpdatePlan;
use sysext_cases::update;
use sysext_cases::vm::{self, Subject};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    match fixtures::extensions() {
        Ok(list) => {
            for fx in list {
                trials.push(Trial::test(format!("lint::{}", fx.name), move || {
                    lint_fixture(&fx)
                }));
            }
        }
        Err(e) => trials.push(Trial::test("lint::fixtures", move || {
            Err(Failed::from(format!("cannot load fixtures: {e}")))
        })),
    }
    if let Ok(list) = fixtures::extensions() {
        for fx in list {
            let Some(table) = fx.spec.test.clone() else {
                continue;
            };
            let manifest = match Manifest::from_table(&table) {
                Ok(m) => m,
                Err(e) => {
                    let name = format!("vm::{}::manifest", fx.name);
                    trials.push(Trial::test(name, move || Err(Failed::from(e.clone()))));
                    continue;
                }
            };
            let cases: Vec<&str> = if manifest.expect_failure.is_empty() {
                vm::CASES.to_vec()
            } else {
                vm::CASES
                    .iter()
                    .copied()
                    .filter(|c| manifest.expected_failure(c).is_some())
                    .collect()
            };
            if let Some(plan) = manifest.update.clone() {
                for arch in arches(&fx) {
                    for cycle in update::cycles_for(arch) {
                        let (fx, plan, cycle) = (fx.clone(), plan.clone(), cycle.to_string());
                        let name = format!("update::{arch}::{}::{cycle}", fx.name);
                        trials.push(Trial::test(name.clone(), move || {
                            update_fixture(&name, &fx, &plan, arch, &cycle)
                        }));
                    }
                }
            }
            for arch in arches(&fx) {
                for case in &cases {
                    let (fx, manifest, case) = (fx.clone(), manifest.clone(), case.to_string());
                    let name = format!("vm::{arch}::{}::{case}", fx.name);
                    trials.push(Trial::test(name.clone(), move || {
                        vm_fixture(&name, &fx, &manifest, arch, &case)
                    }));
                }
            }
        }
    }
    for subject in subjects() {
        let name = subject
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let image = subject.clone();
        trials.push(Trial::test(format!("lint::subject::{name}"), move || {
            lint_subject(&image)
        }));
        let arch = subject_arch(&name);
        for case in vm::CASES {
            let (image, case) = (subject.clone(), case.to_string());
            let trial = format!("vm::{arch}::subject::{name}::{case}");
            trials.push(Trial::test(trial.clone(), move || {
                vm_subject(&trial, &image, arch, &case)
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Author images from `SYSEXT_TEST_SUBJECTS`.
fn subjects() -> Vec<PathBuf> {
    let Some(v) = std::env::var_os("SYSEXT_TEST_SUBJECTS").filter(|v| !v.is_empty()) else {
        return Vec::new();
    };
    let p = PathBuf::from(&v);
    if p.is_dir() {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "raw"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    } else {
        v.to_string_lossy()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect()
    }
}

fn arches(fx: &Fixture) -> Vec<Arch> {
    match fx.spec.arch.as_deref().and_then(|a| a.parse().ok()) {
        Some(a) => vec![a],
        None => Arch::ALL.to_vec(),
    }
}

fn lint_fixture(fx: &Fixture) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    for arch in arches(fx) {
        let out = tmp.path().join(arch.systemd_name());
        let built = build::build_spec(
            &fx.spec,
            spec_dir,
            &out,
            &build::Options {
                arch: Some(arch),
                ..Default::default()
            },
        )
        .map_err(|e| format!("building {} for {arch}: {e}", fx.path.display()))?;
        let linter = Linter::new(Options::default());
        let (report, _) = linter.lint_image(&built.image).map_err(|e| e.to_string())?;
        check_expectation(fx, arch, &report)?;
        let dir: Vec<&'static str> = linter
            .lint_path(&out)
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|r| r.kind == "release-dir")
            .flat_map(|r| r.findings.iter().map(|f| f.rule))
            .collect();
        let missing: Vec<&String> = fx
            .expect
            .dir_findings
            .iter()
            .filter(|r| !dir.contains(&r.as_str()))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} ({arch}): release directory lacks {missing:?}; got {dir:?}",
                fx.path.display()
            )
            .into());
        }
    }
    Ok(())
}

fn check_expectation(fx: &Fixture, arch: Arch, report: &ImageReport) -> Result<(), Failed> {
    let got: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    let missing: Vec<&String> = fx
        .expect
        .findings
        .iter()
        .filter(|r| !got.contains(&r.as_str()))
        .collect();
    let unexpected: Vec<String> = if fx.expect.only {
        report
            .findings
            .iter()
            .filter(|f| {
                f.severity >= Severity::Warning && !fx.expect.findings.iter().any(|r| r == f.rule)
            })
            .map(|f| format!("{} {}: {}", f.severity.as_str(), f.rule, f.message))
            .collect()
    } else {
        Vec::new()
    };
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} ({arch}): expected {:?}; missing {missing:?}; unexpected {unexpected:#?}\nall findings: {got:?}",
        fx.path.display(),
        fx.expect.findings
    )
    .into())
}

fn lint_subject(path: &Path) -> Result<(), Failed> {
    let linter = Linter::new(Options::default());
    let reports = linter.lint_path(path).map_err(|e| e.to_string())?;
    let errors: Vec<String> = reports
        .iter()
        .flat_map(|r| r.findings.iter())
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{}: {}: {}", f.rule, f.path, f.message))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        })
}

fn vm_fixture(
    name: &str,
    fx: &Fixture,
    manifest: &Manifest,
    arch: Arch,
    case: &str,
) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    let built = build::build_spec(
        &fx.spec,
        spec_dir,
        tmp.path(),
        &build::Options {
            arch: Some(arch),
            ..Default::default()
        },
    )
    .map_err(|e| format!("building {} for {arch}: {e}", fx.path.display()))?;
    let subject = Subject::from_image(&built.image, manifest.clone())?;
    run_vm_case(name, &subject, arch, case)
}

fn run_vm_case(name: &str, subject: &Subject, arch: Arch, case: &str) -> Result<(), Failed> {
    let progress = |l: &str| eprintln!("{name}: {l}");
    let target = target_dir();
    let snapshots = target.join("sysext-test").join("snapshots");
    let outcome = vm::runner::run_case(name, subject, arch, case, &target, &snapshots, &progress);
    match outcome.result {
        Ok(note) => {
            if let Some(n) = note {
                eprintln!("{name}: {n}");
            }
            Ok(())
        }
        Err(msg) => Err(msg.into()),
    }
}

fn update_fixture(
    name: &str,
    fx: &Fixture,
    plan: &UpdatePlan,
    arch: Arch,
    cycle: &str,
) -> Result<(), Failed> {
    let progress = |l: &str| eprintln!("{name}: {l}");
    let target = target_dir();
    let snapshots = target.join("sysext-test").join("snapshots");
    let place = vm::runner::Place {
        arch,
        target_dir: &target,
        snapshot_base: &snapshots,
    };
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    let outcome = update::run_cycle(name, &fx.spec, spec_dir, plan, cycle, &place, &progress);
    eprintln!("{name}: took {:.1}s", outcome.duration.as_secs_f64());
    outcome.result.map(|_| ()).map_err(Failed::from)
}

/// The arch of a bakery-style file name (`NAME-VERSION-ARCH.raw`), else x86-64.
fn subject_arch(file: &str) -> Arch {
    if file.ends_with("-arm64.raw") {
        Arch::Arm64
    } else {
        Arch::X86_64
    }
}

fn vm_subject(name: &str, image: &Path, arch: Arch, case: &str) -> Result<(), Failed> {
    let manifest_path = image.with_extension("toml");
    let manifest = if manifest_path.is_file() {
        Manifest::load(&manifest_path)?
    } else {
        Manifest::default()
    };
    let subject = Subject::from_image(image, manifest)?;
    run_vm_case(name, &subject, arch, case)
}
