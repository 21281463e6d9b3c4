//! `boot::<arch>::<subject>`: the extension baked into the flatcar-shaped guest's disk (as
//! `bake_flatcar_image.sh` users consume it) and merged by `systemd-sysext.service` during a
//! cold boot. The one case that must pay a boot: no snapshot can stand in for one.
//!
//! What the bakery's maintainer says a test should check, and what differs from a merge at
//! run time: the extension was merged during boot; the units it enables came up with no
//! `daemon-reload`; the manifest's waiting units, ports and paths are there; its commands and
//! binaries work (as in the binaries case); nothing
//! failed and the boot reached `multi-user.target`; the boot logged
//! no error that the same guest's boot without the image does not log; no file of the base
//! `/usr` was hidden by the merge. An image that breaks the boot (no login, where the same
//! guest without it boots) is the image's verdict, with the console's evidence and the base
//! files the image hides, never a harness error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sysext_builder::Arch;
use sysext_builder::bake::{self, Extension, InstallTo};
use sysext_builder::guest::{self, Guest, Profile};
use sysext_builder::image::{Image, Kind};
use sysext_harness::vm::BootOptions;
use sysext_harness::{HarnessError, Place, Vm};

use crate::vm::runner::{Outcome, judge};
use crate::vm::{Assertion, Case, CaseError, CaseResult, Subject, Verdict};

/// Every path under `/usr` with its type (`find -printf %y`: f, d, l, ...).
const USR_LISTING: &str = "find /usr -printf '%y %p\\n'";
/// The boot's error-level journal, as lines.
const BOOT_ERRORS: &str = "journalctl -b -p err -o cat --no-pager";
/// Console lines that mean the SSH server will not come (journald forwards errors there).
pub(crate) const GIVE_UP_ON: &[&str] =
    &["sysext-test-sshd.service", "emergency mode", "Kernel panic"];

/// What the flatcar-shaped guest's own boot looks like, without any extension: measured
/// once per guest build and kept beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    /// Error-level journal lines of a plain boot, digits folded (see [`fold`]).
    pub boot_errors: Vec<String>,
    /// `/usr` by path, with its type letter.
    pub usr: BTreeMap<String, char>,
    /// Seconds from QEMU start to a working login.
    pub login_seconds: f64,
}

/// The guest's boot without the image, from the cache or by booting it once (under a lock,
/// so concurrent cases measure it once).
pub fn baseline(guest: &Guest, progress: &dyn Fn(&str)) -> Result<Baseline, HarnessError> {
    let path = guest.dir.join("boot-baseline.json");
    let lock_dir = guest
        .dir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(".locks")
        .join(format!(
            "{}-baseline",
            guest.dir.file_name().unwrap_or_default().to_string_lossy()
        ));
    let _lock = sysext_builder::cache::Lock::acquire(&lock_dir)
        .map_err(|e| HarnessError::io(&lock_dir, e))?;
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(b) = serde_json::from_str::<Baseline>(&text)
    {
        return Ok(b);
    }
    progress(&format!(
        "booting the {} flatcar-shaped guest once without extensions (its errors and /usr are the baseline)",
        guest.arch
    ));
    let vm = Vm::boot(guest)?;
    let outs = vm.batch(&[
        "systemctl is-system-running --wait",
        BOOT_ERRORS,
        USR_LISTING,
    ])?;
    let b = Baseline {
        boot_errors: error_lines(&outs[1].stdout),
        usr: listing(&outs[2].stdout),
        login_seconds: vm.startup.as_secs_f64(),
    };
    let json = serde_json::to_vec(&b).map_err(|e| HarnessError::Ssh(e.to_string()))?;
    sysext_builder::atomic::write_bytes(&path, &json).map_err(|e| HarnessError::io(&path, e))?;
    Ok(b)
}

/// Runs the boot case for `subject` on `arch`: bakes it (with `conf` as its sysupdate
/// config, if any) into a copy of the flatcar-shaped guest's disk, cold-boots it, checks,
/// then runs `after` in the booted guest (the sysupdate step for subjects with a plan).
pub fn run(
    name: &str,
    subject: &Subject,
    arch: Arch,
    conf: Option<&Path>,
    place: &Place,
    progress: &dyn Fn(&str),
    after: impl FnOnce(&Vm) -> CaseResult,
) -> Outcome {
    let start = Instant::now();
    let expected = subject.manifest.expected_failure(Case::Boot);
    let error = |stage: &str, message: String| Outcome {
        verdict: Verdict::Error {
            stage: stage.into(),
            message,
        },
        duration: start.elapsed(),
        merge_refused: false,
    };
    let recipe = guest::Recipe::new(Profile::FlatcarShaped, arch);
    let base = match guest::build_or_reuse(&recipe, progress) {
        Ok(g) => g,
        Err(e) => {
            return error(
                "guest image",
                format!(
                    "{arch} flatcar-shaped: {e} (build it with `sysext-test guest build --profile flatcar-shaped --arch {arch}`)"
                ),
            );
        }
    };
    let baseline = match baseline(&base, progress) {
        Ok(b) => b,
        Err(e) => return error(&format!("baseline boot: {}", e.stage()), e.to_string()),
    };
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return error("temp dir", e.to_string()),
    };
    let baked = work.path().join("baked.img");
    let ext = Extension {
        name: subject.name.clone(),
        image: subject.image.clone(),
        file_name: subject.file_name.clone(),
        conf: conf.map(Path::to_path_buf),
    };
    let t = Instant::now();
    if let Err(e) = bake::bake(&base.disk, &[ext], InstallTo::Root, &baked, &|_| {}) {
        return error("bake", e.to_string());
    }
    progress(&format!(
        "baked {} into a copy of the flatcar-shaped disk in {:.1}s; cold-booting it",
        subject.file_name,
        t.elapsed().as_secs_f64()
    ));
    let guest = Guest {
        disk: baked,
        ..base.clone()
    };
    let artifacts = place.artifacts(name);
    let options = BootOptions {
        give_up_on: GIVE_UP_ON,
        ..Default::default()
    };
    let verdict = match cold_boot(&guest, &options, progress) {
        Ok(vm) => {
            progress(&format!(
                "login after {:.1}s (without the image: {:.1}s)",
                vm.startup.as_secs_f64(),
                baseline.login_seconds
            ));
            let result = checks(&vm, subject, &baseline).and_then(|()| after(&vm));
            judge(result, expected, Vec::new(), || {
                vm.save_artifacts(&artifacts)
            })
        }
        Err(e) if image_broke_it(&e) => {
            // The same guest boots without the image (the baseline did): the image broke it.
            let console = match &e {
                HarnessError::GaveUp { console, .. } | HarnessError::Timeout { console, .. } => {
                    console.clone()
                }
                _ => String::new(),
            };
            let hidden = match Image::open(&subject.image) {
                Ok(img) => shadowed_by_image(&baseline.usr, &img),
                Err(_) => Vec::new(),
            };
            let mut a = Assertion::new(format!(
                "expected the guest to boot with {} baked in, as it does without it; it never gave a login ({}){}",
                subject.file_name,
                e.stage(),
                if hidden.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; the image hides these base paths: {}",
                        hidden.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            ))
            .with_evidence(&systemd_lines(&console));
            if a.evidence.is_empty() {
                a = a.with_evidence(&console);
            }
            judge(Err(CaseError::Fail(a)), expected, Vec::new(), || {
                let _ = std::fs::create_dir_all(&artifacts);
                let _ = std::fs::write(artifacts.join("console.log"), &console);
                artifacts.clone()
            })
        }
        Err(e) => Verdict::Error {
            stage: e.stage(),
            message: e.to_string(),
        },
    };
    Outcome {
        verdict,
        duration: start.elapsed(),
        merge_refused: false,
    }
}

/// A cold boot, tried a second time when the guest died before its userspace could have
/// seen the image (QEMU exited, or no network beacon from the initramfs): an early TCG
/// oops is the emulator's, never the image's, and never a verdict.
pub(crate) fn cold_boot(
    guest: &Guest,
    options: &BootOptions,
    progress: &dyn Fn(&str),
) -> Result<Vm, HarnessError> {
    match Vm::boot_with(guest, options) {
        Err(e) if died_early(&e) => {
            progress(&format!(
                "the guest died before its userspace ({}); booting it once more",
                e.stage()
            ));
            Vm::boot_with(guest, options)
        }
        other => other,
    }
}

fn died_early(e: &HarnessError) -> bool {
    matches!(
        e,
        HarnessError::QemuExited { .. } | HarnessError::Timeout { stage: "boot", .. }
    )
}

/// What a baked image can do to a boot: its userspace came up (network beacon) and then
/// said no login will come, or none came in time.
fn image_broke_it(e: &HarnessError) -> bool {
    matches!(
        e,
        HarnessError::GaveUp { .. }
            | HarnessError::Timeout {
                stage: "SSH login",
                ..
            }
    )
}

/// The checks after a login, in the order a failure is most telling: merged at all, its
/// units up, nothing failed, no new errors, nothing of the base hidden.
pub(crate) fn checks(vm: &Vm, s: &Subject, baseline: &Baseline) -> CaseResult {
    let outs = vm.batch(&[
        "systemctl is-system-running --wait 2>&1",
        "systemd-sysext status --json=short",
        "journalctl -b -o cat --no-pager -u systemd-sysext.service",
        "systemctl is-active multi-user.target",
    ])?;
    let merged: Vec<String> = ["/usr", "/opt"]
        .iter()
        .flat_map(|h| crate::vm::merged_on(&outs[1].stdout, h))
        .collect();
    if !merged.contains(&s.name) {
        return Err(CaseError::MergeRefused(
            Assertion::new(format!(
                "expected systemd-sysext.service to merge '{}' during boot; merged: {merged:?}",
                s.name
            ))
            .with_evidence(&crate::vm::refusal_lines(&outs[2].stdout, &s.name)),
        ));
    }
    // Enabled through .wants or Upholds=: up with no daemon-reload and no start by us.
    let invocations = crate::vm::services::wait_active(vm, &s.enabled_services)?;
    crate::vm::services::stay_up(vm, &invocations)?;
    // At boot tmpfiles.d and the units ran for real: the manifest's units that wait for
    // configuration are set up, its ports listen and its paths exist.
    crate::vm::services::waiting_set_up(vm, &s.manifest.waiting)?;
    crate::vm::services::listening_and_created(vm, &s.manifest)?;
    // What a user runs once the baked host is up: the manifest's commands, and every
    // binary loadable.
    crate::vm::binaries::check(vm, s)?;
    let outs2 = vm.batch(&[
        "systemctl --failed --no-legend --plain",
        BOOT_ERRORS,
        USR_LISTING,
    ])?;
    let failed: Vec<&str> = outs2[0]
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    if let Some(unit) = failed.first() {
        return Err(Assertion::new(format!(
            "expected no failed unit after booting with {}; failed: {failed:?}",
            s.file_name
        ))
        .with_evidence(&crate::vm::services::evidence(vm, unit)?)
        .into());
    }
    if outs[3].stdout.trim() != "active" {
        return Err(Assertion::new(format!(
            "expected the boot to reach multi-user.target; it is {} (system: {})",
            outs[3].stdout.trim(),
            outs[0].stdout.trim()
        ))
        .into());
    }
    let new_errors = new_errors(&outs2[1].stdout, &baseline.boot_errors);
    if !new_errors.is_empty() {
        return Err(Assertion::new(format!(
            "expected the boot with {} to log no error the boot without it does not; {} new",
            s.file_name,
            new_errors.len()
        ))
        .with_evidence(&new_errors.join("\n"))
        .into());
    }
    let hidden = hidden_base_paths(&baseline.usr, &listing(&outs2[2].stdout));
    if !hidden.is_empty() {
        return Err(Assertion::new(format!(
            "expected the merge to hide no file of the base /usr; {} hidden: {}",
            hidden.len(),
            hidden
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into());
    }
    Ok(())
}

/// Error lines with digits folded to `#`, so PIDs, addresses and timings do not make the
/// same message differ between boots.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn error_lines(journal: &str) -> Vec<String> {
    journal
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-- No entries --"))
        .map(fold)
        .collect()
}

/// This boot's error lines that the baseline boot does not have (compared folded).
fn new_errors(journal: &str, baseline: &[String]) -> Vec<String> {
    journal
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-- No entries --"))
        .filter(|l| !baseline.contains(&fold(l)))
        .map(str::to_string)
        .collect()
}

/// `find -printf '%y %p\n'` output, by path.
fn listing(text: &str) -> BTreeMap<String, char> {
    text.lines()
        .filter_map(|l| {
            let (t, p) = l.split_once(' ')?;
            Some((p.to_string(), t.chars().next()?))
        })
        .collect()
}

/// Base paths the merged `/usr` no longer has, or has as another type (a base symlink now
/// a directory from the image: everything reached through it is gone). A file the image
/// ships over a base file is a replacement, not hidden.
fn hidden_base_paths(
    base: &BTreeMap<String, char>,
    merged: &BTreeMap<String, char>,
) -> Vec<String> {
    base.iter()
        .filter_map(|(path, t)| match merged.get(path) {
            None => Some(format!("{path} (gone)")),
            Some(m) if m != t => Some(format!(
                "{path} ({} in the base, {} merged)",
                kind_word(*t),
                kind_word(*m)
            )),
            _ => None,
        })
        .collect()
}

/// What the image will hide when merged over `base`, read from the image alone: a
/// directory where the base has a symlink or a file, a non-directory where it has a
/// directory.
fn shadowed_by_image(base: &BTreeMap<String, char>, image: &Image) -> Vec<String> {
    image
        .entries()
        .iter()
        .filter(|e| e.path.starts_with("usr/"))
        .filter_map(|e| {
            let path = format!("/{}", e.path);
            let t = *base.get(&path)?;
            let mine = match e.kind {
                Kind::Dir => 'd',
                Kind::Symlink(_) => 'l',
                _ => 'f',
            };
            let hides = (mine == 'd' && t != 'd') || (mine != 'd' && t == 'd');
            hides.then(|| {
                let under = base
                    .keys()
                    .filter(|p| p.starts_with(&format!("{path}/")))
                    .count();
                format!(
                    "{path} ({} in the base, {} in the image{})",
                    kind_word(t),
                    kind_word(mine),
                    if under > 0 {
                        format!(", {under} base paths under it")
                    } else {
                        String::new()
                    }
                )
            })
        })
        .collect()
}

fn kind_word(t: char) -> &'static str {
    match t {
        'd' => "a directory",
        'l' => "a symlink",
        'f' => "a file",
        _ => "a special file",
    }
}

/// The console's lines from systemd and its units (journald forwards errors there), not
/// the kernel's or the initramfs's.
fn systemd_lines(console: &str) -> String {
    console
        .lines()
        .filter(|l| l.contains(".service") || l.contains("systemd"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, char)]) -> BTreeMap<String, char> {
        pairs.iter().map(|(p, t)| (p.to_string(), *t)).collect()
    }

    #[test]
    fn a_directory_over_the_sbin_symlink_hides_it() {
        let base = map(&[
            ("/usr", 'd'),
            ("/usr/bin", 'd'),
            ("/usr/bin/sshd", 'f'),
            ("/usr/sbin", 'l'),
        ]);
        let merged = map(&[
            ("/usr", 'd'),
            ("/usr/bin", 'd'),
            ("/usr/bin/sshd", 'f'),
            ("/usr/sbin", 'd'),
            ("/usr/sbin/tool", 'f'),
        ]);
        let hidden = hidden_base_paths(&base, &merged);
        assert_eq!(
            hidden,
            ["/usr/sbin (a symlink in the base, a directory merged)"]
        );
    }

    #[test]
    fn a_replaced_file_is_not_hidden_but_a_lost_one_is() {
        let base = map(&[
            ("/usr/bin/a", 'f'),
            ("/usr/lib/x", 'd'),
            ("/usr/lib/x/y", 'f'),
        ]);
        let merged = map(&[("/usr/bin/a", 'f'), ("/usr/lib/x", 'f')]);
        let hidden = hidden_base_paths(&base, &merged);
        assert_eq!(
            hidden,
            [
                "/usr/lib/x (a directory in the base, a file merged)",
                "/usr/lib/x/y (gone)"
            ]
        );
    }

    #[test]
    fn errors_compare_with_digits_folded() {
        let baseline = error_lines("foo[123]: bad thing at 0x1f\n-- No entries --\n");
        assert_eq!(baseline, ["foo[#]: bad thing at #x#f"]);
        let fresh = new_errors(
            "foo[456]: bad thing at 0x2f\nbar.service: Failed\n",
            &baseline,
        );
        assert_eq!(fresh, ["bar.service: Failed"]);
    }
}
