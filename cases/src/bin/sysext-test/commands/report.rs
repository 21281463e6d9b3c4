//! `sysext-test report`: one verdict from test results (nextest's JUnit from any number of
//! partitions, or `run --format json`), checked against the trials that should exist.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sysext_cases::verdict;

use crate::args::TableFormat;

#[derive(clap::Args)]
#[command(
    after_help = "The verdict is a table: one row per extension, version and arch, one column per \
case family (store, lint, vm, boot, ignition, update), each cell the count of its tests or the first \
failure (with where its artifacts went) listed below the table. With --expected (what `cargo nextest \
list --message-format json` prints for the same filter, no partition), every trial that should exist \
must have a result: one with none (a partition that died, a lost runner) is a red `not run` cell, and \
an ignored trial is `n/a`, never green; a row whose VM cells were all skipped is `not tested`. Without \
--expected the first line says absence was not checked. Green only when every cell is: a failed test, \
a missing one, or a test reported by two inputs (overlapping partitions) makes it red. Exit status: 0 \
green, 1 red, 2 unreadable input.

Examples:
  cargo nextest list --profile ci --message-format json > expected.json
  cargo nextest run --profile ci --partition hash:1/3   # and 2/3, 3/3 elsewhere
  sysext-test report --expected expected.json part-*/junit.xml
  sysext-test report --summary \"$GITHUB_STEP_SUMMARY\" target/nextest/ci/junit.xml
  sysext-test run --format json my.raw > run.json && sysext-test report run.json"
)]
pub struct Args {
    /// JUnit XML files (target/nextest/<profile>/junit.xml) or `sysext-test run --format json` output.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Every trial that should have run: `cargo nextest list --message-format json` output.
    #[arg(long, value_name = "LIST")]
    expected: Option<PathBuf>,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = TableFormat::Markdown)]
    format: TableFormat,
    /// Also append the Markdown verdict to this file (a GitHub job summary).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let expected = match &args.expected {
        Some(path) => match verdict::Expected::load(path) {
            Ok(e) => Some(e),
            Err(e) => return crate::args::usage(e),
        },
        None => None,
    };
    let v = match verdict::from_files(&args.inputs, expected.as_ref()) {
        Ok(v) => v,
        Err(e) => return crate::args::usage(e),
    };
    let markdown = verdict::markdown(&v);
    match args.format {
        TableFormat::Markdown => print!("{markdown}"),
        TableFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    if let Some(path) = &args.summary {
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()))
            .with_context(|| format!("{}: cannot append the summary", path.display()))?;
    }
    Ok(crate::args::status(v.green))
}
