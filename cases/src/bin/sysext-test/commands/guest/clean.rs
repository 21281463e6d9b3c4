//! `sysext-test guest clean`: forget the saved guest states, or (`--stale`) everything in
//! the cache this sysext-test will never use again.

use std::path::PathBuf;
use std::process::ExitCode;

use sysext_builder::guest::cached;
use sysext_harness::snapshot;

use crate::args::Format;

#[derive(clap::Args)]
#[command(
    after_help = "Without --stale: every saved state goes and the guests stay cached; \
the next VM case cold-boots and saves a new state.

With --stale: what `sysext-test guest status` marks unused or stale goes (guests an older \
recipe made, disks read from files that changed or are gone, their SSH keys and saved states, \
root tarballs of older recipes, what interrupted builds left) and everything in use stays. An \
entry that a running build or test holds is left alone and named."
)]
pub struct Args {
    /// Remove only what is unused or stale, guests included; keep what the next run uses.
    #[arg(long)]
    stale: bool,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let place = sysext_harness::Place::from_env();
    let mut removed: Vec<(PathBuf, u64)> = Vec::new();
    let mut busy: Vec<PathBuf> = Vec::new();
    let guests = if args.stale {
        cached::list()
    } else {
        Vec::new()
    };
    for entry in snapshot::list(&place.snapshots()) {
        if args.stale && snapshot::judge(&entry, &guests).is_ok() {
            continue;
        }
        match snapshot::remove(&entry) {
            Ok(true) => removed.push((entry.dir, entry.bytes)),
            Ok(false) => busy.push(entry.dir),
            Err(e) => anyhow::bail!("{e}"),
        }
    }
    for g in guests.iter().filter(|g| g.used.is_err()) {
        match cached::remove(g) {
            Ok(true) => removed.push((g.dir.clone(), g.bytes)),
            Ok(false) => busy.push(g.dir.clone()),
            Err(e) => anyhow::bail!("{e}"),
        }
    }
    let bytes: u64 = removed.iter().map(|(_, b)| b).sum();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "removed": removed.iter().map(|(d, _)| d).collect::<Vec<_>>(),
                "bytes": bytes,
                "busy": busy,
            })
        ),
        Format::Text => {
            for (dir, b) in &removed {
                println!("removed {} ({} MB)", dir.display(), b / 1_000_000);
            }
            for dir in &busy {
                println!(
                    "left {}: a running build or test holds it; run again when it is done",
                    dir.display()
                );
            }
            let what = if args.stale {
                "unused and stale entries"
            } else {
                "saved guest states"
            };
            println!(
                "{what} removed: {}, {} MB freed",
                removed.len(),
                bytes / 1_000_000
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
