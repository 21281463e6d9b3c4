//! `sysext-test guest status`: what is cached, and whether the next run reuses it.

use std::io::Write;
use std::process::ExitCode;

use sysext_harness::snapshot;

use crate::args::Format;

#[derive(clap::Args)]
#[command(
    after_help = "A saved state is reused while the guest recipe, the QEMU version, the \
accelerator, the QEMU and kernel command lines and the guest's SSH key are unchanged; any change \
makes the next run cold-boot and save a new one."
)]
pub struct Args {
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let place = sysext_harness::Place::from_env();
    let mut rows = Vec::new();
    for entry in snapshot::list(&place.snapshots()) {
        let (arch, record) = match &entry.record {
            Ok(r) => (Some(r.arch), serde_json::to_value(r).ok()),
            Err(_) => (None, None),
        };
        // Validity is judged against the guest the current recipe builds, if it is cached.
        let validity = match arch.map(|a| {
            let recipe = sysext_builder::guest::Recipe::debian(a);
            (recipe.cache_dir().join(".complete").exists(), recipe)
        }) {
            Some((true, recipe)) => {
                let guest = sysext_builder::guest::build_or_reuse(&recipe, &|_| {})
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                snapshot::validity(&entry, &guest)
            }
            Some((false, _)) => {
                Err("the current recipe's guest is not built (its recipe changed)".into())
            }
            None => entry.record.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        };
        rows.push((entry, record, validity));
    }
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, record, validity)| {
                serde_json::json!({
                    "dir": e.dir, "bytes": e.bytes, "record": record,
                    "valid": validity.is_ok(),
                    "reason": validity.as_ref().err(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no saved guest states under {} (the next VM case saves one)",
            place.snapshots().display()
        )?;
    }
    for (e, _, validity) in &rows {
        writeln!(out, "{} ({} MB)", e.dir.display(), e.bytes / 1_000_000)?;
        if let Ok(r) = &e.record {
            writeln!(
                out,
                "  {} guest {}, {}, {}, key {}\n  cold boot {:.1}s (network beacon {}), saved at {}",
                r.arch,
                r.guest,
                r.qemu,
                r.accel.name(),
                r.key,
                r.cold_boot_seconds,
                r.beacon_seconds
                    .map(|b| format!("{b:.1}s"))
                    .unwrap_or_else(|| "?".into()),
                r.saved_at
            )?;
        }
        match validity {
            Ok(()) => writeln!(
                out,
                "  valid: recipe, QEMU, accelerator, command line and key all match; the next run restores it"
            )?,
            Err(why) => writeln!(
                out,
                "  stale: {why}; the next run boots and saves a new one"
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
