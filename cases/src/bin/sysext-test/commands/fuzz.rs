//! `sysext-test fuzz`: break real images and a release directory byte by byte and lint
//! every mutant.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sysext_cases::fuzz::{self, Progress};

use crate::args::{Format, duration};

#[derive(clap::Args)]
#[command(
    after_help = "Builds the fuzz subjects (hello-service as gzip squashfs, as erofs and as a \
release directory; busybox as xz squashfs and uncompressed), then flips bits, truncates, splices and \
zeroes their bytes and lints every mutant with a deadline. A mutant fails the run when lint panics, \
hangs, errors, or reports nothing although the format's own tool (unsquashfs, fsck.erofs) cannot read \
it back. Prints the seed, a progress line every 10 s and each failure with the command that replays \
it; failing mutants are kept under WORKDIR/failures/. Exit status: 0 no failure, 1 failures, 2 could \
not run.

Examples:
  sysext-test fuzz --duration 10m
  sysext-test fuzz --seed 7 --replay 1234
  sysext-test fuzz --duration 4m --seed 8675309 --format json"
)]
pub struct Args {
    /// How long to run: 90s, 10m, 1h.
    #[arg(long, default_value = "10s", value_parser = duration)]
    duration: Duration,
    /// Seed of the mutants (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Lint only mutant N of --seed, to replay a reported failure.
    #[arg(long, value_name = "N", requires = "seed")]
    replay: Option<u64>,
    /// Stop after this many mutants.
    #[arg(long)]
    mutants: Option<u64>,
    /// Fuzz only this subject (repeatable), e.g. erofs:hello-service.
    #[arg(long = "subject", value_name = "SUBJECT")]
    subjects: Vec<String>,
    /// Deadline for linting one mutant (90s, 10m); over it counts as a hang.
    #[arg(long, default_value = "10s", value_parser = duration)]
    timeout: Duration,
    /// Scratch directory; failing mutants are kept under its failures/.
    #[arg(long, default_value = "target/sysext-test/fuzz")]
    workdir: PathBuf,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let work = &args.workdir;
    if let Some(what) = fuzz::died_in_flight(work) {
        eprintln!(
            "fuzz: the last run died while linting {}  (its files are in {}); replay it with --seed and --replay",
            what.trim_end(),
            work.join("mutant").display()
        );
    }
    std::fs::create_dir_all(work).with_context(|| format!("{}", work.display()))?;
    fuzz::limit_memory(8 << 30).context("capping the address space")?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let wanted: Vec<&str> = args.subjects.iter().map(String::as_str).collect();
    let subjects = fuzz::prepare(work, &wanted)?;
    fuzz::quiet_panics();
    let config = fuzz::Config {
        seed,
        duration: args.replay.is_none().then_some(args.duration),
        max_mutants: args.mutants,
        replay: args.replay,
        timeout: args.timeout,
        work: work.clone(),
    };
    let mut last = std::time::Instant::now();
    let summary = fuzz::run(&config, &subjects, &mut |p| match p {
        Progress::Started { seed, subjects } => eprintln!(
            "fuzz: seed {seed}, {} subjects ({}), {}",
            subjects.len(),
            subjects
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            match args.replay {
                Some(n) => format!("replaying mutant {n}"),
                None => format!("for {}s", args.duration.as_secs()),
            }
        ),
        Progress::Tick(stats) => {
            if last.elapsed() >= Duration::from_secs(10) {
                eprintln!("fuzz: {stats}");
                last = std::time::Instant::now();
            }
        }
        Progress::Failed(f) => eprintln!("fuzz: FAILURE {f}"),
    })?;
    match args.format {
        Format::Json => {
            let s = &summary.stats;
            let failures: Vec<serde_json::Value> = summary
                .failures
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "mutant": f.index, "seed": f.seed, "mutation": f.mutation,
                        "why": f.kind.to_string(), "kept": f.kept,
                        "replay": format!("sysext-test fuzz --seed {} --replay {}", f.seed, f.index),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "seed": seed,
                    "mutants": s.mutants, "unchanged": s.unchanged, "caught": s.caught,
                    "stricter": s.stricter, "same": s.same,
                    "different_flagged": s.different_flagged, "different_quiet": s.different_quiet,
                    "slowest_lint_seconds": s.slowest.as_secs_f64(),
                    "seconds": s.elapsed.as_secs_f64(),
                    "failures": failures,
                    "stricter_examples": summary.stricter,
                    "stopped_at_hang": summary.stopped_at_hang,
                }))?
            );
        }
        Format::Text => {
            println!("seed {seed}: {}", summary.stats);
            for f in &summary.failures {
                println!("{f}");
            }
            for note in &summary.stricter {
                println!(
                    "note: the format's tool reads this back unchanged, lint flags it: {note}"
                );
            }
            if summary.stopped_at_hang {
                println!("stopped at the hang: its lint thread is still running");
            }
        }
    }
    Ok(crate::args::status(summary.failures.is_empty()))
}
