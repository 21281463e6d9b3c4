//! `sysext-test guest exec`: what a case sees, to poke at by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use sysext_builder::Arch;
use sysext_builder::guest::Profile;
use sysext_cases::outcome::NotReached;
use sysext_cases::via::guest::Choice;

use crate::args::{ARCHES, Format, PROFILES, closed, usage};

#[derive(clap::Args)]
#[command(
    after_help = "The same saved state, the same restore, a throwaway overlay (nothing you do is \
kept). Each command's output, exit status and time is printed (JSON: a list of them). Exit status: \
0 when every command exited 0, 1 otherwise, 2 when the guest could not be restored.

Examples:
  sysext-test guest exec -- 'systemd-sysext status' 'systemd-analyze time'
  sysext-test guest exec --arch arm64 --upload my.raw:/etc/extensions/my.raw -- 'systemd-sysext merge'
  sysext-test guest exec --guest flatcar:stable -- 'cat /etc/os-release' 'systemd-sysext status'
  sysext-test guest exec --guest ./flatcar_production_qemu_uefi_image.img -- 'ls /etc/extensions'"
)]
pub struct Args {
    /// The guest's arch [default: a --guest disk's own, else x86-64].
    #[arg(long, value_parser = closed::<Arch>(ARCHES))]
    arch: Option<Arch>,
    /// Which built guest (see `guest build --help`).
    #[arg(long, default_value = "debian", value_parser = closed::<Profile>(PROFILES), conflicts_with = "guest")]
    profile: Profile,
    /// A real Flatcar instead of a built guest: flatcar:CHANNEL[:VERSION] (fetched and
    /// verified as `guest fetch` does) or a disk image in Flatcar's format. Its saved state
    /// is made on first use (one cold boot through its firmware); commands run as root
    /// through sudo as core.
    #[arg(long, value_name = "flatcar:CHANNEL[:VERSION]|PATH")]
    guest: Option<String>,
    /// Copy a host file into the guest first (LOCAL:REMOTE; repeatable).
    #[arg(long, value_name = "LOCAL:REMOTE")]
    upload: Vec<String>,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Commands, run one after another in the guest's shell.
    #[arg(last = true, required = true)]
    commands: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut pairs = Vec::new();
    for u in &args.upload {
        let Some((local, remote)) = u
            .split_once(':')
            .filter(|(l, r)| !l.is_empty() && r.starts_with('/'))
        else {
            return usage(format!(
                "--upload {u}: expected LOCAL:REMOTE with an absolute guest path, e.g. my.raw:/etc/extensions/my.raw"
            ));
        };
        let local = PathBuf::from(local);
        if !local.is_file() {
            return usage(format!("--upload {u}: {} is not a file", local.display()));
        }
        pairs.push((local, remote.to_string()));
    }
    let chosen = match args.guest.as_deref().map(crate::args::choose_guest) {
        Some(Err(e)) => return usage(e),
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let place = sysext_harness::Place::from_env();
    let progress = crate::ui::Progress::start("restoring the guest");
    let arch = match (args.arch, &chosen) {
        (Some(a), _) => a,
        // A disk has one arch: its own, read off its ESP (and kept for the restore).
        (None, Some(Choice::Disk(path))) => {
            match sysext_builder::guest::image::from_disk(path, &|l| progress.step(l)) {
                Ok(g) => g.arch,
                Err(e) => {
                    progress.finish();
                    return usage(e);
                }
            }
        }
        (None, _) => Arch::X86_64,
    };
    let restored = sysext_cases::via::runtime::restore(arch, args.profile, &place, None, &|l| {
        progress.step(l)
    });
    progress.finish();
    let (vm, notes) = match restored {
        Ok(v) => v,
        Err(NotReached::Harness { stage, message }) => {
            return usage(format!("{stage}: {message}"));
        }
        Err(NotReached::BrokeBoot { assertion, .. }) => return usage(assertion),
    };
    for n in notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "restored the {arch} guest in {:.1}s",
        vm.startup.as_secs_f64()
    );
    for (local, remote) in &pairs {
        vm.upload(local, remote)
            .map_err(|e| anyhow::anyhow!("uploading {}: {e}", local.display()))?;
    }
    let mut all_ok = true;
    let mut results = Vec::new();
    for cmd in &args.commands {
        let start = std::time::Instant::now();
        let out = vm
            .execute(cmd)
            .map_err(|e| anyhow::anyhow!("running {cmd:?}: {e}"))?;
        let seconds = start.elapsed().as_secs_f64();
        all_ok &= out.status == 0;
        match args.format {
            Format::Text => {
                eprintln!("$ {cmd}");
                print!("{}", out.stdout);
                eprint!("{}", out.stderr);
                eprintln!("(exit {}, {seconds:.2}s)", out.status);
            }
            Format::Json => results.push(serde_json::json!({
                "command": cmd, "status": out.status, "stdout": out.stdout,
                "stderr": out.stderr, "seconds": seconds,
            })),
        }
    }
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(crate::args::status(all_ok))
}
