//! `sysext-test guest fetch`: a real Flatcar release, downloaded, verified and cached.

use std::process::ExitCode;

use sysext_builder::Arch;
use sysext_harness::flatcar;

use crate::args::{ARCHES, Format, closed};

#[derive(clap::Args)]
#[command(after_help = after_help())]
pub struct Args {
    /// flatcar:<channel>[:<version>] (channel: stable, beta, alpha, lts).
    release: String,
    #[arg(long, value_parser = closed::<Arch>(ARCHES), default_value = "x86-64")]
    arch: Arch,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn after_help() -> String {
    format!(
        "Fetches flatcar_production_qemu_uefi_image.img.bz2 and version.txt with their signatures from \
https://<channel>.release.flatcar-linux.net/<board>/<version>/, checks both against the keyring \
(SYSEXT_TEST_FLATCAR_KEYRING, default <cache>/flatcar/flatcar-signing-key.gpg: `gpg --dearmor` of \
https://www.flatcar.org/security/image-signing-key/Flatcar_Image_Signing_Key.asc), decompresses and \
caches it under <cache>/flatcar/<channel>-<version>-<arch>/. {}\n\n\
A cut download resumes where it stopped; a file that fails its signature is deleted. Offline, a \
release not in the cache fails at once, naming the URL and the folder where the four files can be put \
by hand. HTTPS goes through the system's trust store; SSL_CERT_FILE (or SSL_CERT_DIR) adds a CA of \
your own, for a mirror. SYSEXT_TEST_FLATCAR_URL replaces the server (a URL with {{channel}} in it). \
Exit status: 0 cached, 2 otherwise.\n\n\
Examples:\n  sysext-test guest fetch flatcar:stable\n  sysext-test guest fetch --arch arm64 flatcar:lts:4081.3.4",
        flatcar::CHANNEL_FRESHNESS
    )
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let release: flatcar::Release = args.release.parse()?;
    let place = sysext_harness::Place::from_env();
    let fetcher = flatcar::Fetcher::from_env(&place.cache);
    let progress = crate::ui::Progress::start(&format!("fetching {}", args.release));
    let image = fetcher.fetch(&release, args.arch, &|l| progress.step(l));
    progress.finish();
    let image = image?;
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "channel": image.channel,
                "version": image.version,
                "arch": args.arch.systemd_name(),
                "disk": image.disk,
                "from_cache": image.from_cache,
            })
        ),
        Format::Text => println!(
            "flatcar {} {} ({}): {}",
            image.channel,
            image.version,
            args.arch,
            image.disk.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
