//! The versions family: `builder::version::compare_on` (our UAPI.10 order, which the
//! store, the `.v` picker model and lint use, as systemd's build for the guest's arch has it) against systemd's `strverscmp_improved` in the
//! guest, tens of thousands of generated pairs in one command.
//!
//! `systemd-analyze compare-versions` is the documented way to ask systemd, but it is a
//! process per pair (tens of milliseconds under TCG). `strverscmp_probe.c` calls the same
//! function of the guest's own `libsystemd-shared` for every pair on its stdin; every run
//! first checks the probe against `systemd-analyze compare-versions` on a sample, so a
//! probe that lied would fail the run, not pass it.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use sysext_builder::Arch;
use sysext_builder::version;
use sysext_harness::Vm;

use super::report::{Disagreement, FamilyReport, Run};
use crate::fuzz::Rng;
use crate::shell::quote;

const PROBE_SOURCE: &str = include_str!("strverscmp_probe.c");

/// Pairs also asked of `systemd-analyze compare-versions`, to hold the probe to it.
const CROSS_CHECK: usize = 60;

/// Pieces versions are made of: every character class UAPI.10 treats differently, leading
/// zeros, separators systemd skips, and a multi-byte letter.
const PIECES: &[&str] = &[
    "0",
    "1",
    "2",
    "9",
    "10",
    "01",
    "007",
    "123",
    "4294967296",
    ".",
    ".",
    "-",
    "~",
    "^",
    "_",
    "+",
    "a",
    "b",
    "B",
    "rc",
    "alpha",
    "pre",
    "post",
    "z",
    "α",
    ":",
    "/",
    "",
    "1.2",
    "1.10",
    "2~rc1",
];

/// Pair `index` of `seed`: a random version and either another or a near copy of it (one
/// piece changed, added or cut), which is where orders disagree.
pub fn pair(seed: u64, index: u64) -> (String, String) {
    let mut rng = Rng::for_mutant(seed ^ 0x7665_7273, index);
    let make = |rng: &mut Rng| -> Vec<&'static str> {
        let n = rng.below(7);
        (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
    };
    let a = make(&mut rng);
    let b = if rng.below(2) == 0 {
        make(&mut rng)
    } else {
        let mut b = a.clone();
        let at = rng.below(b.len() + 1);
        match rng.below(3) {
            0 if at < b.len() => b[at] = PIECES[rng.below(PIECES.len())],
            1 if at < b.len() => {
                b.remove(at);
            }
            _ => b.insert(at, PIECES[rng.below(PIECES.len())]),
        }
        b
    };
    (a.concat(), b.concat())
}

fn symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// The probe built for `arch` with the host's C compiler (a cross compiler for arm64),
/// cached by the source's hash.
pub fn probe_binary(arch: Arch) -> Result<PathBuf, String> {
    let hash = hex::encode(&Sha256::digest(PROBE_SOURCE.as_bytes())[..6]);
    let dir = sysext_builder::cache::root().join("tools");
    let bin = dir.join(format!("strverscmp-probe-{arch}-{hash}"));
    if bin.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join(format!("strverscmp-probe-{hash}.c"));
    std::fs::write(&src, PROBE_SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
    let (cc, package) = match (Arch::host(), arch) {
        (Some(h), a) if h == a => ("gcc", "gcc"),
        (_, Arch::Arm64) => ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        (_, Arch::X86_64) => ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu"),
    };
    let tmp = dir.join(format!(
        ".strverscmp-probe-{arch}-{hash}.{}",
        std::process::id()
    ));
    sysext_builder::host_tool::output(
        std::process::Command::new(cc)
            .args(["-O2", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl"),
        package,
    )
    .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(bin)
}

/// `systemd-analyze compare-versions A B` prints `A < B`, `A == B` or `A > B`.
fn analyze_symbol(out: &str) -> Option<&'static str> {
    let line = out.lines().next()?;
    if line.contains(" < ") {
        Some("<")
    } else if line.contains(" == ") {
        Some("=")
    } else if line.contains(" > ") {
        Some(">")
    } else {
        None
    }
}

/// `systemd-analyze compare-versions` on each pair, a process each, 200 to a round trip:
/// the documented way, which holds the probe to account and is `bench`'s baseline.
fn analyze(vm: &Vm, pairs: &[&(String, String)]) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(200) {
        let script: Vec<String> = chunk
            .iter()
            .map(|(a, b)| {
                format!(
                    "systemd-analyze compare-versions -- {} {} | head -n 1",
                    quote(a),
                    quote(b)
                )
            })
            .collect();
        let refs: Vec<&str> = script.iter().map(String::as_str).collect();
        let answers = vm.batch(&refs).map_err(|e| format!("guest: {e}"))?;
        for ((a, b), ans) in chunk.iter().zip(&answers) {
            out.push(analyze_symbol(&ans.stdout).ok_or_else(|| {
                format!(
                    "systemd-analyze compare-versions -- {a:?} {b:?} printed {:?}",
                    ans.combined()
                )
            })?);
        }
    }
    Ok(out)
}

/// The probe's answers for every pair, in one command.
fn probe(
    vm: &Vm,
    arch: Arch,
    pairs: &[(String, String)],
    work: &Path,
) -> Result<Vec<&'static str>, String> {
    let bin = probe_binary(arch)?;
    let input = work.join("pairs.tsv");
    let mut text = String::with_capacity(pairs.len() * 16);
    for (a, b) in pairs {
        text.push_str(a);
        text.push('\t');
        text.push_str(b);
        text.push('\n');
    }
    std::fs::write(&input, text).map_err(|e| format!("{}: {e}", input.display()))?;
    let g = |e: sysext_harness::HarnessError| format!("guest: {e}");
    vm.upload(&bin, "/run/dt-probe").map_err(g)?;
    let answers = vm
        .upload_and_batch(
            &input,
            "/run/dt-pairs.tsv",
            &["chmod 0755 /run/dt-probe && /run/dt-probe \"$(ls /usr/lib/*/systemd/libsystemd-shared-*.so /usr/lib/systemd/libsystemd-shared-*.so 2>/dev/null | head -n 1)\" < /run/dt-pairs.tsv"],
        )
        .map_err(g)?
        .remove(0);
    if answers.status != 0 {
        return Err(format!(
            "the version probe failed in the guest (exit {}): {}",
            answers.status,
            answers.stderr.trim()
        ));
    }
    let theirs: Vec<&'static str> = answers
        .stdout
        .lines()
        .map(|l| match l {
            "<" => "<",
            "=" => "=",
            ">" => ">",
            _ => "?",
        })
        .collect();
    if theirs.len() != pairs.len() || theirs.contains(&"?") {
        return Err(format!(
            "the version probe answered {} of {} pairs (or not with <, = or >)",
            theirs.len(),
            pairs.len()
        ));
    }
    Ok(theirs)
}

pub fn run(vm: &Vm, r: &Run, work: &Path, progress: &dyn Fn(&str)) -> Result<FamilyReport, String> {
    let started = Instant::now();
    let pairs: Vec<(String, String)> = (0..u64::from(r.count)).map(|i| pair(r.seed, i)).collect();
    let ours: Vec<&'static str> = pairs
        .iter()
        .map(|(a, b)| symbol(version::compare_on(r.arch, a, b)))
        .collect();
    let build_seconds = started.elapsed().as_secs_f64();
    progress(&format!(
        "asking the guest's systemd about {} version pairs",
        pairs.len()
    ));
    let guest_started = Instant::now();
    let mut notes = Vec::new();
    let theirs = if r.naive {
        analyze(vm, &pairs.iter().collect::<Vec<_>>())?
    } else {
        probe(vm, r.arch, &pairs, work)?
    };
    let guest_seconds = guest_started.elapsed().as_secs_f64();
    if !r.naive {
        // Hold the probe to systemd-analyze on a sample: the documented interface decides.
        let sample: Vec<usize> = (0..pairs.len())
            .step_by((pairs.len() / CROSS_CHECK).max(1))
            .take(CROSS_CHECK)
            .collect();
        let said = analyze(vm, &sample.iter().map(|&i| &pairs[i]).collect::<Vec<_>>())?;
        for (&i, said) in sample.iter().zip(said) {
            if said != theirs[i] {
                return Err(format!(
                    "the version probe says {:?} {} {:?} but systemd-analyze compare-versions says {said}: the probe cannot be trusted",
                    pairs[i].0, theirs[i], pairs[i].1
                ));
            }
        }
        notes.push(format!(
            "the probe agreed with systemd-analyze compare-versions on {} sampled pairs",
            sample.len()
        ));
    }
    let mut disagreements = Vec::new();
    for (i, ((a, b), ours)) in pairs.iter().zip(&ours).enumerate() {
        if *ours != theirs[i] {
            disagreements.push(Disagreement {
                name: format!("pair {i}"),
                variant: format!("{a:?} vs {b:?}"),
                what: format!(
                    "we order {a:?} {ours} {b:?}, systemd {a:?} {} {b:?}",
                    theirs[i]
                ),
                lint: format!("builder::version::compare_on({}): {ours}", r.arch),
                systemd: format!("strverscmp_improved: {}", theirs[i]),
                shrunk: None,
                replay: format!(
                    "systemd-analyze compare-versions -- {} {}",
                    quote(a),
                    quote(b)
                ),
            });
        }
    }
    Ok(FamilyReport {
        family: "versions",
        arch: r.arch.to_string(),
        profile: r.profile.to_string(),
        seed: r.seed,
        checked: pairs.len(),
        agreed: pairs.len() - disagreements.len(),
        disagreements,
        build_seconds,
        guest_seconds,
        per_second: pairs.len() as f64 / guest_seconds.max(1e-9),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_reproducible_and_have_no_line_breaks_or_tabs() {
        for i in 0..2000 {
            let p = pair(3, i);
            assert_eq!(p, pair(3, i));
            assert!(!p.0.contains(['\t', '\n']) && !p.1.contains(['\t', '\n']));
        }
    }

    #[test]
    fn systemd_analyze_output_is_read_as_an_order() {
        assert_eq!(analyze_symbol("1.2 < 1.10\n"), Some("<"));
        assert_eq!(analyze_symbol("1 == 1\n"), Some("="));
        assert_eq!(analyze_symbol("garbage"), None);
    }
}
