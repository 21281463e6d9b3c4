//! `sysext-test bench`: lint against unsquashfs-then-check and build against mksquashfs, or
//! (`--vm`) cold boots and restores of the guests, or (`--differential`) the oracle's rates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use sysext_cases::bench;

use crate::args::Format;

#[derive(clap::Args)]
#[command(
    after_help = "Needs squashfs-tools and /usr/bin/time (bash .ci/setup installs them). Takes a \
few minutes; prints a markdown table (or JSON) to paste into the README. The machine's load moves \
these numbers: compare ratios measured in the same run.

Examples:
  sysext-test bench
  sysext-test bench --source /usr/lib/x86_64-linux-gnu --files 100000 --format json
  sysext-test bench --vm --runs 3
  sysext-test bench --differential --images 200"
)]
pub struct Args {
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
    /// Measure the differential oracle instead: each family's inputs per second of guest
    /// time (images, version pairs, unit images, release directories), batched and one by
    /// one, per arch.
    #[arg(long, conflicts_with = "vm")]
    differential: bool,
    /// With --differential: generated images (and unit images, release directories) per way.
    #[arg(long, default_value_t = 100)]
    images: u32,
    /// Where the peer extracts to (a tmpfs).
    #[arg(long, default_value = "/dev/shm")]
    tmpfs: PathBuf,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if args.differential {
        let rows = bench::differential(
            args.images,
            20_000,
            20_261_205,
            &args.workdir.join("differential"),
            &|l| eprintln!("bench: {l}"),
        )?;
        match args.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
            Format::Text => write!(out, "{}", bench::differential_table(&rows))?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.vm {
        let rows = bench::vm(args.runs.max(1), &|l| eprintln!("bench: {l}"))?;
        match args.format {
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
            Format::Text => write!(out, "{}", bench::vm_table(&rows))?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = bench::Options {
        source: args.source,
        files: args.files,
        max_file_size: args.max_file_mib << 20,
        runs: args.runs.max(1),
        workdir: args.workdir,
        tmpfs: args.tmpfs,
    };
    let r = bench::run(&opts)?;
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
        Format::Text => write!(out, "{}", bench::markdown(&r))?,
    }
    Ok(ExitCode::SUCCESS)
}
