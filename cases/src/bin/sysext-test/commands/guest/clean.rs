//! `sysext-test guest clean`: forget every saved guest state.

use std::process::ExitCode;

use crate::args::Format;

#[derive(clap::Args)]
#[command(
    after_help = "The guests stay cached; the next VM case cold-boots and saves a new state."
)]
pub struct Args {
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let place = sysext_harness::Place::from_env();
    let dir = place.snapshots();
    let freed = sysext_harness::snapshot::clean(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    match args.format {
        Format::Json => println!("{}", serde_json::json!({ "removed": dir, "bytes": freed })),
        Format::Text => println!(
            "removed saved guest states under {} ({} MB)",
            dir.display(),
            freed / 1_000_000
        ),
    }
    Ok(ExitCode::SUCCESS)
}
