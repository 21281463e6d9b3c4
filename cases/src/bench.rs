//! `sysext-test bench`: lint and build speed against the tools people use instead.
//!
//! - lint of a large image vs `unsquashfs -d` to a tmpfs, alone (lint reads every block too,
//!   so this is the same decompression work without the writing) and followed by the same
//!   checks on the extracted tree (what you would do without a reader that works inside the
//!   image);
//! - `sysext-test build` vs `mksquashfs -all-root` at the same compression (gzip, the
//!   bakery's default).
//!
//! Each side runs as a subprocess, `runs` times, and the median wall time counts; lint's
//! peak memory comes from `/usr/bin/time -v`. The machine is shared and noisy, so this is a
//! benchmark to read, not a test that fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;
use sysext_builder::host_tool;

/// What to install when our own binary is missing: it is built, not packaged.
const SELF: &str = "sysext-test (cargo build --bin sysext-test)";

#[derive(Debug, Clone)]
pub struct Options {
    /// Host directory whose files fill the image (default /usr/lib).
    pub source: PathBuf,
    /// Roughly how many files to take.
    pub files: usize,
    /// Files larger than this are skipped, so a few huge libraries do not dominate.
    pub max_file_size: u64,
    pub runs: usize,
    /// Where the staged tree and images go; must have room for ~2x the selection.
    pub workdir: PathBuf,
    /// Extraction target for the peer; a tmpfs, as the comparison intends.
    pub tmpfs: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub median_s: f64,
    pub runs_s: Vec<f64>,
    /// Median user + system seconds.
    pub median_cpu_s: f64,
    pub max_rss_mb: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub source: String,
    pub files: usize,
    pub input_mb: f64,
    pub image_mb: f64,
    /// Size of `sysext-test build`'s image of the same tree, at the same compression.
    pub ours_image_mb: f64,
    pub measurements: Vec<Measurement>,
    /// unsquashfs extraction alone / lint: how many times faster lint is.
    pub lint_vs_unsquashfs: f64,
    /// (extract + check) / lint: how many times faster lint is.
    pub lint_speedup: f64,
    /// ours / mksquashfs: the share of mksquashfs's time build takes.
    pub build_ratio: f64,
}

fn say(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Picks every k-th file (sorted by path) under `source` so about `files` remain.
fn select(opts: &Options) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut all = Vec::new();
    walk(&opts.source, &mut all)?;
    all.sort();
    let stride = all.len().div_ceil(opts.files.max(1)).max(1);
    Ok(all
        .into_iter()
        .step_by(stride)
        .filter(|(_, s)| *s <= opts.max_file_size)
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&e.path(), out)?;
        } else if ft.is_file() {
            out.push((e.path(), e.metadata()?.len()));
        }
    }
    Ok(())
}

/// Hard-links (or copies) the selection to `stage/usr/lib/...` and adds a release file.
fn stage(opts: &Options, files: &[(PathBuf, u64)], stage: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(stage);
    for (p, _) in files {
        let rel = p.strip_prefix(&opts.source).unwrap_or(p);
        let dest = stage.join("usr/lib").join(rel);
        std::fs::create_dir_all(dest.parent().unwrap_or(stage))?;
        if std::fs::hard_link(p, &dest).is_err() {
            std::fs::copy(p, &dest)?;
        }
    }
    let rel = stage.join("usr/lib/extension-release.d");
    std::fs::create_dir_all(&rel)?;
    std::fs::write(
        rel.join("extension-release.bench"),
        "ID=_any\nARCHITECTURE=x86-64\n",
    )?;
    Ok(())
}

/// One run of a command: wall and CPU (user + system) seconds, peak RSS in MB.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
    rss_mb: f64,
}

/// Runs `cmd` (from Debian package `package`) under `/usr/bin/time -v`. CPU time is
/// reported beside wall time because it barely moves with the machine's load, where wall
/// time can double.
fn timed(cmd: &Command, package: &str) -> std::io::Result<Run> {
    let start = Instant::now();
    let out = host_tool::output_any_status(
        Command::new("/usr/bin/time")
            .arg("-v")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdout(Stdio::null()),
        "time",
    )
    .map_err(std::io::Error::other)?;
    let wall = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| -> Option<f64> {
        err.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let program = cmd.get_program().to_string_lossy();
    match out.status.code() {
        Some(127) => {
            return Err(std::io::Error::other(format!(
                "{program} is missing: install {package}"
            )));
        }
        // lint exits 1 on findings; only a crash or usage error (2+) is a failure here.
        Some(0 | 1) => {}
        _ => {
            return Err(std::io::Error::other(format!(
                "{program} failed: {}",
                host_tool::stderr_tail(&out.stderr)
            )));
        }
    }
    let (Some(user), Some(system), Some(kb)) = (
        field("User time (seconds):"),
        field("System time (seconds):"),
        field("Maximum resident set size (kbytes):"),
    ) else {
        return Err(std::io::Error::other(
            "no /usr/bin/time -v output: apt-get install time",
        ));
    };
    Ok(Run {
        wall,
        cpu: user + system,
        rss_mb: kb / 1024.0,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// One side of a comparison: its name and one run of it.
type Side<'a> = (&'a str, Box<dyn FnMut() -> std::io::Result<Run> + 'a>);

/// Runs every side once per round, `runs` rounds, so that the machine's load, which changes
/// by the minute on a shared machine, weighs on both sides of a ratio alike. Returns each
/// side's runs.
fn measure_rounds(runs: usize, mut sides: Vec<Side<'_>>) -> std::io::Result<Vec<Vec<Run>>> {
    let mut done: Vec<Vec<Run>> = vec![Vec::new(); sides.len()];
    for i in 0..runs {
        for (k, (name, f)) in sides.iter_mut().enumerate() {
            let r = f()?;
            say(&format!(
                "{name}: run {}/{runs}: {:.2}s, CPU {:.2}s, max RSS {:.0} MB",
                i + 1,
                r.wall,
                r.cpu,
                r.rss_mb
            ));
            done[k].push(r);
        }
    }
    Ok(done)
}

fn measurement(name: &str, runs: &[Run]) -> Measurement {
    let wall: Vec<f64> = runs.iter().map(|r| r.wall).collect();
    let cpu: Vec<f64> = runs.iter().map(|r| r.cpu).collect();
    Measurement {
        name: name.to_string(),
        median_s: median(&wall),
        runs_s: wall,
        median_cpu_s: median(&cpu),
        max_rss_mb: runs.iter().map(|r| r.rss_mb).reduce(f64::max),
    }
}

pub fn run(opts: &Options) -> std::io::Result<Results> {
    let me = std::env::current_exe()?;
    std::fs::create_dir_all(&opts.workdir)?;
    let files = select(opts)?;
    let input: u64 = files.iter().map(|(_, s)| s).sum();
    say(&format!(
        "selected {} files, {:.0} MB from {}",
        files.len(),
        input as f64 / 1e6,
        opts.source.display()
    ));
    let stage_dir = opts.workdir.join("stage");
    stage(opts, &files, &stage_dir)?;
    let spec = opts.workdir.join("bench.toml");
    std::fs::write(
        &spec,
        // The spec sits next to the staged tree, so a relative path works wherever workdir is.
        "name = \"bench\"\nversion = \"1\"\n[[tree]]\nfrom = \"stage/usr\"\npath = \"/usr\"\n",
    )?;
    let ours_dir = opts.workdir.join("ours");
    let theirs = opts.workdir.join("bench-mksquashfs.raw");

    const BUILD: &str = "build: sysext-test build (gzip)";
    const MKSQUASHFS: &str = "build: mksquashfs -comp gzip";
    let build_ours = || {
        let _ = std::fs::remove_dir_all(&ours_dir);
        let mut cmd = Command::new(&me);
        cmd.arg("build")
            .arg(&spec)
            .arg("-o")
            .arg(&ours_dir)
            .args(["--compression", "gzip"]);
        timed(&cmd, SELF)
    };
    let build_theirs = || {
        let mut cmd = Command::new("mksquashfs");
        cmd.arg(&stage_dir).arg(&theirs).args([
            "-all-root",
            "-noappend",
            "-quiet",
            "-comp",
            "gzip",
        ]);
        timed(&cmd, "squashfs-tools")
    };
    let built = measure_rounds(
        opts.runs,
        vec![
            (BUILD, Box::new(build_ours)),
            (MKSQUASHFS, Box::new(build_theirs)),
        ],
    )?;
    let (build, mksquashfs) = (
        measurement(BUILD, &built[0]),
        measurement(MKSQUASHFS, &built[1]),
    );
    let image_mb = std::fs::metadata(&theirs)?.len() as f64 / 1e6;
    let ours_image_mb = image_size(&ours_dir)? as f64 / 1e6;

    const LINT: &str = "lint: sysext-test lint image";
    const EXTRACT: &str = "lint: unsquashfs -d tmpfs";
    const CHECK: &str = "lint: same checks on the extracted tree";
    let lint_image = || {
        let mut cmd = Command::new(&me);
        cmd.args(["lint", "--format", "json"]).arg(&theirs);
        timed(&cmd, SELF)
    };
    let extracted = opts.tmpfs.join("sysext-test-bench");
    let extract = || {
        let _ = std::fs::remove_dir_all(&extracted);
        let mut cmd = Command::new("unsquashfs");
        cmd.args(["-q", "-n", "-d"]).arg(&extracted).arg(&theirs);
        timed(&cmd, "squashfs-tools")
    };
    // The tree the extraction before it left.
    let check_extracted = || {
        let mut cmd = Command::new(&me);
        cmd.args(["lint", "--format", "json"]).arg(&extracted);
        let r = timed(&cmd, SELF);
        let _ = std::fs::remove_dir_all(&extracted);
        r
    };
    let linted = measure_rounds(
        opts.runs,
        vec![
            (LINT, Box::new(lint_image)),
            (EXTRACT, Box::new(extract)),
            (CHECK, Box::new(check_extracted)),
        ],
    )?;
    let both: Vec<Run> = linted[1]
        .iter()
        .zip(&linted[2])
        .map(|(a, b)| Run {
            wall: a.wall + b.wall,
            cpu: a.cpu + b.cpu,
            rss_mb: a.rss_mb.max(b.rss_mb),
        })
        .collect();
    let lint = measurement(LINT, &linted[0]);
    let unsquashfs = measurement(EXTRACT, &linted[1]);
    let peer = measurement("lint: unsquashfs -d tmpfs + same checks", &both);
    let lint_vs_unsquashfs = unsquashfs.median_s / lint.median_s;
    let lint_speedup = peer.median_s / lint.median_s;
    let build_ratio = build.median_s / mksquashfs.median_s;
    Ok(Results {
        source: opts.source.display().to_string(),
        files: files.len(),
        input_mb: input as f64 / 1e6,
        image_mb,
        ours_image_mb,
        measurements: vec![lint, unsquashfs, peer, build, mksquashfs],
        lint_vs_unsquashfs,
        lint_speedup,
        build_ratio,
    })
}

/// The size of the one image `sysext-test build` wrote into `dir`.
fn image_size(dir: &Path) -> std::io::Result<u64> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.path().extension().is_some_and(|x| x == "raw") {
            return Ok(e.metadata()?.len());
        }
    }
    Err(std::io::Error::other(format!(
        "{}: sysext-test build wrote no image",
        dir.display()
    )))
}

pub fn markdown(r: &Results) -> String {
    let mut s = format!(
        "Image: {} files, {:.0} MB of input from {}, {:.0} MB squashfs by mksquashfs (gzip), {:.0} MB by sysext-test build.\n\n| what | median | runs | median CPU (user+sys) | peak RSS |\n|---|---|---|---|---|\n",
        r.files, r.input_mb, r.source, r.image_mb, r.ours_image_mb
    );
    for m in &r.measurements {
        let runs: Vec<String> = m.runs_s.iter().map(|t| format!("{t:.2}")).collect();
        let rss = m
            .max_rss_mb
            .map(|r| format!("{r:.0} MB"))
            .unwrap_or_else(|| "—".into());
        s.push_str(&format!(
            "| {} | {:.2} s | {} | {:.2} s | {rss} |\n",
            m.name,
            m.median_s,
            runs.join(" / "),
            m.median_cpu_s
        ));
    }
    s.push_str(&format!(
        "\nlint is {:.1}x faster than unsquashfs extracting the image ({:.1}x than extract-then-check); build takes {:.2}x the time of mksquashfs.\n",
        r.lint_vs_unsquashfs, r.lint_speedup, r.build_ratio
    ));
    s
}

/// `sysext-test bench --vm`: one arch's guest timings, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct VmBench {
    pub arch: sysext_builder::Arch,
    pub accel: &'static str,
    /// QEMU start to the network beacon on the console (the initramfs), per cold boot.
    pub beacon: Vec<f64>,
    /// QEMU start to a working SSH login, per cold boot.
    pub login: Vec<f64>,
    /// QEMU start (restoring a saved state) to a working SSH login.
    pub restore_login: Vec<f64>,
    /// QEMU start (restoring) to the result of the first command (`true`).
    pub restore_first_command: Vec<f64>,
}

/// Cold-boots each arch's guest twice (the first boot's state is saved in a temp dir) and
/// restores it `runs` times, timing each stage. Guests are built or reused first.
pub fn vm(runs: usize, progress: &dyn Fn(&str)) -> anyhow::Result<Vec<VmBench>> {
    let mut rows = Vec::new();
    for arch in sysext_builder::Arch::ALL {
        let guest = sysext_builder::guest::build_or_reuse(
            &sysext_builder::guest::Recipe::debian(arch),
            progress,
        )
        .map_err(|e| anyhow::anyhow!("the {arch} guest: {e}"))?;
        let dir = tempfile::tempdir()?;
        let mut row = VmBench {
            arch,
            accel: "",
            beacon: Vec::new(),
            login: Vec::new(),
            restore_login: Vec::new(),
            restore_first_command: Vec::new(),
        };
        let mut snap = None;
        for i in 0..runs.clamp(1, 2) {
            let vm = sysext_harness::Vm::boot(&guest).map_err(|e| anyhow::anyhow!("{e}"))?;
            let beacon = vm.beacon.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
            progress(&format!(
                "{arch} cold boot {}: network beacon {beacon:.1}s, login {:.1}s ({})",
                i + 1,
                vm.startup.as_secs_f64(),
                vm.accel.name()
            ));
            row.accel = vm.accel.name();
            row.beacon.push(beacon);
            row.login.push(vm.startup.as_secs_f64());
            if snap.is_none() {
                snap = Some(
                    vm.save(&dir.path().join("snap"))
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                );
            }
        }
        let snap = snap.ok_or_else(|| anyhow::anyhow!("no saved state"))?;
        for i in 0..runs {
            let start = Instant::now();
            let vm = sysext_harness::Vm::restore(&snap).map_err(|e| anyhow::anyhow!("{e}"))?;
            vm.succeed("true").map_err(|e| anyhow::anyhow!("{e}"))?;
            let first = start.elapsed().as_secs_f64();
            progress(&format!(
                "{arch} restore {}: login {:.2}s, first command {first:.2}s",
                i + 1,
                vm.startup.as_secs_f64()
            ));
            row.restore_login.push(vm.startup.as_secs_f64());
            row.restore_first_command.push(first);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The README's table for [`vm`].
pub fn vm_table(rows: &[VmBench]) -> String {
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{t:.1} s"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let mut out = String::from(
        "| arch | accel | cold boot: network beacon | cold boot: SSH login | restore: SSH login | restore: first command |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.arch,
            r.accel,
            fmt(&r.beacon),
            fmt(&r.login),
            fmt(&r.restore_login),
            fmt(&r.restore_first_command)
        ));
    }
    out
}

/// `sysext-test bench --differential`: the oracle's rates per arch and family, against the
/// way without it on the same inputs (one image per `systemd-sysext merge`, one merge at a
/// time; one `systemd-analyze compare-versions` process per version pair; one unit image
/// per merge; one release directory's sysupdate calls at a time).
#[derive(Debug, Clone, Serialize)]
pub struct DifferentialBench {
    pub arch: sysext_builder::Arch,
    pub family: &'static str,
    /// Inputs (images, pairs, release directories) the oracle's way.
    pub inputs: usize,
    /// Inputs per second of guest time, batched.
    pub per_second: f64,
    /// Inputs the way without it (fewer when it is slow).
    pub baseline_inputs: usize,
    /// Inputs per second of guest time, one at a time.
    pub baseline_per_second: f64,
}

/// Runs every family each way on each arch's Debian guest, seed `seed`: `images` of each
/// image-like family (images, units, release directories), `pairs` version pairs.
pub fn differential(
    images: u32,
    pairs: u32,
    seed: u64,
    work: &std::path::Path,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<DifferentialBench>> {
    use crate::differential::{self, Family, Run};
    let place = sysext_harness::Place::from_env();
    let mut rows = Vec::new();
    for arch in sysext_builder::Arch::ALL {
        let profile = sysext_builder::guest::Profile::Debian;
        let vm = differential::guest(arch, profile, &place, progress)
            .map_err(|e| anyhow::anyhow!("the {arch} guest: {e}"))?;
        let go = |family: Family, count: u32, naive: bool| -> anyhow::Result<f64> {
            let r = Run {
                seed,
                count,
                arch,
                profile,
                naive,
                // Shrinking is not what is measured.
                shrink: 0,
            };
            let dir = work.join(format!("{arch}-{}-{naive}", family.name()));
            let rep = differential::run_family(family, &vm, &r, &dir, progress)
                .map_err(|e| anyhow::anyhow!("{arch}: {e}"))?;
            progress(&format!(
                "{arch} {}{}: {} checked, {:.1} per second of guest time",
                family.name(),
                if naive { " one by one" } else { "" },
                rep.checked,
                rep.per_second
            ));
            Ok(rep.per_second)
        };
        for family in Family::ALL {
            let (inputs, baseline) = match family {
                // A process per pair is slow: a few hundred say enough.
                Family::Versions => (pairs, pairs.min(300)),
                // One merge per unit image costs seconds each.
                Family::Units => (images, images.min(24)),
                _ => (images, images),
            };
            rows.push(DifferentialBench {
                arch,
                family: family.name(),
                inputs: inputs as usize,
                per_second: go(family, inputs, false)?,
                baseline_inputs: baseline as usize,
                baseline_per_second: go(family, baseline, true)?,
            });
        }
    }
    Ok(rows)
}

/// The README's table for [`differential`].
pub fn differential_table(rows: &[DifferentialBench]) -> String {
    let mut out = String::from(
        "| arch | family | per second, batched | per second, one at a time | ratio |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.1} ({}) | {:.1} ({}) | {:.1}x |\n",
            r.arch,
            r.family,
            r.per_second,
            r.inputs,
            r.baseline_per_second,
            r.baseline_inputs,
            r.per_second / r.baseline_per_second.max(1e-9),
        ));
    }
    out
}
