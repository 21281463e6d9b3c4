//! `sysext-test guest status`: what is cached, and whether the next run reuses it.

use std::io::Write;
use std::process::ExitCode;

use sysext_builder::guest::cached;
use sysext_harness::snapshot;

use crate::args::Format;

#[derive(clap::Args)]
#[command(
    after_help = "Guests: a guest is used while this sysext-test's recipe for its \
profile and arch still names it (any recipe change names a new one), or, for a disk read with \
`--guest PATH`, while that disk is unchanged.

Saved states: a state is reused while its guest, the QEMU version, the accelerator, the QEMU and \
kernel command lines and the guest's SSH key are unchanged; any change makes the next run \
cold-boot and save a new one.

`sysext-test guest clean --stale` removes everything marked unused or stale."
)]
pub struct Args {
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let place = sysext_harness::Place::from_env();
    let guests = cached::list();
    let states: Vec<(snapshot::Entry, Result<(), String>)> = snapshot::list(&place.snapshots())
        .into_iter()
        .map(|e| {
            let judged = snapshot::judge(&e, &guests);
            (e, judged)
        })
        .collect();
    let unused: u64 = guests
        .iter()
        .filter(|g| g.used.is_err())
        .map(|g| g.bytes)
        .chain(
            states
                .iter()
                .filter(|(_, v)| v.is_err())
                .map(|(e, _)| e.bytes),
        )
        .sum();
    let mut out = std::io::stdout().lock();
    if args.format == Format::Json {
        let guests: Vec<serde_json::Value> = guests
            .iter()
            .map(|g| {
                serde_json::json!({
                    "dir": g.dir, "what": g.what.label(), "bytes": g.bytes,
                    "used": g.used.is_ok(), "reason": g.used.as_ref().err(),
                })
            })
            .collect();
        let states: Vec<serde_json::Value> = states
            .iter()
            .map(|(e, validity)| {
                serde_json::json!({
                    "dir": e.dir, "bytes": e.bytes,
                    "record": e.record.as_ref().ok().and_then(|r| serde_json::to_value(r).ok()),
                    "valid": validity.is_ok(),
                    "reason": validity.as_ref().err(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "guests": guests, "states": states, "stale_bytes": unused,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "guests under {}:", cached::root().display())?;
    if guests.is_empty() {
        writeln!(out, "  none (the first VM case builds one)")?;
    }
    for g in &guests {
        let name = g.dir.file_name().unwrap_or_default().to_string_lossy();
        let verdict = match &g.used {
            Ok(()) => "used".to_string(),
            Err(why) => format!("unused: {why}"),
        };
        writeln!(
            out,
            "  {name} ({} MB, {}): {verdict}",
            g.bytes / 1_000_000,
            g.what.label()
        )?;
    }
    writeln!(out, "saved states under {}:", place.snapshots().display())?;
    if states.is_empty() {
        writeln!(out, "  none (the next VM case saves one)")?;
    }
    for (e, validity) in &states {
        let name = e.dir.file_name().unwrap_or_default().to_string_lossy();
        writeln!(out, "  {name} ({} MB)", e.bytes / 1_000_000)?;
        if let Ok(r) = &e.record {
            writeln!(
                out,
                "    {} guest {}, {}, {}, key {}\n    cold boot {:.1}s (network beacon {}), saved at {}",
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
                "    valid: guest, QEMU, accelerator, command line and key all match; the next run restores it"
            )?,
            Err(why) => writeln!(out, "    stale: {why}; never restored again")?,
        }
    }
    if unused > 0 {
        writeln!(
            out,
            "{} MB unused or stale: `sysext-test guest clean --stale` removes it",
            unused / 1_000_000
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
