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
//! The differential oracle: `differential::<arch>::<family>` (images, versions, units, transfers), lint's
//! predictions against systemd in the Debian guest, seed [`DIFFERENTIAL_SEED`]; a
//! disagreement fails the trial with both sides' words (`sysext-test differential` runs
//! the same with any seed and count).
//!
//! VM cases: `vm::<arch>::<fixture>::<case>` for every fixture with a `[test]` manifest, on
//! each arch it builds for. A fixture that lists `expect-failure` runs only those cases, and
//! passes when they fail for the stated reason (the negative tests). Each case restores the
//! run's snapshot of the guest; the first case of a run cold-boots and saves it.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use sysext_builder::Arch;
use sysext_builder::build;
use sysext_builder::flatcar_release::MergeModel;
use sysext_cases::differential;
use sysext_cases::fixtures::{self, Fixture};
use sysext_cases::lint::{Linter, Options, Severity};
use sysext_cases::manifest::{Manifest, UpdatePlan};
use sysext_cases::outcome::{Case, ExpectedFailure, Outcome};
use sysext_cases::release_diff;
use sysext_cases::replay;
use sysext_cases::runner::{self, Setup};
use sysext_cases::subject::Subject;
use sysext_cases::update;
use sysext_cases::via::ignition::Variant;
use sysext_harness::Place;

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
    // The bakery's cross-release and cross-extension bugs: `diff::<replay>` for releases,
    // `lint::<replay>` for extensions together.
    match replay::all() {
        Ok(list) => {
            for r in list {
                let name = match r.check {
                    replay::Check::Diff => format!("diff::{}", r.name),
                    replay::Check::Together => {
                        // In a guest too: the commands show which copy each reached.
                        let (rv, name) = (r.clone(), format!("vm::x86-64::{}::together", r.name));
                        trials.push(Trial::test(name.clone(), move || {
                            let progress = |l: &str| eprintln!("{name}: {l}");
                            let outcome = rv
                                .run_together(&name, Arch::X86_64, &Place::from_env(), &progress)
                                .map_err(Failed::from)?;
                            finish(&name, outcome)
                        }));
                        format!("lint::{}", r.name)
                    }
                    replay::Check::UpdateReboot => {
                        let name = format!("update::x86-64::{}::reboot", r.name);
                        trials.push(Trial::test(name.clone(), move || {
                            replay_update_reboot(&name, &r)
                        }));
                        continue;
                    }
                };
                trials.push(Trial::test(name, move || replay_trial(&r)));
            }
        }
        Err(e) => trials.push(Trial::test("diff::replays", move || {
            Err(Failed::from(format!("cannot load replays: {e}")))
        })),
    }
    if let Ok(list) = fixtures::extensions() {
        for fx in list {
            let manifest = match fx.manifest() {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    // Named with each arch, so every arch's workflow filter selects it.
                    for arch in arches(&fx) {
                        let e = e.clone();
                        let name = format!("vm::{arch}::{}::manifest", fx.name);
                        trials.push(Trial::test(name, move || Err(Failed::from(e))));
                    }
                    continue;
                }
            };
            let cases = manifest.runtime_cases();
            if let Some(plan) = manifest.update.clone() {
                for arch in arches(&fx) {
                    for &cycle in update::cycles_for(arch) {
                        let (fx, plan) = (fx.clone(), plan.clone());
                        let name = format!("update::{arch}::{}::{cycle}", fx.name);
                        trials.push(Trial::test(name.clone(), move || {
                            update_fixture(&name, &fx, &plan, arch, cycle)
                        }));
                    }
                }
            }
            for arch in arches(&fx) {
                // First-boot provisioning sets up the image and its sysupdate config, so it
                // runs for the subjects that should work and have an update plan (each one
                // also gets a config with a wrong image digest). Merging at boot is the boot
                // case's, for every fixture.
                let models = if boots_on(&fx, &manifest, arch) {
                    models(&fx)
                } else {
                    Vec::new()
                };
                for model in models {
                    // The real-root model's trials keep their plain names; the initrd
                    // model's end in `::initrd` (same verdict cell: both must pass).
                    let tail = match model {
                        MergeModel::RealRoot => String::new(),
                        MergeModel::Initrd => "::initrd".to_string(),
                    };
                    for variant in ignition_variants(&fx, &manifest, model, arch) {
                        let (fxi, mi) = (fx.clone(), manifest.clone());
                        let name = match variant {
                            Variant::AsPrinted => {
                                format!("ignition::{arch}::{}{tail}", fx.name)
                            }
                            Variant::WrongHash => {
                                format!("ignition::{arch}::{}::wrong-hash{tail}", fx.name)
                            }
                            Variant::Unmasked => {
                                format!("ignition::{arch}::{}::unmasked{tail}", fx.name)
                            }
                        };
                        trials.push(Trial::test(name.clone(), move || {
                            ignition_fixture(&name, &fxi, &mi, arch, variant, model)
                        }));
                    }
                    let (fxb, mb) = (fx.clone(), manifest.clone());
                    let name = format!("boot::{arch}::{}{tail}", fx.name);
                    trials.push(Trial::test(name.clone(), move || {
                        boot_fixture(&name, &fxb, &mb, arch, model)
                    }));
                }
                let reboot = reboots_on(&fx, &manifest, arch).then_some(Case::Reboot);
                for &case in cases.iter().chain(reboot.iter()) {
                    let (fx, manifest) = (fx.clone(), manifest.clone());
                    let name = format!("vm::{arch}::{}::{case}", fx.name);
                    trials.push(Trial::test(name.clone(), move || {
                        vm_fixture(&name, &fx, &manifest, arch, case)
                    }));
                }
            }
        }
    }
    // lint against systemd itself, on the fast generic guest: a fixed seed, a small count.
    for arch in Arch::ALL {
        for family in differential::Family::ALL {
            let name = format!("differential::{arch}::{}", family.name());
            trials.push(Trial::test(name.clone(), move || {
                differential_trial(&name, arch, family)
            }));
        }
    }
    match subjects() {
        Subjects::Files(files) => {
            for subject in files {
                loose_subject_trials(&mut trials, subject);
            }
        }
        Subjects::Store(dir) => match sysext_builder::store::open(&dir) {
            Ok(store) => store_trials(&mut trials, store),
            Err(e) => {
                // Nothing in a store whose digests do not hold can be trusted: the listing
                // fails, so nextest starts no test at all, let alone a VM.
                eprintln!("SYSEXT_TEST_SUBJECTS={}: {e}", dir.display());
                std::process::exit(2);
            }
        },
    }
    libtest_mimic::run(&args, trials).exit();
}

/// What `SYSEXT_TEST_SUBJECTS` names.
enum Subjects {
    /// Images (a comma-separated list, or a folder of images without a SHA256SUMS).
    Files(Vec<PathBuf>),
    /// A bakery release store: a folder per release tag, or a flat folder with SHA256SUMS.
    Store(PathBuf),
}

fn subjects() -> Subjects {
    let Some(v) = std::env::var_os("SYSEXT_TEST_SUBJECTS").filter(|v| !v.is_empty()) else {
        return Subjects::Files(Vec::new());
    };
    let p = PathBuf::from(&v);
    if p.is_dir() {
        if sysext_builder::store::detect(&p).is_some() {
            return Subjects::Store(p);
        }
        let mut out: Vec<PathBuf> = std::fs::read_dir(&p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "raw"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        Subjects::Files(out)
    } else {
        Subjects::Files(
            v.to_string_lossy()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
        )
    }
}

/// An author's image by itself: `lint::subject::<file>` and `vm::<arch>::subject::<file>::<case>`.
fn loose_subject_trials(trials: &mut Vec<Trial>, subject: PathBuf) {
    let name = subject
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let image = subject.clone();
    trials.push(Trial::test(format!("lint::subject::{name}"), move || {
        lint_subject(&image)
    }));
    let arch = sysext_builder::naming::arch_of(&name).unwrap_or(Arch::X86_64);
    for case in Case::RUNTIME {
        let image = subject.clone();
        let trial = format!("vm::{arch}::subject::{name}::{case}");
        trials.push(Trial::test(trial.clone(), move || {
            vm_subject(&trial, &image, arch, case)
        }));
    }
}

/// Every extension, version and arch of a verified store: `lint::`, `vm::`, `boot::` and
/// `ignition::` trials per image (`<arch>::<name>@<version>`), `update::` between each two
/// consecutive versions (named by the newer), and `store::digests`, which says what was
/// verified. Each extension's manifest comes from [`fixtures::manifest_for`].
fn store_trials(trials: &mut Vec<Trial>, store: sysext_builder::store::Store) {
    let verified: usize = store.manifests.iter().map(|(_, n)| n).sum();
    let summary = format!(
        "{}: {} image(s) of {} extension(s); {verified} digest line(s) in {} SHA256SUMS file(s) match",
        store.root.display(),
        store.images().count(),
        store.extensions.len(),
        store.manifests.len()
    );
    let pairs = release_diff::store_pairs(&store);
    let newest: Vec<PathBuf> = store.images().map(|(_, _, _, p)| p.to_path_buf()).collect();
    trials.push(Trial::test("store::collisions", move || {
        collisions(&newest)
    }));
    // The newest release of every extension merged on one guest, each manifest's commands
    // reaching its own program.
    if store.extensions.len() > 1 {
        for arch in Arch::ALL {
            if arch != Arch::X86_64 && !every_arch() {
                continue;
            }
            let images: Vec<(String, PathBuf)> = store
                .extensions
                .iter()
                .filter_map(|e| {
                    e.releases
                        .iter()
                        .rev()
                        .find_map(|r| r.images.get(&arch))
                        .map(|p| (e.name.clone(), p.clone()))
                })
                .collect();
            if images.len() < 2 {
                continue;
            }
            let name = format!("vm::{arch}::together");
            trials.push(Trial::test(name.clone(), move || {
                store_together(&name, &images, arch)
            }));
        }
    }
    let root = store.root.clone();
    trials.push(Trial::test("store::digests", move || {
        // Verified again now, not by the listing's word: the files may have changed since.
        let again = sysext_builder::store::open(&root).map_err(|e| e.to_string())?;
        let lines: usize = again.manifests.iter().map(|(_, n)| n).sum();
        if lines == 0 {
            return Err(format!(
                "{}: no digest line names a file of the store",
                root.display()
            )
            .into());
        }
        eprintln!("{summary}");
        Ok(())
    }));
    for ext in &store.extensions {
        let manifest = match fixtures::manifest_for(&ext.name) {
            Ok(m) => m,
            Err(e) => {
                for arch in Arch::ALL {
                    let e = e.clone();
                    let name = format!("vm::{arch}::{}@manifest", ext.name);
                    trials.push(Trial::test(name, move || Err(Failed::from(e))));
                }
                continue;
            }
        };
        let plain = manifest.clone().unwrap_or_default();
        let unsupported = plain.unsupported_on(sysext_builder::guest::SYSTEMD_MAJOR);
        let first = trials.len();
        for (old, new) in pairs.iter().filter(|(_, n)| n.extension == ext.name) {
            for &arch in old.images.keys() {
                let (o, n) = (old.clone(), new.clone());
                let accept = plain.accept_regressions.clone();
                let name = format!("diff::{arch}::{}@{}", ext.name, new.version);
                trials.push(Trial::test(name, move || {
                    diff_release(&o, &n, arch, &accept)
                }));
            }
        }
        for release in &ext.releases {
            for (&arch, image) in &release.images {
                let id = format!("{arch}::{}@{}", ext.name, release.version);
                let img = image.clone();
                trials.push(Trial::test(format!("lint::{id}"), move || {
                    lint_subject(&img)
                }));
                for case in plain.runtime_cases() {
                    let (img, m) = (image.clone(), plain.clone());
                    let name = format!("vm::{id}::{case}");
                    trials.push(Trial::test(name.clone(), move || {
                        let subject = Subject::from_image(&img, m)?;
                        run_case(&name, &subject, arch, case)
                    }));
                }
                let (img, m) = (image.clone(), plain.clone());
                let name = format!("boot::{id}");
                trials.push(Trial::test(name.clone(), move || {
                    store_boot(&name, &img, &m, arch)
                }));
                if plain.expect_failure.is_empty() {
                    let (img, m) = (image.clone(), plain.clone());
                    let name = format!("ignition::{id}");
                    trials.push(Trial::test(name.clone(), move || {
                        let subject = Subject::from_image(&img, m)?;
                        run_case(&name, &subject, arch, Case::Ignition)
                    }));
                }
            }
        }
        if !plain.expect_failure.is_empty() {
            skip_unsupported(&mut trials[first..], &unsupported);
            continue;
        }
        for arch in Arch::ALL {
            for (older, newer) in ext.updates(arch) {
                let plan = plain
                    .update
                    .clone()
                    .unwrap_or_else(|| UpdatePlan::by_attached_image(&ext.name, arch));
                let releases = vec![
                    (older.version.clone(), older.images[&arch].clone()),
                    (newer.version.clone(), newer.images[&arch].clone()),
                ];
                let reboot =
                    (arch == Arch::X86_64 || every_arch()).then_some(update::Cycle::Reboot);
                for cycle in [update::Cycle::Update, update::Cycle::Rollback]
                    .into_iter()
                    .chain(reboot)
                {
                    let name = format!(
                        "update::{arch}::{}@{}::{cycle}-from-{}",
                        ext.name, newer.version, older.version
                    );
                    let (ext_name, conf) = (ext.name.clone(), ext.conf().map(Path::to_path_buf));
                    let (plan, releases) = (plan.clone(), releases.clone());
                    trials.push(Trial::test(name.clone(), move || {
                        let given = update::Given {
                            name: &ext_name,
                            releases,
                            conf: conf.as_deref(),
                            plan: &plan,
                            expected: None,
                        };
                        let outcome = update::run_given_cycle(
                            &name,
                            &given,
                            cycle,
                            arch,
                            &Place::from_env(),
                            &|l: &str| eprintln!("{name}: {l}"),
                        );
                        finish(&name, outcome)
                    }));
                }
            }
        }
        skip_unsupported(&mut trials[first..], &unsupported);
    }
}

/// Marks an extension's VM trials ignored (nextest reports them skipped, and `report` never
/// counts a skipped cell as green) when its manifest needs a newer systemd than the guest's.
fn skip_unsupported(trials: &mut [Trial], why: &Option<String>) {
    let Some(why) = why else {
        return;
    };
    for t in trials
        .iter_mut()
        .filter(|t| !t.name().starts_with("lint::") && !t.name().starts_with("diff::"))
    {
        eprintln!("skipping {}: {why}", t.name());
        let taken = std::mem::replace(t, Trial::test("", || Ok(())));
        *t = taken.with_ignored_flag(true);
    }
}

/// A replayed bakery bug: the check finds exactly what the replay expects, no more.
fn replay_trial(r: &replay::Replay) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
    let (found, lines) = r.run(tmp.path()).map_err(Failed::from)?;
    for l in &lines {
        eprintln!("{}: {l}", r.name);
    }
    let want: std::collections::BTreeSet<String> = r.expect.iter().cloned().collect();
    if found == want {
        return Ok(());
    }
    let missing: Vec<&String> = want.difference(&found).collect();
    let extra: Vec<&String> = found.difference(&want).collect();
    Err(format!(
        "{} ({}): expected {want:?}; missing {missing:?}, unexpected {extra:?}",
        r.name, r.bug
    )
    .into())
}

/// A replayed update-and-reboot bug: the first release installed the docs' way, the
/// replay's transfer file, the update and a real reboot on x86-64; it fails with the
/// replay's words of systemd, or passes when it has none.
fn replay_update_reboot(name: &str, r: &replay::Replay) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| Failed::from(e.to_string()))?;
    let built = r.build(Arch::X86_64, tmp.path()).map_err(Failed::from)?;
    let ext = built.first().map(|(n, _, _)| n.clone()).unwrap_or_default();
    let releases = built.into_iter().map(|(_, v, p)| (v, p)).collect();
    let plan = UpdatePlan::by_attached_image(&ext, Arch::X86_64);
    let expected = (!r.expect.is_empty()).then(|| ExpectedFailure {
        case: Case::Reboot,
        systemd: r.expect.clone(),
    });
    let conf = r.conf_path();
    let given = update::Given {
        name: &ext,
        releases,
        conf: conf.as_deref(),
        plan: &plan,
        expected: expected.as_ref(),
    };
    let progress = |l: &str| eprintln!("{name}: {l}");
    let outcome = update::run_given_cycle(
        name,
        &given,
        update::Cycle::Reboot,
        Arch::X86_64,
        &Place::from_env(),
        &progress,
    );
    finish(name, outcome)
}

/// A store's extensions merged on one guest, each with its manifest.
fn store_together(name: &str, images: &[(String, PathBuf)], arch: Arch) -> Result<(), Failed> {
    let mut subjects = Vec::new();
    for (ext, image) in images {
        let manifest = fixtures::manifest_for(ext)
            .map_err(Failed::from)?
            .unwrap_or_default()
            .for_arch(arch);
        subjects.push(Subject::from_image(image, manifest).map_err(Failed::from)?);
    }
    let progress = |l: &str| eprintln!("{name}: {l}");
    let outcome = runner::run_together(name, &subjects, arch, None, &Place::from_env(), &progress);
    finish(name, outcome)
}

/// The store's extensions merged together (each one's newest release, per arch, with
/// Flatcar's built-ins): red on a path two of them ship with different contents.
fn collisions(images: &[PathBuf]) -> Result<(), Failed> {
    let linter = Linter::new(Options::default());
    let reports = linter
        .lint_together(images)
        .map_err(|e| Failed::from(e.to_string()))?;
    let mut errors = Vec::new();
    for r in &reports {
        for f in &r.findings {
            eprintln!(
                "{} {} {}: {}",
                r.path,
                f.severity.as_str(),
                f.rule,
                f.message
            );
            if f.severity == Severity::Error {
                errors.push(format!("{}: {}", f.rule, f.message));
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(errors.join("\n").into())
}

/// One arch of a store's release against the release before it: red on a regression the
/// extension's manifest does not accept, each named with both values; every change shown.
fn diff_release(
    old: &release_diff::Side,
    new: &release_diff::Side,
    arch: Arch,
    accept: &[release_diff::Acceptance],
) -> Result<(), Failed> {
    let Some(mut report) =
        release_diff::release_arch(old, new, arch).map_err(|e| Failed::from(e.to_string()))?
    else {
        return Ok(());
    };
    report.accept(accept);
    for c in &report.changes {
        let word = match (&c.accepted, c.is_regression()) {
            (Some(_), _) => "accepted",
            (None, true) => "REGRESSION",
            (None, false) => c.severity.as_str(),
        };
        eprintln!("{word} {}: {}", c.rule, c.message);
    }
    let regressions: Vec<String> = report
        .regressions()
        .map(|c| format!("{}: {}", c.rule, c.message))
        .collect();
    if regressions.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} {} -> {} on {arch}: {} (accept one in the manifest's accept-regressions if it is meant)",
        new.extension,
        old.version,
        new.version,
        regressions.join("; ")
    )
    .into())
}

/// A store's image baked into the Flatcar guest's disk and cold-booted.
fn store_boot(name: &str, image: &Path, manifest: &Manifest, arch: Arch) -> Result<(), Failed> {
    let subject = Subject::from_image(image, manifest.clone())?;
    run_case(name, &subject, arch, Case::Boot)
}

fn arches(fx: &Fixture) -> Vec<Arch> {
    match fx.spec.arch {
        Some(a) => vec![a],
        None => Arch::ALL.to_vec(),
    }
}

fn lint_fixture(fx: &Fixture) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    fixtures::check_lint(fx, tmp.path()).map_err(Failed::from)
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

fn vm_fixture(
    name: &str,
    fx: &Fixture,
    manifest: &Manifest,
    arch: Arch,
    case: Case,
) -> Result<(), Failed> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let subject = fixture_subject(fx, manifest, arch, tmp.path())?;
    run_case(name, &subject, arch, case)
}

/// The fixture built for `arch` into `dir`, as a VM subject.
fn fixture_subject(
    fx: &Fixture,
    manifest: &Manifest,
    arch: Arch,
    dir: &Path,
) -> Result<Subject, Failed> {
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    let built = build::build_spec(
        &fx.spec,
        spec_dir,
        dir,
        &build::Options {
            arch: Some(arch),
            ..Default::default()
        },
    )
    .map_err(|e| format!("building {} for {arch}: {e}", fx.path.display()))?;
    Ok(Subject::from_image(&built.image, manifest.clone())?)
}

/// The Ignition configs a fixture's first boot is tried with. Those that should work and
/// have an update plan: as printed and with a wrong image digest. Those whose image
/// replaces a Flatcar built-in (docker, containerd): as printed (the masks written) and,
/// on the real-root model, without the masks (the built-in must shadow the image). Which
/// masks are written and which extension systemd stacks on top do not depend on the
/// arch: those trials run on x86-64 only unless [`every_arch`].
fn ignition_variants(
    fx: &Fixture,
    manifest: &Manifest,
    model: MergeModel,
    arch: Arch,
) -> Vec<Variant> {
    if !manifest.expect_failure.is_empty() {
        return Vec::new();
    }
    let replaces = !sysext_builder::guest::builtins::replaced_by(
        fx.spec.files.iter().map(|f| f.path.trim_start_matches('/')),
    )
    .is_empty();
    // The masks the config writes do not depend on the arch: a fixture that is here only
    // for them is provisioned on x86-64 unless [`every_arch`] (its boot trial still runs
    // on every arch).
    let masks_here = replaces && (arch == Arch::X86_64 || every_arch());
    let mut v = Vec::new();
    if manifest.update.is_some() || masks_here {
        v.push(Variant::AsPrinted);
    }
    if manifest.update.is_some() {
        v.push(Variant::WrongHash);
    }
    if masks_here
        && model == MergeModel::RealRoot
        && (every_arch() || UNMASKED_FIXTURES.contains(&fx.name.as_str()))
    {
        v.push(Variant::Unmasked);
    }
    v
}

/// The fixtures CI provisions without the masks: that a built-in stacks above an image
/// whose config does not mask it is systemd's stacking order, the same for every image
/// that replaces one, so CI proves it on the cheaper one (containerd, 27 s against
/// docker's 53 s); the pre-release matrix ([`every_arch`]) on every such fixture.
const UNMASKED_FIXTURES: &[&str] = &["containerd"];

/// `SYSEXT_TEST_EVERY_ARCH=1` (the pre-release matrix): every trial CI leaves out because
/// its verdict cannot differ from one CI runs (another arch, another fixture, a run-time
/// case with the same words).
fn every_arch() -> bool {
    std::env::var("SYSEXT_TEST_EVERY_ARCH").is_ok_and(|v| v == "1")
}

/// Whether `fx`'s boot-time trials run on `arch` in CI; the pre-release matrix
/// ([`every_arch`]) runs every one on every arch. On x86-64 every fixture boots but those
/// whose boot only repeats a run-time failure ([`boot_repeats_a_run_time_failure`]). On
/// arm64, where each Flatcar boot costs about 30 s of TCG, the fixtures that should boot
/// fine boot if in [`ARM64_BOOT_FIXTURES`] (the others' arm64 programs and units are proved
/// by their run-time trials there, and what merging at boot adds is the same systemd on
/// either arch), and those whose boot must fail if in [`ARM64_FAILING_BOOT_FIXTURES`]:
/// systemd says the same words on both arches (every one alike in the CI run of
/// 2026-12-05), and one failing boot keeps the arm64 console's judgement proved.
fn boots_on(fx: &Fixture, manifest: &Manifest, arch: Arch) -> bool {
    if every_arch() {
        return true;
    }
    let name = fx.name.as_str();
    match arch {
        Arch::X86_64 => !boot_repeats_a_run_time_failure(manifest),
        Arch::Arm64 if manifest.expected_failure(Case::Boot).is_some() => {
            ARM64_FAILING_BOOT_FIXTURES.contains(&name)
        }
        Arch::Arm64 => ARM64_BOOT_FIXTURES.contains(&name),
    }
}

/// The fixtures that should boot fine and boot on arm64 in CI: the update fixture (its
/// first boot provisions the sysupdate config) and one that replaces a Flatcar built-in,
/// each on both merge models.
const ARM64_BOOT_FIXTURES: &[&str] = &["hello-update", "containerd"];

/// The fixture whose boot must fail that boots on arm64 in CI: an x86-64 binary's missing
/// library, in arm64's own words for the program that cannot start.
const ARM64_FAILING_BOOT_FIXTURES: &[&str] = &["broken-missing-library"];

/// A fixture whose boot must fail with the very words its merge or binaries case pins
/// (systemd refusing the same extension-release, the same binary failing to run): in CI
/// that run-time case proves those words on each arch, and the boot pipeline's judgement
/// of a failure is proved by the fixtures whose boot says something of its own (a Flatcar
/// host where the run-time guest is Debian, a hidden `/usr/sbin`) and by the units that
/// fail at boot (ordering and dependencies there are not the run-time ones). The
/// pre-release matrix ([`every_arch`]) boots them all. Saves about 170 s of TCG boots a
/// CI run (measured 2026-12-06: four fixtures, six trials).
fn boot_repeats_a_run_time_failure(manifest: &Manifest) -> bool {
    manifest.expected_failure(Case::Boot).is_some_and(|boot| {
        manifest.expect_failure.iter().any(|other| {
            matches!(other.case, Case::Merge | Case::Binaries) && other.systemd == boot.systemd
        })
    })
}

/// Whether `fx` gets the run-time reboot case on `arch`: fixtures that should work and
/// start units at boot (what a reboot can lose). CI reboots [`REBOOT_FIXTURES`] on x86-64;
/// [`every_arch`] (the pre-release matrix) every such fixture on both arches, since each
/// reboot is a second cold boot through the firmware (40-110 s a case on x86-64).
fn reboots_on(fx: &Fixture, manifest: &Manifest, arch: Arch) -> bool {
    let starts_units = fx
        .spec
        .units
        .iter()
        .any(|u| !u.upheld_by.is_empty() || !u.wanted_by.is_empty());
    let here =
        every_arch() || (arch == Arch::X86_64 && REBOOT_FIXTURES.contains(&fx.name.as_str()));
    manifest.expect_failure.is_empty() && starts_units && here
}

/// The fixtures CI reboots: one whose units are upheld and which replaces a Flatcar
/// built-in (after the reboot the image must still shadow it), and one whose unit starts
/// through a `.wants` link only.
const REBOOT_FIXTURES: &[&str] = &["containerd", "wants-service"];

/// The fixtures whose boot and Ignition trials also run on the initrd merge model (Flatcar
/// beta and alpha): the update and service fixtures, and the one whose units start only
/// through `.wants` links; `SYSEXT_TEST_ALL_MODELS=1` (the pre-release matrix) runs every
/// fixture on both.
const INITRD_MODEL_FIXTURES: &[&str] = &["hello-update", "containerd", "wants-service"];

/// The merge models `fx`'s boot-time trials run on.
fn models(fx: &Fixture) -> Vec<MergeModel> {
    let all = std::env::var("SYSEXT_TEST_ALL_MODELS").is_ok_and(|v| v == "1");
    if all || INITRD_MODEL_FIXTURES.contains(&fx.name.as_str()) {
        vec![MergeModel::RealRoot, MergeModel::Initrd]
    } else {
        vec![MergeModel::RealRoot]
    }
}

fn boot_fixture(
    name: &str,
    fx: &Fixture,
    manifest: &Manifest,
    arch: Arch,
    model: MergeModel,
) -> Result<(), Failed> {
    let progress = |l: &str| eprintln!("{name}: {l}");
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    if let Some(plan) = &manifest.update {
        let releases = update::Releases {
            spec: &fx.spec,
            spec_dir,
            plan,
        };
        let outcome = update::run_boot(
            name,
            &releases,
            manifest,
            arch,
            model,
            &Place::from_env(),
            &progress,
        );
        return finish(name, outcome);
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let subject = fixture_subject(fx, manifest, arch, tmp.path())?;
    let mut trial = runner::Trial::new(name, &subject, arch, Case::Boot);
    trial.setup = Setup::Baked {
        subject: &subject,
        conf: None,
        model,
    };
    finish(name, trial.run(&Place::from_env(), &progress))
}

fn ignition_fixture(
    name: &str,
    fx: &Fixture,
    manifest: &Manifest,
    arch: Arch,
    variant: Variant,
    model: MergeModel,
) -> Result<(), Failed> {
    let progress = |l: &str| eprintln!("{name}: {l}");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let subject = fixture_subject(fx, manifest, arch, tmp.path())?;
    // Ignition's own words for a download whose digest is not the config's.
    let wrong = ExpectedFailure {
        case: Case::Ignition,
        systemd: vec!["hash verification failed".into()],
    };
    let mut trial = runner::Trial::new(name, &subject, arch, Case::Ignition);
    trial.setup = Setup::Ignition {
        subject: &subject,
        variant,
        model,
    };
    if variant == Variant::WrongHash {
        trial.expected = Some(&wrong);
    }
    finish(name, trial.run(&Place::from_env(), &progress))
}

/// Runs `case` for `subject` the plain way its family reaches the guest.
fn run_case(name: &str, subject: &Subject, arch: Arch, case: Case) -> Result<(), Failed> {
    let progress = |l: &str| eprintln!("{name}: {l}");
    let outcome = runner::Trial::new(name, subject, arch, case).run(&Place::from_env(), &progress);
    finish(name, outcome)
}

fn finish(name: &str, outcome: Outcome) -> Result<(), Failed> {
    eprintln!("{name}: took {:.1}s", outcome.duration.as_secs_f64());
    outcome.into_test_result(name).map_err(Failed::from)
}

fn update_fixture(
    name: &str,
    fx: &Fixture,
    plan: &UpdatePlan,
    arch: Arch,
    cycle: update::Cycle,
) -> Result<(), Failed> {
    let progress = |l: &str| eprintln!("{name}: {l}");
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    let releases = update::Releases {
        spec: &fx.spec,
        spec_dir,
        plan,
    };
    let outcome = update::run_cycle(name, &releases, cycle, arch, &Place::from_env(), &progress);
    finish(name, outcome)
}

fn vm_subject(name: &str, image: &Path, arch: Arch, case: Case) -> Result<(), Failed> {
    let manifest_path = image.with_extension("toml");
    let manifest = if manifest_path.is_file() {
        Manifest::load(&manifest_path)?
    } else {
        Manifest::default()
    };
    let subject = Subject::from_image(image, manifest)?;
    run_case(name, &subject, arch, case)
}

/// The differential trials' seed: fixed, so a red trial is red again on a rerun.
const DIFFERENTIAL_SEED: u64 = 20_261_205;

fn differential_trial(name: &str, arch: Arch, family: differential::Family) -> Result<(), Failed> {
    let place = Place::from_env();
    let profile = sysext_builder::guest::Profile::Debian;
    let vm = differential::guest(arch, profile, &place, &|_| {})
        .map_err(|e| Failed::from(format!("harness error (no verdict on lint): {e}")))?;
    let r = differential::Run {
        seed: DIFFERENTIAL_SEED,
        count: match family {
            differential::Family::Images => 150,
            differential::Family::Versions => 20_000,
            // How systemd reads a unit or a transfer file does not depend on the arch:
            // arm64 (TCG at a third of x86-64's pace) checks a third of them unless
            // SYSEXT_TEST_EVERY_ARCH=1.
            differential::Family::Units | differential::Family::Transfers
                if arch != Arch::X86_64 && !every_arch() =>
            {
                32
            }
            differential::Family::Units => 96,
            differential::Family::Transfers => 96,
        },
        arch,
        profile,
        naive: false,
        shrink: differential::report::SHRINK_DEFAULT,
    };
    let work = place.artifacts(name).join("work");
    let report = differential::run_family(family, &vm, &r, &work, &|_| {})
        .map_err(|e| Failed::from(format!("harness error (no verdict on lint): {e}")))?;
    eprintln!(
        "{}: {} checked, {} agree, {:.1} per second of guest time",
        name, report.checked, report.agreed, report.per_second
    );
    if report.passed() {
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    }
    let json = place.artifacts(name).join("differential.json");
    let _ = std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    let mut msg = format!(
        "{} of {} disagree (seed {}; the report is in {}):",
        report.disagreements.len(),
        report.checked,
        report.seed,
        json.display()
    );
    for d in &report.disagreements {
        msg.push_str(&format!(
            "\n\n{}: {}\n  variant: {}\n  smallest: {}\n  lint: {}\n  systemd: {}\n  replay: {}",
            d.name,
            d.what,
            d.variant,
            d.shrunk.as_deref().unwrap_or("-"),
            d.lint,
            d.systemd,
            d.replay
        ));
    }
    Err(Failed::from(msg))
}
