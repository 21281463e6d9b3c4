//! `sysext-test check`: build the bundled fixtures and check each gets the lint verdict it
//! exists for (the README's main job).

use std::path::PathBuf;
use std::process::ExitCode;

use sysext_cases::fixtures;
use sysext_cases::verdict::{self, Status, TestResult};

use crate::args::TableFormat;

#[derive(clap::Args)]
#[command(
    after_help = "Each spec is built for its arches into OUTPUT/<fixture>/<arch>/ (a release \
directory you can look at or lint yourself) and linted; a fixture passes when lint reports exactly \
the rules its [expect] lists (the broken-* fixtures exist to be refused, for one reason each). Prints \
the verdict table. Exit status: 0 every fixture got its verdict, 1 one did not, 2 bad input.

Example:
  sysext-test check fixtures/extensions/*.toml"
)]
pub struct Args {
    /// Fixture specs (TOML with an [expect] table; none means: no finding at all).
    #[arg(required = true)]
    specs: Vec<PathBuf>,
    /// Where the builds go.
    #[arg(short, long, default_value = "target/fixtures-release")]
    output: PathBuf,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = TableFormat::Markdown)]
    format: TableFormat,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let progress = crate::ui::Progress::start(&format!("checking {} fixture(s)", args.specs.len()));
    let mut results = Vec::new();
    for (k, path) in args.specs.iter().enumerate() {
        let fx = fixtures::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        progress.step(&format!("[{}/{}] {}", k + 1, args.specs.len(), fx.name));
        let started = std::time::Instant::now();
        let outcome = fixtures::check_lint(&fx, &args.output.join(&fx.name));
        progress.say(&format!(
            "{}: {} in {:.2}s",
            fx.name,
            if outcome.is_ok() {
                "as expected"
            } else {
                "NOT as expected"
            },
            started.elapsed().as_secs_f64()
        ));
        results.push(TestResult {
            name: format!("lint::{}", fx.name),
            status: if outcome.is_ok() {
                Status::Pass
            } else {
                Status::Fail
            },
            first_line: outcome
                .err()
                .map(|e| e.lines().next().unwrap_or("").to_string()),
            artifacts: Some(args.output.join(&fx.name).display().to_string()),
            source: path.clone(),
        });
    }
    progress.finish();
    let v = verdict::merge(args.specs.clone(), results, None);
    match args.format {
        TableFormat::Markdown => print!("{}", verdict::markdown(&v)),
        TableFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    Ok(crate::args::status(v.green))
}
