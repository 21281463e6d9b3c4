//! `sysext-test guest build`: the cached guest images (and, on request, their saved booted
//! state and the Flatcar guest's baseline boot). Also nextest's setup script.

use std::process::ExitCode;

use sysext_builder::guest::{Profile, Recipe};
use sysext_harness::Place;

use crate::args::{ArchChoice, Format, PROFILES, closed, usage};
use crate::ui::Progress;

#[derive(clap::Args)]
#[command(
    after_help = "Guests are cached under $XDG_CACHE_HOME/sysext-test/guests (or \
SYSEXT_TEST_CACHE) by a hash of their recipe; a second build with the same recipe takes \
milliseconds. The first build of the Debian root runs mmdebstrap: about a minute for x86-64, several \
for arm64 (its packages configure under qemu-user); its steps show as they happen. Needs root.

Examples:
  sysext-test guest build --arch all --save-state
  sysext-test guest build --profile flatcar --arch arm64 --baseline
  sysext-test guest build --arch x86-64 --format json"
)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = ArchChoice::X86_64)]
    arch: ArchChoice,
    /// Also boot it once and save its state (what the first VM case would otherwise do).
    #[arg(long)]
    save_state: bool,
    /// debian (the run-time cases' guest) or flatcar (Flatcar's partitions,
    /// read-only /usr, /usr/sbin -> bin, ID=flatcar: the boot and Ignition cases' guest).
    #[arg(long, default_value = "debian", value_parser = closed::<Profile>(PROFILES))]
    profile: Profile,
    /// Also boot it once without extensions and keep what that boot logged and its /usr
    /// (what the boot cases compare against; flatcar only).
    #[arg(long)]
    baseline: bool,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.baseline && args.profile.merge_model().is_none() {
        return usage(
            "--baseline is for --profile flatcar or flatcar-initrd (the boot cases' guests)",
        );
    }
    let mut built = Vec::new();
    for arch in args.arch.arches() {
        let progress = Progress::start(&format!("the {} guest for {arch}", args.profile));
        let step = |l: &str| progress.step(l);
        let start = std::time::Instant::now();
        let recipe = Recipe::new(args.profile, arch);
        let guest = sysext_builder::guest::build_or_reuse(&recipe, &step)
            .map_err(|e| anyhow::anyhow!("building the {arch} guest: {e}"))?;
        // Probing here (cached per host boot) keeps the first VM case's clock clean; this
        // command is also nextest's setup script for the VM cases.
        progress.step("probing the accelerator");
        let accel = sysext_harness::accel::choose(arch, &guest.kernel);
        let mut record = serde_json::json!({
            "arch": arch,
            "profile": args.profile.to_string(),
            "dir": guest.dir,
            "disk": guest.disk,
            "kernel": guest.kernel_version,
            "accel": accel.name(),
            "seconds": start.elapsed().as_secs_f64(),
        });
        progress.say(&format!(
            "{arch}: {} guest at {} (kernel {}, {}) in {:.1}s",
            args.profile,
            guest.dir.display(),
            guest.kernel_version,
            accel.name(),
            start.elapsed().as_secs_f64()
        ));
        if args.save_state {
            let place = Place::from_env();
            let snap = sysext_harness::snapshot::shared(&guest, &place.snapshots(), &step)
                .map_err(|e| anyhow::anyhow!("saving the {arch} guest's state: {e}"))?;
            progress.say(&format!("{arch}: saved state {}", snap.dir.display()));
            record["saved_state"] = serde_json::json!(snap.dir);
        }
        if args.baseline {
            let b = sysext_cases::via::cold_boot::baseline(&guest, &step)
                .map_err(|e| anyhow::anyhow!("the {arch} baseline boot: {e}"))?;
            progress.say(&format!(
                "{arch}: baseline: login in {:.1}s, {} error line(s), {} paths under /usr",
                b.login_seconds,
                b.boot_errors.len(),
                b.usr.len()
            ));
            record["baseline"] = serde_json::json!({
                "login_seconds": b.login_seconds,
                "boot_errors": b.boot_errors.len(),
                "usr_paths": b.usr.len(),
            });
        }
        progress.finish();
        if args.format == Format::Text {
            println!(
                "{arch}\t{}\tkernel {}\t{}\t{:.1}s",
                guest.dir.display(),
                guest.kernel_version,
                accel.name(),
                start.elapsed().as_secs_f64()
            );
        }
        built.push(record);
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&built)?);
    }
    Ok(ExitCode::SUCCESS)
}
