//! `sysext-test`: build extension images and check them against the Extension Image rules.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use sysext_builder::Arch;
use sysext_builder::build::{self, Format};
use sysext_builder::spec::Compression;
use sysext_cases::lint::{self, LintError, Linter, TargetKind};
use sysext_cases::report;

#[derive(Parser)]
#[command(
    name = "sysext-test",
    version,
    about = "Build systemd system extensions and check them before they ship",
    long_about = "Build systemd system extensions (sysexts) the way the Flatcar sysext bakery publishes them, and check \
                  images against the Extension Image rules before any host tries to merge them.\n\n\
                  Exit status: 0 clean, 1 findings of severity error, 2 usage or I/O problems.",
    after_help = "Examples:\n  sysext-test build fixtures/extensions/busybox.toml --arch all -o out/\n  sysext-test lint out/\n  sysext-test lint --format json docker-28.0.4-x86-64.raw"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build NAME-VERSION-ARCH.raw, SHA256SUMS and NAME.conf from an extension spec (TOML).
    #[command(
        after_help = "The output directory is a bakery-style release directory: building the same spec for \
                            x86-64 and arm64 into one directory gives one SHA256SUMS with both images."
    )]
    Build {
        /// Extension specs, e.g. fixtures/extensions/busybox.toml (several build into one directory).
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Output directory (created if missing).
        #[arg(short, long, default_value = ".")]
        output: PathBuf,
        /// Architecture to build for: x86-64, arm64, or all (both, except for specs that pin
        /// one). Defaults to the spec's arch, else x86-64.
        #[arg(long, value_parser = parse_arch_choice)]
        arch: Option<ArchChoice>,
        /// Image format.
        #[arg(long, value_enum, default_value_t = FormatArg::Squashfs)]
        format: FormatArg,
        /// squashfs compression; defaults to the spec's, else gzip (mksquashfs's default).
        #[arg(long, value_enum)]
        compression: Option<CompressionArg>,
        /// URL the transfer file's Source Path points under (default: the bakery hub).
        #[arg(long)]
        hub: Option<String>,
    },
    /// Check images, directory images or release directories against the Extension Image rules.
    #[command(
        after_help = "A release directory (holding *.raw and SHA256SUMS) is checked as a whole: each image, \
                            SHA256SUMS against the files, and each transfer file against the published names."
    )]
    Lint {
        /// Images (.raw), directory images, or bakery release directories.
        #[arg(required_unless_present = "list_rules")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        /// The OS the images will be merged on.
        #[arg(long, value_enum, default_value_t = TargetArg::Flatcar)]
        target: TargetArg,
        /// Match extension-release against this os-release instead of the target's built-in one.
        #[arg(long, value_name = "FILE")]
        host_os_release: Option<PathBuf>,
        /// The architecture the images are for (default: from each file name, if bakery-style).
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// List every rule with its id, severity and summary, then exit.
        #[arg(long)]
        list_rules: bool,
    },
    /// Boot guests and run the VM cases (merge, binaries, services, unmerge) on your images.
    #[command(
        after_help = "Each case restores a snapshot of a Debian trixie guest (systemd 257), installs the image \
                            the bakery way (/opt/extensions/NAME/FILE plus /etc/extensions/NAME.raw) and checks it. \
                            A failed case keeps console, journal and sysext status under \
                            target/sysext-test/artifacts/. Needs root, QEMU and the guest (bash .ci/setup)."
    )]
    Run {
        /// Extension images (.raw).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Guest architecture; default: from the bakery-style file name, else x86-64.
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Arch>,
        /// A test manifest (TOML: commands = [{ run, expect }], services, needs-config, ...).
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Run only these cases (merge, binaries, services, unmerge); default: all.
        #[arg(long = "case", value_name = "CASE")]
        cases: Vec<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Serve a release directory under the paths extensions.flatcar.org uses, for sysupdate.
    #[command(
        after_help = "Serves DIR (what `sysext-test build -o DIR` writes: NAME-VERSION-ARCH.raw, SHA256SUMS, \
                            NAME.conf) on 127.0.0.1 the way the bakery's redirector does: /extensions/NAME/SHA256SUMS, \
                            /extensions/NAME/NAME-VERSION-ARCH.raw, /extensions/NAME.conf, /extensions/SHA256SUMS. \
                            A QEMU guest with user networking reaches it at 10.0.2.2; build with \
                            `--hub http://10.0.2.2:PORT/extensions` so the transfer file points at it. \
                            Prints one line per request (JSON lines with --format json); Ctrl-C stops it."
    )]
    Mirror {
        /// Release directory to serve.
        dir: PathBuf,
        /// Port on 127.0.0.1; 0 lets the OS pick a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Stop after this many seconds (default: run until Ctrl-C or SIGTERM).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Build (or reuse) the cached Debian trixie guest images the VM cases boot.
    #[command(subcommand)]
    Guest(GuestCommand),
    /// Measure lint against unsquashfs-then-check, and build against mksquashfs.
    #[command(
        after_help = "Needs squashfs-tools and /usr/bin/time (bash .ci/setup installs them). Takes a few \
                            minutes; prints a markdown table (or JSON) to paste into the README."
    )]
    Bench {
        /// Host directory whose files fill the benchmark image.
        #[arg(long, default_value = "/usr/lib")]
        source: PathBuf,
        /// About how many files to take (every k-th file, sorted by path).
        #[arg(long, default_value_t = 20_000)]
        files: usize,
        /// Skip files larger than this many MiB.
        #[arg(long, default_value_t = 32)]
        max_file_mib: u64,
        /// Runs per measurement; the median counts.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Scratch directory for the staged tree and images.
        #[arg(long, default_value = "target/sysext-test/bench")]
        workdir: PathBuf,
        /// Measure guests instead: cold boot to SSH and snapshot restore to SSH, per arch.
        #[arg(long)]
        vm: bool,
        /// Where the peer extracts to (a tmpfs).
        #[arg(long, default_value = "/dev/shm")]
        tmpfs: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
}

#[derive(Subcommand)]
enum GuestCommand {
    /// Build the guest for an arch, or print where the cached one is. Needs root.
    #[command(
        after_help = "Guests are cached under $XDG_CACHE_HOME/sysext-test/guests (or SYSEXT_TEST_CACHE) by a \
                            hash of their recipe; a second build with the same recipe takes milliseconds."
    )]
    Build {
        /// x86-64, arm64, or all.
        #[arg(long, value_parser = parse_arch_choice, default_value = "x86-64")]
        arch: ArchChoice,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Squashfs,
    Erofs,
}
#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Xz,
    Zstd,
}
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum OutputFormat {
    Human,
    Json,
}
#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    Flatcar,
    Generic,
}

#[derive(Clone, Copy)]
enum ArchChoice {
    One(Arch),
    All,
}

fn parse_arch_choice(s: &str) -> Result<ArchChoice, String> {
    if s == "all" {
        Ok(ArchChoice::All)
    } else {
        parse_arch(s).map(ArchChoice::One)
    }
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    s.parse()
        .map_err(|e: sysext_builder::arch::UnknownArch| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            specs,
            output,
            arch,
            format,
            compression,
            hub,
        } => run_build(specs, output, arch, format, compression, hub),
        Command::Lint {
            paths,
            format,
            target,
            host_os_release,
            arch,
            list_rules,
        } => run_lint(paths, format, target, host_os_release, arch, list_rules),
        Command::Guest(GuestCommand::Build { arch }) => run_guest_build(arch),
        Command::Mirror {
            dir,
            port,
            timeout,
            format,
        } => run_mirror(&dir, port, timeout, format),
        Command::Run {
            images,
            arch,
            manifest,
            cases,
            format,
        } => run_vm(images, arch, manifest, cases, format),
        Command::Bench { vm: true, runs, .. } => run_vm_bench(runs.max(1)),
        Command::Bench {
            source,
            files,
            max_file_mib,
            runs,
            workdir,
            tmpfs,
            format,
            vm: false,
        } => {
            let opts = sysext_cases::bench::Options {
                source,
                files,
                max_file_size: max_file_mib << 20,
                runs: runs.max(1),
                workdir,
                tmpfs,
            };
            sysext_cases::bench::run(&opts)
                .map_err(anyhow::Error::from)
                .and_then(|r| {
                    match format {
                        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                        OutputFormat::Human => print!("{}", sysext_cases::bench::markdown(&r)),
                    }
                    Ok(ExitCode::SUCCESS)
                })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sysext-test: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_build(
    specs: Vec<PathBuf>,
    output: PathBuf,
    arch: Option<ArchChoice>,
    format: FormatArg,
    compression: Option<CompressionArg>,
    hub: Option<String>,
) -> anyhow::Result<ExitCode> {
    let base = build::Options {
        arch: None,
        format: match format {
            FormatArg::Squashfs => Format::Squashfs,
            FormatArg::Erofs => Format::Erofs,
        },
        compression: compression.map(|c| match c {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Zstd => Compression::Zstd,
        }),
        hub,
    };
    let total = std::time::Instant::now();
    let mut count = 0;
    for spec_path in &specs {
        let spec =
            sysext_builder::spec::Spec::load(spec_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let pinned = spec.arch.as_deref().and_then(|a| a.parse::<Arch>().ok());
        let arches: Vec<Option<Arch>> = match (arch, pinned) {
            (Some(ArchChoice::All), Some(p)) => vec![Some(p)],
            (Some(ArchChoice::All), None) => Arch::ALL.iter().copied().map(Some).collect(),
            (Some(ArchChoice::One(a)), _) => vec![Some(a)],
            (None, _) => vec![None],
        };
        let spec_dir = spec_path.parent().unwrap_or(std::path::Path::new("."));
        for a in arches {
            let opts = build::Options {
                arch: a,
                ..base.clone()
            };
            let start = std::time::Instant::now();
            let out = match build::build_spec(&spec, spec_dir, &output, &opts) {
                Ok(out) => out,
                Err(e) if e.is_usage() => anyhow::bail!("{}: {e}", spec_path.display()),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("building {}", spec_path.display()))
                    );
                }
            };
            println!("{}  {}", out.sha256, out.image.display());
            eprintln!(
                "built {} ({}) in {:.2}s",
                out.image.display(),
                out.arch,
                start.elapsed().as_secs_f64()
            );
            count += 1;
        }
    }
    eprintln!(
        "{count} image(s) in {:.1}s; SHA256SUMS and transfer files are in {}",
        total.elapsed().as_secs_f64(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_vm(
    images: Vec<PathBuf>,
    arch: Option<Arch>,
    manifest: Option<PathBuf>,
    cases: Vec<String>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    use sysext_cases::vm;
    for c in &cases {
        if !vm::CASES.contains(&c.as_str()) {
            anyhow::bail!("unknown case '{c}': use {}", vm::CASES.join(", "));
        }
    }
    let manifest = match &manifest {
        Some(p) => sysext_cases::manifest::Manifest::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Default::default(),
    };
    let cases: Vec<&str> = if cases.is_empty() {
        vm::CASES.to_vec()
    } else {
        cases.iter().map(String::as_str).collect()
    };
    let mut plan = Vec::new();
    for img in &images {
        if !img.is_file() {
            anyhow::bail!("{}: no such image file", img.display());
        }
        let subject = vm::Subject::from_image(img, manifest.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}", img.display()))?;
        let a = arch
            .or_else(|| {
                sysext_cases::lint::rules::naming::triple(&subject.file_name, &[])
                    .and_then(|t| t.arch.parse().ok())
            })
            .unwrap_or(Arch::X86_64);
        plan.push((subject, a));
    }
    for (_, a) in &plan {
        sysext_builder::guest::build_or_reuse(&sysext_builder::guest::Recipe::debian(*a), &|l| {
            eprintln!("{l}")
        })
        .map_err(|e| anyhow::anyhow!("the {a} guest: {e}"))?;
    }
    let target = std::env::current_dir()?.join("target");
    let snapshots = sysext_builder::cache::root().join("snapshots");
    let mut rows = Vec::new();
    for (subject, a) in &plan {
        for case in &cases {
            let name = format!("vm::{a}::{}::{case}", subject.name);
            eprintln!("{name} ...");
            let o = vm::runner::run_case(&name, subject, *a, case, &target, &snapshots, &|l| {
                eprintln!("  {l}")
            });
            eprintln!(
                "{name}: {} in {:.1}s",
                if o.result.is_ok() { "pass" } else { "FAIL" },
                o.duration.as_secs_f64()
            );
            rows.push((case.to_string(), *a, subject.file_name.clone(), o));
        }
    }
    // This process's snapshot is useless once it exits (its SSH key dies with it).
    let _ = std::fs::remove_dir_all(sysext_harness::snapshot::run_dir(&snapshots));
    let failed = rows.iter().filter(|r| r.3.result.is_err()).count();
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|(case, a, img, o)| {
                    serde_json::json!({
                        "image": img, "arch": a.systemd_name(), "case": case,
                        "result": if o.result.is_ok() { "pass" } else { "fail" },
                        "seconds": (o.duration.as_secs_f64() * 10.0).round() / 10.0,
                        "message": match &o.result { Ok(n) => n.clone(), Err(e) => Some(e.clone()) },
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        OutputFormat::Human => {
            writeln!(
                out,
                "{:<10} {:<7} {:<6} {:>7}  IMAGE",
                "CASE", "ARCH", "RESULT", "TIME"
            )?;
            for (case, a, img, o) in &rows {
                let r = if o.result.is_ok() { "pass" } else { "FAIL" };
                writeln!(
                    out,
                    "{case:<10} {:<7} {r:<6} {:>6.1}s  {img}",
                    a.systemd_name(),
                    o.duration.as_secs_f64()
                )?;
            }
            for (case, a, img, o) in &rows {
                if let Err(e) = &o.result {
                    writeln!(out, "\n{case} on {a} for {img} failed:\n{e}")?;
                }
            }
            writeln!(
                out,
                "{} case(s): {} passed, {failed} failed",
                rows.len(),
                rows.len() - failed
            )?;
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_vm_bench(runs: usize) -> anyhow::Result<ExitCode> {
    let mut out = String::from(
        "| arch | accel | cold boot to SSH login | restore to SSH login |\n|---|---|---|---|\n",
    );
    for a in Arch::ALL {
        let guest = sysext_builder::guest::build_or_reuse(
            &sysext_builder::guest::Recipe::debian(a),
            &|l| eprintln!("{l}"),
        )
        .map_err(|e| anyhow::anyhow!("the {a} guest: {e}"))?;
        let mut cold = Vec::new();
        let mut snap = None;
        let dir = tempfile::tempdir()?;
        for i in 0..runs.min(2) {
            let vm = sysext_harness::Vm::boot(&guest).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "bench: {a} cold boot {}: {:.1}s ({})",
                i + 1,
                vm.startup.as_secs_f64(),
                vm.accel.name()
            );
            cold.push((vm.startup.as_secs_f64(), vm.accel.name()));
            if snap.is_none() {
                snap = Some(
                    vm.save(&dir.path().join("snap"))
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                );
            }
        }
        let snap = snap.ok_or_else(|| anyhow::anyhow!("no snapshot"))?;
        let mut restore = Vec::new();
        for i in 0..runs {
            let vm = sysext_harness::Vm::restore(&snap).map_err(|e| anyhow::anyhow!("{e}"))?;
            vm.succeed("true").map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "bench: {a} restore {}: {:.2}s",
                i + 1,
                vm.startup.as_secs_f64()
            );
            restore.push(vm.startup.as_secs_f64());
        }
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|t| format!("{t:.1} s"))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let cold_s: Vec<f64> = cold.iter().map(|c| c.0).collect();
        out.push_str(&format!(
            "| {a} | {} | {} | {} |\n",
            cold.first().map(|c| c.1).unwrap_or("?"),
            fmt(&cold_s),
            fmt(&restore)
        ));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn run_mirror(
    dir: &std::path::Path,
    port: u16,
    timeout: Option<u64>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    use sysext_harness::mirror::{Logged, Mirror};
    if !dir.is_dir() {
        anyhow::bail!(
            "{}: not a directory; give a release directory (sysext-test build SPEC -o DIR writes one)",
            dir.display()
        );
    }
    if !dir.join("SHA256SUMS").is_file() {
        eprintln!(
            "sysext-test: warning: {} has no SHA256SUMS, so sysupdate will find nothing here (build into it first)",
            dir.display()
        );
    }
    let json = matches!(format, OutputFormat::Json);
    let observer = Box::new(move |r: &Logged| {
        if json {
            if let Ok(line) = serde_json::to_string(r) {
                println!("{line}");
            }
        } else {
            println!(
                "{} {} {} {} bytes{}",
                r.method,
                r.path,
                r.status,
                r.bytes,
                r.fault
                    .map(|f| format!(" (fault: {f})"))
                    .unwrap_or_default()
            );
        }
    });
    let mirror = Mirror::serve_on(dir, port, Some(observer))
        .map_err(|e| anyhow::anyhow!("{e} (pick another --port, or 0 for a free one)"))?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "serving": dir.display().to_string(),
                "url": mirror.url(),
                "guest_url": mirror.guest_url(),
            })
        );
    } else {
        eprintln!(
            "serving {} at {}/\n  guests (QEMU user networking): {}/\n  transfer files for it: sysext-test build SPEC --hub {}\n  Ctrl-C stops",
            dir.display(),
            mirror.url(),
            mirror.guest_url(),
            mirror.guest_url()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let limit = async {
            match timeout {
                Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
            _ = limit => Ok(()),
        }
    })?;
    drop(mirror);
    Ok(ExitCode::SUCCESS)
}

fn run_guest_build(arch: ArchChoice) -> anyhow::Result<ExitCode> {
    let arches = match arch {
        ArchChoice::All => Arch::ALL.to_vec(),
        ArchChoice::One(a) => vec![a],
    };
    for a in arches {
        let recipe = sysext_builder::guest::Recipe::debian(a);
        let start = std::time::Instant::now();
        let guest = sysext_builder::guest::build_or_reuse(&recipe, &|line| eprintln!("{line}"))
            .map_err(|e| anyhow::anyhow!("building the {a} guest: {e}"))?;
        // Probing here (cached per host boot) keeps the first VM case's clock clean; this
        // command is also nextest's setup script for the VM cases.
        let accel = sysext_harness::accel::choose(a, &guest.kernel);
        println!(
            "{a}\t{}\tkernel {}\t{}\t{:.1}s",
            guest.dir.display(),
            guest.kernel_version,
            accel.name(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_lint(
    paths: Vec<PathBuf>,
    format: OutputFormat,
    target: TargetArg,
    host_os_release: Option<PathBuf>,
    arch: Option<Arch>,
    list_rules: bool,
) -> anyhow::Result<ExitCode> {
    if list_rules {
        let mut out = std::io::stdout().lock();
        for r in lint::rules::all() {
            writeln!(
                out,
                "{:<36} {:<7} {}  [{}]",
                r.id,
                r.severity.as_str(),
                r.summary,
                r.reference
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let host = match &host_os_release {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read the host os-release", p.display()))?;
            Some(sysext_builder::osrelease::OsRelease::parse(&text).0)
        }
        None => None,
    };
    let linter = Linter::new(lint::Options {
        target: match target {
            TargetArg::Flatcar => TargetKind::Flatcar,
            TargetArg::Generic => TargetKind::Generic,
        },
        host_os_release: host,
        arch,
    });
    let mut reports = Vec::new();
    for p in &paths {
        match linter.lint_path(p) {
            Ok(r) => reports.extend(r),
            Err(LintError::Io { path, source })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                anyhow::bail!(
                    "{}: no such file or directory; pass an image (.raw), a directory image or a release directory",
                    path.display()
                )
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => report::json(&mut out, &reports)?,
        OutputFormat::Human => report::human(&mut out, &reports, std::io::stdout().is_terminal())?,
    }
    let summary = report::summarize(&reports);
    Ok(if summary.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
