//! A cycle end to end: its releases built (or a store's taken), a mirror of this case
//! alone, a guest reached through the runner (restored at run time, or baked for the boot
//! case's update), the first release seeded, the cycle run, the mirror's log kept when it
//! did not pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sysext_builder::Arch;
use sysext_builder::guest::Profile;
use sysext_harness::Mirror;

use crate::manifest::{Manifest, UpdatePlan};
use crate::outcome::{CaseError, CaseResult, Outcome};
use crate::runner::{self, Setup};
use crate::subject::Subject;
use crate::update::ctx::{Ctx, h};
use crate::update::cycle::Cycle;
use crate::update::{cycles, faults, release, seed};

/// Seeds the guest with the first release, then runs `cycle`.
pub fn run(cycle: Cycle, ctx: &mut Ctx) -> CaseResult {
    seed::install_first_release(ctx)?;
    match cycle {
        Cycle::Update => cycles::update(ctx),
        Cycle::Rollback => cycles::rollback(ctx),
        Cycle::Retention => cycles::retention(ctx),
        Cycle::Timer => cycles::timer(ctx),
        Cycle::TimerRefresh => cycles::timer_refresh(ctx),
        Cycle::VersionRules => cycles::version_rules(ctx),
        Cycle::Reboot => cycles::reboot(ctx),
        Cycle::Fault(fault) => faults::run(ctx, fault),
    }
}

/// What the cycles release again and again: a spec (relative paths resolve against
/// `spec_dir`) and its `[test.update]` plan.
pub struct Releases<'a> {
    pub spec: &'a sysext_builder::spec::Spec,
    pub spec_dir: &'a std::path::Path,
    pub plan: &'a UpdatePlan,
}

/// What every cycle and the baked update work against: the releases built (by version),
/// the versions in order, and a mirror of this case alone serving `NAME.conf` (pointing at
/// itself) and `noop.conf`. The temp directory lives as long as this does.
struct Prepared {
    _work: tempfile::TempDir,
    releases: BTreeMap<String, PathBuf>,
    versions: Vec<String>,
    mirror: Mirror,
    /// The `NAME.conf` the mirror serves, as a file (for `bake`).
    conf: PathBuf,
}

fn prepare(subject: &Releases, arch: Arch, progress: &dyn Fn(&str)) -> Result<Prepared, CaseError> {
    let Releases {
        spec,
        spec_dir,
        plan,
    } = *subject;
    let work = tempfile::tempdir().map_err(|e| CaseError::from(format!("temp dir: {e}")))?;
    let (releases, versions) =
        release::build_all(spec, spec_dir, plan, arch, &work.path().join("builds"))?;
    serve(work, &spec.name, releases, versions, None, progress)
}

/// A mirror of this case alone for `releases`, serving `NAME.conf` (the given one with its
/// hub moved to the mirror, else the bakery's template) and `noop.conf`.
fn serve(
    work: tempfile::TempDir,
    name: &str,
    releases: BTreeMap<String, PathBuf>,
    versions: Vec<String>,
    shipped_conf: Option<&std::path::Path>,
    progress: &dyn Fn(&str),
) -> Result<Prepared, CaseError> {
    let store = work.path().join("store");
    std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    let mirror = Mirror::serve(&store).map_err(h)?;
    let conf_text = match shipped_conf {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            sysext_builder::transfer::retarget(&text, &mirror.guest_url()).ok_or_else(|| {
                format!(
                    "{}: its [Source] Path= is not under an /extensions/ directory, so it cannot be pointed at the mirror",
                    path.display()
                )
            })?
        }
        None => sysext_builder::transfer::render_bakery(name, &mirror.guest_url()),
    };
    mirror
        .publish_transfer(&format!("{name}.conf"), &conf_text)
        .map_err(h)?;
    mirror
        .publish_transfer("noop.conf", sysext_builder::transfer::NOOP)
        .map_err(h)?;
    let conf = work.path().join(format!("{name}.conf"));
    std::fs::write(&conf, conf_text).map_err(|e| format!("{}: {e}", conf.display()))?;
    progress(&format!(
        "mirror serving {} at {}",
        store.display(),
        mirror.url()
    ));
    Ok(Prepared {
        _work: work,
        releases,
        versions,
        mirror,
        conf,
    })
}

/// Releases that exist already (a store's images), oldest first, with the conf the store
/// ships for them.
pub struct Given<'a> {
    pub name: &'a str,
    /// (version, image) in release order.
    pub releases: Vec<(String, PathBuf)>,
    pub conf: Option<&'a std::path::Path>,
    pub plan: &'a UpdatePlan,
    /// The failure the cycle exists for (a replayed bug), in systemd's words.
    pub expected: Option<&'a crate::outcome::ExpectedFailure>,
}

/// Runs one cycle on a store's own images, through a mirror serving them and the store's
/// transfer file pointed at that mirror.
pub fn run_given_cycle(
    name: &str,
    given: &Given,
    cycle: Cycle,
    arch: Arch,
    place: &sysext_harness::Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    let started = std::time::Instant::now();
    let prepared = tempfile::tempdir()
        .map_err(|e| CaseError::from(format!("temp dir: {e}")))
        .and_then(|work| {
            let versions = given.releases.iter().map(|(v, _)| v.clone()).collect();
            let releases = given.releases.iter().cloned().collect();
            serve(work, given.name, releases, versions, given.conf, progress)
        });
    match prepared {
        Ok(p) => run_prepared(
            name,
            p,
            given.name,
            given.plan,
            cycle,
            arch,
            given.expected,
            place,
            progress,
        ),
        Err(e) => not_prepared(e, started),
    }
}

fn not_prepared(e: CaseError, started: std::time::Instant) -> Outcome {
    Outcome::harness_error(
        "preparing the releases and the mirror",
        e,
        started.elapsed(),
    )
}

/// The boot case of a subject with an update plan: its first release baked with the
/// mirror's `NAME.conf` (as `bake_flatcar_image.sh --fetch` takes it from the hub), booted,
/// checked like any boot, then updated from the mirror on the baked layout, unchanged.
pub fn run_boot(
    name: &str,
    subject: &Releases,
    manifest: &Manifest,
    arch: Arch,
    model: sysext_builder::flatcar_release::MergeModel,
    place: &sysext_harness::Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    let started = std::time::Instant::now();
    let prepared = prepare(subject, arch, progress).and_then(|p| {
        let first = p
            .versions
            .first()
            .ok_or("the update plan has no versions")?;
        let image = p
            .releases
            .get(first)
            .ok_or_else(|| format!("no release {first} was built"))?;
        p.mirror.publish(image).map_err(h)?;
        let first = Subject::from_image(image, manifest.clone())?;
        Ok((p, first))
    });
    let (p, first) = match prepared {
        Ok(p) => p,
        Err(e) => return not_prepared(e, started),
    };
    let setup = Setup::Baked {
        subject: &first,
        conf: Some(&p.conf),
        model,
    };
    let expected = first.manifest.expected_failure(crate::outcome::Case::Boot);
    runner::run_with(name, arch, setup, expected, place, progress, |reached| {
        let runner::Reached::Baked(baked) = reached else {
            return Err(CaseError::from(
                "the boot case's update runs on a baked guest",
            ));
        };
        crate::checks::boot::check(&baked.vm, &first, &baked.baseline)?;
        p.mirror.clear_requests();
        let ctx = Ctx {
            vm: &mut baked.vm,
            mirror: &p.mirror,
            name: subject.spec.name.clone(),
            arch,
            plan: subject.plan,
            releases: &p.releases,
            versions: p.versions.clone(),
        };
        cycles::update(&ctx)
    })
}

/// Runs one cycle end to end for a fixture: builds its releases, serves a mirror for this
/// case alone, restores a guest, seeds it and runs the cycle.
pub fn run_cycle(
    name: &str,
    subject: &Releases,
    cycle: Cycle,
    arch: Arch,
    place: &sysext_harness::Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    let started = std::time::Instant::now();
    match prepare(subject, arch, progress) {
        Ok(p) => run_prepared(
            name,
            p,
            &subject.spec.name,
            subject.plan,
            cycle,
            arch,
            None,
            place,
            progress,
        ),
        Err(e) => not_prepared(e, started),
    }
}

/// Restores a guest, seeds it from the prepared mirror and runs `cycle`; the mirror's
/// request log goes next to the guest's artifacts when it did not pass.
#[allow(clippy::too_many_arguments)]
fn run_prepared(
    name: &str,
    prepared: Prepared,
    extension: &str,
    plan: &UpdatePlan,
    cycle: Cycle,
    arch: Arch,
    expected: Option<&crate::outcome::ExpectedFailure>,
    place: &sysext_harness::Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    let Prepared {
        _work,
        releases,
        versions,
        mirror,
        ..
    } = prepared;
    // The seed installs the first release: it rides on the payload disk.
    let first = versions.first().and_then(|v| releases.get(v)).cloned();
    let setup = Setup::Runtime {
        carrying: first.as_deref(),
        profile: Profile::Debian,
    };
    let outcome = runner::run_with(name, arch, setup, expected, place, progress, |reached| {
        let mut ctx = Ctx {
            vm: reached.vm_mut(),
            mirror: &mirror,
            name: extension.to_string(),
            arch,
            plan,
            releases: &releases,
            versions,
        };
        run(cycle, &mut ctx)
    });
    if !outcome.verdict.is_pass() {
        // The guest's side is in the artifacts already; the server's side goes next to it.
        runner::keep_mirror_log(&place.artifacts(name), &mirror);
    }
    outcome
}
