//! `sysext-test ignition`: the Ignition config that provisions an extension at first boot
//! (the bakery's Butane example), for one image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sysext_builder::ignition::{self as config, Request, UpdateDropIn};

use crate::args::{closed, usage};

#[derive(clap::Args)]
#[command(
    after_help = "The config (Ignition spec 3.3.0, JSON) fetches IMAGE from MIRROR into \
/opt/extensions/NAME/ with its SHA-256 checked by Ignition, links /etc/extensions/NAME.raw to it, \
fetches NAME.conf and noop.conf for sysupdate, enables systemd-sysupdate.timer and adds the \
systemd-sysupdate.service drop-in that updates NAME and then flags a reboot (reboot) or runs \
systemd-sysext refresh (refresh). Pass it to a Flatcar VM with \
-fw_cfg name=opt/org.flatcar-linux/config,file=FILE.

Examples:
  sysext-test ignition docker-28.0.4-x86-64.raw > docker.ign
  sysext-test ignition --mirror http://10.0.2.2:8080/extensions --update-drop-in refresh my-1.0-x86-64.raw"
)]
pub struct Args {
    /// The extension image, NAME-VERSION-ARCH.raw (read for its name and SHA-256).
    image: PathBuf,
    /// Where the image, NAME.conf and noop.conf are served.
    #[arg(long, default_value = "https://extensions.flatcar.org/extensions")]
    mirror: String,
    /// What the sysupdate drop-in does after an update.
    #[arg(long, default_value = "reboot", value_parser = closed::<UpdateDropIn>(&["reboot", "refresh"]))]
    update_drop_in: UpdateDropIn,
    /// Write the config here (temp file, then rename) instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let image = &args.image;
    let Some(arch) = image
        .file_name()
        .and_then(|n| sysext_builder::naming::arch_of(&n.to_string_lossy()))
    else {
        return usage(format!(
            "{}: not named NAME-VERSION-ARCH.raw; rename it the bakery way, e.g. docker-28.0.4-x86-64.raw",
            image.display()
        ));
    };
    let ext = match sysext_builder::bake::extensions(std::slice::from_ref(image), arch, &[]) {
        Ok(mut e) => e.remove(0),
        Err(e) => return usage(e),
    };
    let mirror = &args.mirror;
    if !(mirror.starts_with("http://") || mirror.starts_with("https://")) {
        return usage(format!(
            "--mirror {mirror}: give an http(s) URL, e.g. http://10.0.2.2:8080/extensions"
        ));
    }
    let sha = sysext_builder::sha256sums::digest_file(image)
        .with_context(|| format!("reading {}", image.display()))?;
    let masks = sysext_builder::guest::builtins::replaced_by_image(image)
        .with_context(|| format!("reading {}", image.display()))?;
    let config = config::for_extension(&Request {
        name: &ext.name,
        file_name: &ext.file_name,
        sha256: &sha,
        base_url: mirror.trim_end_matches('/'),
        drop_in: args.update_drop_in,
        masks: &masks,
    });
    let json = serde_json::to_string_pretty(&config)? + "\n";
    match &args.output {
        Some(path) => sysext_builder::atomic::write_bytes(path, json.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{json}"),
    }
    Ok(ExitCode::SUCCESS)
}
