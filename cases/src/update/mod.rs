//! sysupdate cycles: what bakery users do to stay current, driven against the local mirror.
//!
//! Every cycle starts from a guest with the subject's first release installed the bakery
//! way (the image under `/opt/extensions/NAME/`, the `/etc/extensions/NAME.raw` symlink,
//! `NAME.conf` in `/etc/sysupdate.NAME.d/`, `noop.conf` in `/etc/sysupdate.d/`), with its
//! `Source Path` pointing at a mirror this case serves. The mirror then publishes newer
//! releases, or misbehaves, and the cycle checks what a user would: which file the symlink
//! names, which version answers, what systemd said, and what was downloaded.

mod cycles;
mod faults;
pub mod release;
mod seed;

use crate::vm::CaseError;
use std::collections::BTreeMap;
use std::path::PathBuf;

use sysext_builder::Arch;
use sysext_harness::{Mirror, Vm};

use crate::manifest::UpdatePlan;
use crate::vm::CaseResult;

/// The mirror faults a cycle injects (see `faults.rs` for what each one checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCase {
    NotFound,
    ServerError,
    CutShort,
    Corrupt,
    Stall,
    WrongDigest,
    MalformedSums,
}

/// A sysupdate cycle: what a user does to stay current, or a fault on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    Update,
    Rollback,
    Retention,
    Timer,
    TimerRefresh,
    VersionRules,
    Fault(FaultCase),
}

impl Cycle {
    /// Every cycle, in the order they are listed.
    pub const ALL: [Cycle; 13] = [
        Cycle::Update,
        Cycle::Rollback,
        Cycle::Retention,
        Cycle::Timer,
        Cycle::TimerRefresh,
        Cycle::VersionRules,
        Cycle::Fault(FaultCase::NotFound),
        Cycle::Fault(FaultCase::ServerError),
        Cycle::Fault(FaultCase::CutShort),
        Cycle::Fault(FaultCase::Corrupt),
        Cycle::Fault(FaultCase::Stall),
        Cycle::Fault(FaultCase::WrongDigest),
        Cycle::Fault(FaultCase::MalformedSums),
    ];

    /// The cycles arm64 runs: every path a user takes, but not the fault matrix, which
    /// exercises systemd-pull's arch-independent error handling and would add minutes of
    /// emulation (arm64 runs at a sixth of x86-64's speed here).
    pub const ARM64: [Cycle; 5] = [
        Cycle::Update,
        Cycle::Rollback,
        Cycle::Retention,
        Cycle::Timer,
        Cycle::VersionRules,
    ];

    /// The name in test names (`update::<arch>::<subject>::<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Cycle::Update => "update",
            Cycle::Rollback => "rollback",
            Cycle::Retention => "retention",
            Cycle::Timer => "timer",
            Cycle::TimerRefresh => "timer-refresh",
            Cycle::VersionRules => "version-rules",
            Cycle::Fault(FaultCase::NotFound) => "fault-not-found",
            Cycle::Fault(FaultCase::ServerError) => "fault-server-error",
            Cycle::Fault(FaultCase::CutShort) => "fault-cut-short",
            Cycle::Fault(FaultCase::Corrupt) => "fault-corrupt",
            Cycle::Fault(FaultCase::Stall) => "fault-stall",
            Cycle::Fault(FaultCase::WrongDigest) => "fault-wrong-digest",
            Cycle::Fault(FaultCase::MalformedSums) => "fault-malformed-sums",
        }
    }
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Cycle {
    type Err = String;
    fn from_str(s: &str) -> Result<Cycle, String> {
        Cycle::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Cycle::ALL.iter().map(|c| c.name()).collect();
                format!("unknown cycle '{s}': use one of {}", names.join(", "))
            })
    }
}

/// The cycles to run on `arch`.
pub fn cycles_for(arch: Arch) -> &'static [Cycle] {
    match arch {
        Arch::X86_64 => &Cycle::ALL,
        Arch::Arm64 => &Cycle::ARM64,
    }
}

/// Where systemd-sysupdate lives on Debian (it is not on PATH).
const SYSUPDATE: &str = "/usr/lib/systemd/systemd-sysupdate";

/// What a cycle works with.
pub struct Ctx<'a> {
    pub vm: &'a Vm,
    pub mirror: &'a Mirror,
    pub name: String,
    pub arch: Arch,
    pub plan: &'a UpdatePlan,
    /// Built images by version, the first release included.
    pub releases: &'a BTreeMap<String, PathBuf>,
    /// The versions in release order: the spec's own, then the plan's.
    pub versions: Vec<String>,
}

impl Ctx<'_> {
    fn file(&self, version: &str) -> String {
        format!("{}-{version}-{}.raw", self.name, self.arch.systemd_name())
    }

    fn target_dir(&self) -> String {
        format!("/opt/extensions/{}", self.name)
    }

    fn link(&self) -> String {
        format!("/etc/extensions/{}.raw", self.name)
    }

    /// `systemd-sysupdate -C NAME <args>` as a guest command line.
    fn sysupdate(&self, args: &str) -> String {
        format!("{SYSUPDATE} -C {} {args}", self.name)
    }

    fn publish(&self, version: &str) -> CaseResult {
        let image = self
            .releases
            .get(version)
            .ok_or_else(|| format!("no release {version} was built"))?;
        self.mirror.publish(image).map_err(h)
    }

    /// What a user looks at after each step, in one round trip: optionally a
    /// `systemd-sysext refresh` first (which must exit 0), then where the symlink points,
    /// what is in the target directory and what the extension's command reports.
    fn look_after(&self, refresh: bool) -> Result<Look, CaseError> {
        let readlink = format!("readlink -e {} || true", self.link());
        let ls = format!("ls -A {} 2>/dev/null || true", self.target_dir());
        let mut cmds: Vec<&str> = Vec::new();
        if refresh {
            cmds.push("systemd-sysext refresh 2>&1");
        }
        cmds.extend([readlink.as_str(), ls.as_str(), &self.plan.version_command]);
        let mut outs = self.vm.batch(&cmds).map_err(h)?.into_iter();
        // `batch` returns one output per command; the fallback only keeps this total.
        let mut next = || {
            outs.next().unwrap_or(sysext_harness::ssh::Output {
                status: -1,
                stdout: String::new(),
                stderr: String::new(),
            })
        };
        if refresh {
            let out = next();
            if out.status != 0 {
                return Err(CaseError::Harness(sysext_harness::HarnessError::Command {
                    cmd: "systemd-sysext refresh".into(),
                    what: format!("exited {}", out.status),
                    output: out.combined(),
                }));
            }
        }
        let linked = next()
            .stdout
            .trim()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let files = next().stdout.lines().map(str::to_string).collect();
        let live = next().combined();
        Ok(Look {
            linked,
            files,
            live,
            link: self.link(),
            target_dir: self.target_dir(),
            version_command: self.plan.version_command.clone(),
        })
    }

    /// [`Ctx::look_after`] without a refresh.
    fn look(&self) -> Result<Look, CaseError> {
        self.look_after(false)
    }

    /// The file the `CurrentSymlink` resolves to (empty when it dangles).
    fn linked_file(&self) -> Result<String, CaseError> {
        Ok(self.look()?.linked)
    }

    /// Files in the target directory, hidden ones (sysupdate's temp files) included.
    fn target_files(&self) -> Result<Vec<String>, CaseError> {
        Ok(self.look()?.files)
    }

    /// Checks the version the extension's command reports is `version`.
    fn expect_live(&self, version: &str, when: &str) -> CaseResult {
        self.look()?.expect_live(version, when)
    }

    /// Checks the symlink names `version`'s file.
    fn expect_linked(&self, version: &str, when: &str) -> CaseResult {
        self.look()?.expect_linked(&self.file(version), when)
    }

    /// `systemd-sysext refresh` (which must exit 0), then checks `version` is live.
    fn refresh_expect_live(&self, version: &str, when: &str) -> CaseResult {
        self.look_after(true)?.expect_live(version, when)
    }

    /// `systemd-sysext refresh`, which must exit 0.
    fn refresh(&self) -> CaseResult {
        self.look_after(true).map(|_| ())
    }

    /// The extension's service, if the plan names one, runs `version` once restarted.
    ///
    /// `systemd-sysext refresh` swaps the files and reloads units but restarts nothing: the
    /// old process keeps running from the unmerged image. Users must restart the service
    /// (or reboot); the case says so, restarts it as they would, and checks the new release
    /// is what runs and which unit file systemd loaded.
    fn expect_service_runs(&self, version: &str) -> CaseResult {
        let Some(service) = &self.plan.service else {
            return Ok(());
        };
        let running = self.service_version_line(service)?;
        if !running.split_whitespace().any(|w| w == version) {
            eprintln!(
                "note: after the refresh {service} still runs the old release ({}); restarting it as a user must",
                running.trim()
            );
            self.vm
                .succeed(&format!("systemctl restart {service}"))
                .map_err(h)?;
        }
        let running = self.service_version_line(service)?;
        let unit = self
            .vm
            .succeed(&format!("systemctl show -P Description {service}"))
            .map_err(h)?;
        if !running.split_whitespace().any(|w| w == version)
            || !unit.split_whitespace().any(|w| w == version)
        {
            return Err(CaseError::from(format!(
                "expected {service} to run {version} after a restart; its main process logged '{}' and its unit says '{}'",
                running.trim(),
                unit.trim()
            )));
        }
        Ok(())
    }

    /// What the service's current main process logged first (it announces its version).
    fn service_version_line(&self, service: &str) -> Result<String, CaseError> {
        self.vm
            .wait_for_unit(service, std::time::Duration::from_secs(30))
            .map_err(h)?;
        let cmd = format!(
            "pid=$(systemctl show -P MainPID {service}); for i in $(seq 50); do line=$(journalctl -b -o cat _PID=$pid | head -n 1); [ -n \"$line\" ] && break; sleep 0.2; done; echo \"$line\""
        );
        self.vm.succeed(&cmd).map_err(h)
    }

    /// Requests for `path` the mirror answered with `status`.
    fn served(&self, path: &str, status: u16) -> usize {
        self.mirror
            .requests()
            .iter()
            .filter(|r| r.path == path && r.status == status && r.method == "GET")
            .count()
    }

    fn image_path(&self, version: &str) -> String {
        format!("/extensions/{}/{}", self.name, self.file(version))
    }

    fn sums_path(&self) -> String {
        format!("/extensions/{}/SHA256SUMS", self.name)
    }

    /// Proves from the request log that `version`'s image was downloaded whole.
    fn expect_downloaded(&self, version: &str) -> CaseResult {
        let path = self.image_path(version);
        let size = self
            .releases
            .get(version)
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        let whole = self
            .mirror
            .requests()
            .iter()
            .any(|r| r.path == path && r.status == 200 && r.bytes == size);
        if !whole {
            return Err(CaseError::from(format!(
                "the mirror never served {path} whole ({size} bytes); log: {}",
                self.log()
            )));
        }
        Ok(())
    }

    /// The mirror's request log, one line per request, for failure messages.
    fn log(&self) -> String {
        let lines: Vec<String> = self
            .mirror
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "\n  {} {} -> {} ({} bytes{})",
                    r.method,
                    r.path,
                    r.status,
                    r.bytes,
                    r.fault.map(|f| format!(", fault {f}")).unwrap_or_default()
                )
            })
            .collect();
        lines.concat()
    }

    /// Runs `systemd-sysupdate update` (optionally for one version) and returns its output.
    fn update(&self, version: Option<&str>) -> Result<String, CaseError> {
        let cmd = self.sysupdate(&format!("update {} 2>&1", version.unwrap_or("")));
        let out = self.vm.execute(&cmd).map_err(h)?;
        if out.status != 0 {
            return Err(CaseError::from(format!(
                "`{cmd}` exited {}:\n{}\nmirror log:{}",
                out.status,
                out.combined().trim(),
                self.log()
            )));
        }
        Ok(out.combined())
    }

    /// `list --json=short`: (current, all versions).
    fn list(&self) -> Result<(Option<String>, Vec<String>), CaseError> {
        let out = self
            .vm
            .succeed(&self.sysupdate("list --json=short"))
            .map_err(h)?;
        parse_list(&out)
    }
}

/// `systemd-sysupdate list --json=short` output: (current, all versions).
fn parse_list(out: &str) -> Result<(Option<String>, Vec<String>), CaseError> {
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| format!("list --json: {e}: {out}"))?;
    let current = v.get("current").and_then(|c| c.as_str()).map(String::from);
    let all = v
        .get("all")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect();
    Ok((current, all))
}

/// The guest as a user sees it after a step (see [`Ctx::look_after`]).
struct Look {
    /// The file the `CurrentSymlink` resolves to (empty when it dangles).
    linked: String,
    /// Files in the target directory, hidden ones (sysupdate's temp files) included.
    files: Vec<String>,
    /// What the extension's version command printed.
    live: String,
    link: String,
    target_dir: String,
    version_command: String,
}

impl Look {
    /// The version command reported `version`.
    fn expect_live(&self, version: &str, when: &str) -> CaseResult {
        if !self.live.split_whitespace().any(|w| w == version) {
            return Err(CaseError::from(format!(
                "{when}: expected `{}` to report {version}, it printed: {}",
                self.version_command,
                self.live.trim()
            )));
        }
        Ok(())
    }

    /// The symlink names `file`.
    fn expect_linked(&self, file: &str, when: &str) -> CaseResult {
        if self.linked != file {
            return Err(CaseError::from(format!(
                "{when}: expected {} -> {file}, it resolves to '{}'; files: {:?}",
                self.link, self.linked, self.files
            )));
        }
        Ok(())
    }

    /// No sysupdate temp file (`.#sysupdate…` in 257, `.sysupdate.partial.…` later) stays.
    fn expect_no_partial_files(&self, when: &str) -> CaseResult {
        let partial: Vec<&String> = self.files.iter().filter(|f| f.starts_with('.')).collect();
        if !partial.is_empty() {
            return Err(CaseError::from(format!(
                "{when}: partial files left in {}: {partial:?}",
                self.target_dir
            )));
        }
        Ok(())
    }
}

fn h(e: sysext_harness::HarnessError) -> CaseError {
    CaseError::Harness(e)
}

/// Seeds the guest with the first release, then runs `cycle`.
pub fn run(cycle: Cycle, ctx: &Ctx) -> CaseResult {
    seed::install_first_release(ctx)?;
    match cycle {
        Cycle::Update => cycles::update(ctx),
        Cycle::Rollback => cycles::rollback(ctx),
        Cycle::Retention => cycles::retention(ctx),
        Cycle::Timer => cycles::timer(ctx),
        Cycle::TimerRefresh => cycles::timer_refresh(ctx),
        Cycle::VersionRules => cycles::version_rules(ctx),
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
) -> crate::vm::runner::Outcome {
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
            name, p, given.name, given.plan, cycle, arch, place, progress,
        ),
        Err(e) => not_prepared(e, started),
    }
}

fn not_prepared(e: CaseError, started: std::time::Instant) -> crate::vm::runner::Outcome {
    crate::vm::runner::Outcome {
        verdict: crate::vm::Verdict::Error {
            stage: "preparing the releases and the mirror".into(),
            message: e.to_string(),
        },
        duration: started.elapsed(),
        merge_refused: false,
    }
}

/// The boot case of a subject with an update plan: its first release baked with the
/// mirror's `NAME.conf` (as `bake_flatcar_image.sh --fetch` takes it from the hub), booted,
/// checked like any boot, then updated from the mirror on the baked layout, unchanged.
pub fn run_boot(
    name: &str,
    subject: &Releases,
    manifest: &crate::manifest::Manifest,
    arch: Arch,
    place: &sysext_harness::Place,
    progress: &dyn Fn(&str),
) -> crate::vm::runner::Outcome {
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
        let first = crate::vm::Subject::from_image(image, manifest.clone())?;
        Ok((p, first))
    });
    let (p, first) = match prepared {
        Ok(p) => p,
        Err(e) => return not_prepared(e, started),
    };
    crate::boot::run(name, &first, arch, Some(&p.conf), place, progress, |vm| {
        p.mirror.clear_requests();
        let ctx = Ctx {
            vm,
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
) -> crate::vm::runner::Outcome {
    let started = std::time::Instant::now();
    match prepare(subject, arch, progress) {
        Ok(p) => run_prepared(
            name,
            p,
            &subject.spec.name,
            subject.plan,
            cycle,
            arch,
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
    place: &sysext_harness::Place,
    progress: &dyn Fn(&str),
) -> crate::vm::runner::Outcome {
    let Prepared {
        _work,
        releases,
        versions,
        mirror,
        ..
    } = prepared;
    // The seed installs the first release: it rides on the payload disk.
    let first = versions.first().and_then(|v| releases.get(v)).cloned();
    let outcome = crate::vm::runner::run_in_guest(
        name,
        arch,
        place,
        None,
        first.as_deref(),
        progress,
        |vm| {
            let ctx = Ctx {
                vm,
                mirror: &mirror,
                name: extension.to_string(),
                arch,
                plan,
                releases: &releases,
                versions,
            };
            run(cycle, &ctx)
        },
    );
    if !outcome.verdict.is_pass() {
        // The guest's side is in the artifacts already; the server's side goes next to it.
        let dir = place.artifacts(name);
        if std::fs::create_dir_all(&dir).is_ok()
            && let Ok(json) = serde_json::to_string_pretty(&mirror.requests())
        {
            let _ = sysext_builder::atomic::write_bytes(
                &dir.join("mirror-requests.json"),
                json.as_bytes(),
            );
        }
    }
    outcome
}
