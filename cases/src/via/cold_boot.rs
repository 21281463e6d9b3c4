//! The one cold boot every boot-time way shares (baked, Ignition, and the baseline they
//! compare against): boot a disk and wait for a login, or for systemd's own words that none
//! will come. Which of the two a boot without a login was decides whose fault it is:
//!
//! - systemd said so (a unit failed, emergency mode, the SSH server failed, a panic): the
//!   image's verdict, with those lines as the evidence;
//! - nothing said so (the console still shows systemd starting jobs, or nothing at all): a
//!   slow boot, which on a loaded 2-core TCG host is the emulator's, never the image's. It
//!   is booted once more, and a second slow boot is a harness error (exit 2) naming how long
//!   the same guest took without the image;
//! - QEMU died, or the initramfs never brought the network up: the emulator's too (an early
//!   TCG oops), retried once the same way.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sysext_builder::guest::Guest;
use sysext_harness::vm::BootOptions;
use sysext_harness::{HarnessError, Vm, kernel_death};

use crate::checks::journal::{self, fold};
use crate::outcome::Assertion;

/// Every path under `/usr` with its type (`find -printf %y`: f, d, l, ...).
pub const USR_LISTING: &str = "find /usr -printf '%y %p\\n'";
/// The base `/usr` of a booted guest: its extensions (Flatcar's built-ins) unmerged
/// first, so a file of a built-in the image masks is not counted as hidden by the image.
const BASE_USR_LISTING: &str = "systemd-sysext unmerge >/dev/null && find /usr -printf '%y %p\\n'";
/// The boot's error-level journal, as lines.
pub const BOOT_ERRORS: &str = "journalctl -b -p err -o cat --no-pager";
/// Console lines that mean the SSH server will not come (journald forwards errors there).
pub const GIVE_UP_ON: &[&str] = &[
    "sysext-test-sshd.service",
    // The Flatcar guests' per-connection sshd (socket-activated): an error of one is a
    // login that cannot work.
    "sshd@",
    // A base program under sbin is gone (an image hid `/usr/sbin`): sshd lives there too,
    // and its per-connection instances fail below the console's level (`ExecStart=-`
    // logs "Unable to locate executable" as a notice), so no login will come.
    "Failed at step EXEC spawning /sbin/",
    "Failed at step EXEC spawning /usr/sbin/",
    "emergency mode",
    "Kernel panic",
    "Ignition failed",
    // The kernel's word for a /usr block that does not match the verity root hash: the
    // initramfs cannot mount /usr and stops.
    "device-mapper: verity",
];
/// systemd's and the kernel's words for a boot that went wrong, as the console shows them.
/// Only these make a boot without a login the image's failure.
const FAILURE_WORDS: &[&str] = &[
    "Failed to start",
    "Failed at step",
    "Dependency failed",
    "emergency mode",
    "Kernel panic",
    "Freezing execution",
    "sysext-test-sshd.service",
    // Ignition's own last word when a stage fails (`CRITICAL : Ignition failed: ...`).
    "Ignition failed",
    "device-mapper: verity",
];

/// What the Flatcar guest's own boot looks like, without any extension: measured
/// once per guest build and kept beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    /// Error-level journal lines of a plain boot, digits folded (see [`fold`]).
    pub boot_errors: Vec<String>,
    /// Lines of a plain boot's journal and console with a word kola fails a boot on
    /// (`checks::journal`), digits folded: what the guest says without any image.
    pub badness: Vec<String>,
    /// `/usr` by path, with its type letter.
    pub usr: BTreeMap<String, char>,
    /// Seconds from QEMU start to a working login.
    pub login_seconds: f64,
}

impl Baseline {
    /// A baseline that could not have come from a booted guest: an empty or partial `/usr`
    /// would make every "nothing of the base hidden" check pass forever.
    fn is_plausible(&self) -> bool {
        self.usr.get("/usr") == Some(&'d') && self.usr.get("/usr/bin") == Some(&'d')
    }
}

/// The guest's boot without the image, from the cache or by booting it once (under a lock,
/// so concurrent cases measure it once). Every command it reads must have worked.
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
    // The state the boot cases resume from (and this baseline with them), made here too so
    // the setup script, not the first case, pays for it.
    if guest.boot() == sysext_builder::guest::Boot::Firmware && guest.holds_in_initrd {
        let base = sysext_harness::Place::from_env().snapshots();
        sysext_harness::snapshot::initrd_held(guest, &base, progress)?;
    }
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(b) = serde_json::from_str::<Baseline>(&text)
        && b.is_plausible()
    {
        return Ok(b);
    }
    progress(&format!(
        "booting the {} Flatcar guest once without extensions (its errors and /usr are the baseline)",
        guest.arch
    ));
    // A guest that died before its login (an early TCG oops, QEMU exiting) boots once more:
    // one flaky boot must not fail every case that compares with it.
    let vm = match Vm::boot_with(guest, &BootOptions::default()) {
        Ok(vm) => vm,
        Err(e) if e.is_boot_failure() => {
            progress(&format!(
                "the {} guest died during its baseline boot; booting it once more. First failure: {}",
                guest.arch,
                e.to_string().lines().next().unwrap_or_default()
            ));
            Vm::boot_with(guest, &BootOptions::default())?
        }
        Err(e) => return Err(e),
    };
    let b = measure(&vm)?;
    let json = serde_json::to_vec(&b).map_err(|e| HarnessError::Ssh(e.to_string()))?;
    sysext_builder::atomic::write_bytes(&path, &json).map_err(|e| HarnessError::io(&path, e))?;
    Ok(b)
}

fn measure(vm: &Vm) -> Result<Baseline, HarnessError> {
    let scan = journal::scan_command(None);
    let outs = vm.batch(&[
        "systemctl is-system-running --wait",
        BOOT_ERRORS,
        BASE_USR_LISTING,
        &scan,
    ])?;
    let failed = |i: usize, what: &str| HarnessError::Command {
        cmd: [
            "systemctl is-system-running --wait",
            BOOT_ERRORS,
            BASE_USR_LISTING,
            &scan,
        ][i]
            .into(),
        what: what.into(),
        output: outs.get(i).map(|o| o.combined()).unwrap_or_default(),
    };
    // `degraded` exits 1 and is still a settled boot; anything else is not a baseline.
    let state = outs.first().map(|o| o.stdout.trim()).unwrap_or_default();
    if !matches!(state, "running" | "degraded") {
        return Err(failed(0, "did not report a settled boot"));
    }
    for i in 1..4 {
        if outs.get(i).is_none_or(|o| o.status != 0) {
            return Err(failed(i, "failed while measuring the baseline"));
        }
    }
    let b = Baseline {
        boot_errors: error_lines(&outs[1].stdout),
        badness: journal::bad_lines(&outs[3].stdout)
            .into_iter()
            .chain(journal::bad_lines(&vm.console()))
            .map(|l| fold(&l))
            .collect(),
        usr: listing(&outs[2].stdout),
        login_seconds: vm.startup.as_secs_f64(),
    };
    if !b.is_plausible() {
        return Err(failed(2, "listed no /usr/bin: not a base to compare with"));
    }
    Ok(b)
}

/// Why a cold boot gave no login.
#[derive(Debug)]
pub enum NoLogin {
    /// systemd (or the kernel) said the boot went wrong: the image's verdict.
    Image {
        assertion: Assertion,
        console: String,
    },
    /// Not the image's: QEMU died, the boot was slow, a host problem.
    Harness(HarnessError),
}

/// Cold-boots `guest` and waits for a login. A boot that dies early or is merely slow is
/// booted once more; only systemd's words of failure make it the image's ([`NoLogin`]).
/// `baseline_login` (seconds) is how long the same guest took without the image.
pub fn boot(
    guest: &Guest,
    options: &BootOptions,
    baseline_login: Option<f64>,
    progress: &dyn Fn(&str),
) -> Result<Vm, NoLogin> {
    let mut tries = 0;
    loop {
        tries += 1;
        let e = match Vm::boot_with(guest, options) {
            Ok(vm) => return Ok(vm),
            Err(e) => e,
        };
        let judged = judge_no_login(e, baseline_login);
        match judged {
            NoLogin::Harness(e) if tries < 2 && retried(&e) => progress(&format!(
                "no login, and not the image's doing ({}); booting it once more",
                e.stage()
            )),
            other => return Err(other),
        }
    }
}

/// Harness errors a second boot may not repeat: QEMU died, the kernel crashed (TCG), no
/// network from the initramfs, a login that did not come in time with no word of failure.
fn retried(e: &HarnessError) -> bool {
    matches!(
        e,
        HarnessError::QemuExited { .. }
            | HarnessError::KernelDied { .. }
            | HarnessError::Timeout { .. }
    )
}

/// Whose fault a boot without a login is, read from what it says.
pub fn judge_no_login(e: HarnessError, baseline_login: Option<f64>) -> NoLogin {
    let console = match &e {
        HarnessError::GaveUp { console, .. } => console.clone(),
        HarnessError::Timeout {
            stage: "SSH login",
            console,
            ..
        } => console.clone(),
        _ => return NoLogin::Harness(e),
    };
    // A crashed kernel is the emulator's (see `kernel_death`), even where a give-up word
    // ("Kernel panic") caught it first.
    let gave_up_on = match &e {
        HarnessError::GaveUp { line, .. } => line.as_str(),
        _ => "",
    };
    if let Some(line) = kernel_death::line(gave_up_on).or_else(|| kernel_death::line(&console)) {
        return NoLogin::Harness(HarnessError::KernelDied {
            stage: "SSH login",
            line: line.to_string(),
            console,
        });
    }
    let mut said = failure_lines(&console);
    // The line a give-up matched is systemd's word even when it scrolled out of the tail.
    if let HarnessError::GaveUp { line, .. } = &e
        && !said.contains(line.as_str())
    {
        said = format!("{line}\n{said}");
    }
    if said.trim().is_empty() {
        let without = baseline_login
            .map(|s| format!("; the same guest without the image logged in after {s:.1}s"))
            .unwrap_or_default();
        return NoLogin::Harness(HarnessError::Timeout {
            stage: "SSH login",
            timeout: match &e {
                HarnessError::Timeout { timeout, .. } => *timeout,
                _ => std::time::Duration::ZERO,
            },
            console: format!(
                "a slow boot, not the image's failure: no login came and the console says nothing of a failure{without}\n{console}"
            ),
        });
    }
    NoLogin::Image {
        assertion: Assertion::new(format!("it never gave a login ({})", e.stage()))
            .with_evidence(&said),
        console,
    }
}

/// The console's lines in which systemd (or the kernel) says something failed.
fn failure_lines(console: &str) -> String {
    console
        .lines()
        .map(str::trim)
        .filter(|l| FAILURE_WORDS.iter().any(|w| l.contains(w)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A journal's error lines, each folded.
pub fn error_lines(journal: &str) -> Vec<String> {
    journal_lines(journal).map(fold).collect()
}

/// The journal's lines without blanks and journalctl's "-- No entries --".
pub fn journal_lines(journal: &str) -> impl Iterator<Item = &str> {
    journal
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-- No entries --"))
}

/// `find -printf '%y %p\n'` output, by path.
pub fn listing(text: &str) -> BTreeMap<String, char> {
    text.lines()
        .filter_map(|l| {
            let (t, p) = l.split_once(' ')?;
            Some((p.to_string(), t.chars().next()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn login_timeout(console: &str) -> HarnessError {
        HarnessError::Timeout {
            stage: "SSH login",
            timeout: Duration::from_secs(45),
            console: console.into(),
        }
    }

    #[test]
    fn a_login_timeout_while_systemd_starts_jobs_is_a_harness_error() {
        let console = "[   14.2] systemd[1]: Starting ldconfig.service...\n[  ***] A start job is running for Rebuild Dynamic Linker Cache (35s / no limit)";
        match judge_no_login(login_timeout(console), Some(12.4)) {
            NoLogin::Harness(e) => {
                let text = e.to_string();
                assert!(text.contains("slow boot"), "{text}");
                assert!(text.contains("12.4s"), "{text}");
                assert!(retried(&e));
            }
            NoLogin::Image { assertion, .. } => panic!("blamed the image: {assertion}"),
        }
    }

    #[test]
    fn a_login_timeout_after_systemd_says_a_unit_failed_is_the_images() {
        let console = "[   14.2] systemd[1]: Failed to start sysext-test-sshd.service - SSH server.\nsome kernel line";
        match judge_no_login(login_timeout(console), None) {
            NoLogin::Image { assertion, .. } => {
                assert_eq!(
                    assertion.evidence,
                    [
                        "[   14.2] systemd[1]: Failed to start sysext-test-sshd.service - SSH server."
                    ]
                );
            }
            NoLogin::Harness(e) => panic!("not blamed on the image: {e}"),
        }
    }

    #[test]
    fn a_give_up_line_is_the_images_even_when_it_left_the_console_tail() {
        let e = HarnessError::GaveUp {
            stage: "SSH login",
            line: "sysext-test-sshd.service: Failed at step EXEC".into(),
            console: "[  20.1] some later kernel line".into(),
        };
        match judge_no_login(e, None) {
            NoLogin::Image { assertion, .. } => {
                assert_eq!(
                    assertion.evidence,
                    ["sysext-test-sshd.service: Failed at step EXEC"]
                )
            }
            NoLogin::Harness(e) => panic!("not blamed on the image: {e}"),
        }
    }

    #[test]
    fn a_kernel_that_crashed_under_tcg_is_not_the_images_and_boots_again() {
        // The CI failure of 2026-12-06: the "Kernel panic" give-up word caught a TCG
        // oops (int3 in the page allocator) as containerd's unit started.
        let e = HarnessError::GaveUp {
            stage: "SSH login",
            line: "[   17.884676] Kernel panic - not syncing: Fatal exception in interrupt".into(),
            console: "[   17.884676] RIP: 0010:__alloc_pages_noprof+0xe4/0x310\n[   17.884676] Kernel panic - not syncing: Fatal exception in interrupt".into(),
        };
        match judge_no_login(e, Some(25.0)) {
            NoLogin::Harness(e) => {
                assert!(matches!(e, HarnessError::KernelDied { .. }), "{e}");
                assert!(retried(&e));
            }
            NoLogin::Image { assertion, .. } => panic!("blamed the image: {assertion}"),
        }
    }

    #[test]
    fn init_dying_at_boot_is_the_images() {
        let e = HarnessError::GaveUp {
            stage: "SSH login",
            line: "[ 3.2] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
                .into(),
            console: String::new(),
        };
        assert!(matches!(judge_no_login(e, None), NoLogin::Image { .. }));
    }

    #[test]
    fn qemu_dying_is_never_the_images() {
        let e = HarnessError::QemuExited {
            stage: "boot",
            status: "signal 6".into(),
            console: "Failed to start everything".into(),
            stderr: String::new(),
        };
        assert!(matches!(judge_no_login(e, None), NoLogin::Harness(_)));
    }

    #[test]
    fn an_empty_listing_is_not_a_baseline() {
        let empty = Baseline {
            boot_errors: Vec::new(),
            badness: Vec::new(),
            usr: listing(""),
            login_seconds: 1.0,
        };
        assert!(!empty.is_plausible());
        let real = Baseline {
            usr: listing("d /usr\nd /usr/bin\nf /usr/bin/sh\n"),
            ..empty
        };
        assert!(real.is_plausible());
    }

    #[test]
    fn errors_compare_with_digits_folded() {
        let baseline = error_lines("foo[123]: bad thing at 0x1f\n-- No entries --\n");
        assert_eq!(baseline, ["foo[#]: bad thing at #x#f"]);
    }
}
