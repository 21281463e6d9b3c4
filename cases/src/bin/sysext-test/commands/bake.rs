//! `sysext-test bake`: extensions into a copy of an OS disk, as an ordinary user.

use std::path::PathBuf;
use std::process::ExitCode;

use sysext_builder::Arch;
use sysext_builder::bake::{self, InstallTo};
use sysext_builder::guest::Profile;

use crate::args::{ARCHES, Format, closed, usage};

#[derive(clap::Args)]
#[command(
    after_help = "Finds the ROOT (and, with --install-to oem, OEM) partition by its GPT label, the \
way it is labelled on Flatcar and on the Flatcar guest, and writes into its ext4 with \
debugfs: the image at /opt/extensions/NAME/NAME-VERSION-ARCH.raw (where its sysupdate config looks \
for it; --install-to oem: /oem/extensions/NAME/), the symlink /etc/extensions/NAME.raw, and \
/etc/sysupdate.NAME.d/NAME.conf from --conf or NAME.conf beside the image. Every file is read back \
and compared before OUT appears (written to a temp name, then renamed); the base is never modified. \
A qcow2 base is converted; OUT is raw. Exit status: 0 baked, 2 bad input or a missing tool.

Examples:
  sysext-test bake docker-28.0.4-x86-64.raw -o flatcar-docker.img
  sysext-test bake --arch arm64 --base flatcar_production_image.bin k3s-v1.31.4+k3s1-arm64.raw -o k3s.img"
)]
pub struct Args {
    /// Extension images, NAME-VERSION-ARCH.raw (one per extension).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Architecture of the disk; default: from the images' file names.
    #[arg(long, value_parser = closed::<Arch>(ARCHES))]
    arch: Option<Arch>,
    /// The disk to start from (GPT, raw or qcow2); default: the cached flatcar
    /// guest's disk for the arch.
    #[arg(long, value_name = "DISK")]
    base: Option<PathBuf>,
    /// Where the images go: the ROOT partition, or OEM (ext4 only).
    #[arg(long, default_value = "root", value_parser = closed::<InstallTo>(&["root", "oem"]))]
    install_to: InstallTo,
    /// A sysupdate config NAME.conf to install for extension NAME (repeatable).
    #[arg(long = "conf", value_name = "FILE")]
    confs: Vec<PathBuf>,
    /// The baked disk to write (raw).
    #[arg(short, long)]
    output: PathBuf,
    /// What to print: for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let refused = |e: sysext_builder::BakeError| -> anyhow::Result<ExitCode> {
        if e.is_usage() || matches!(e, sysext_builder::BakeError::Tool(_)) {
            usage(e)
        } else {
            Err(anyhow::anyhow!("bake: {e}"))
        }
    };
    let Some(arch) = args.arch.or_else(|| {
        args.images.iter().find_map(|i| {
            i.file_name()
                .and_then(|n| sysext_builder::naming::arch_of(&n.to_string_lossy()))
        })
    }) else {
        return usage(format!(
            "{}: cannot tell the architecture from the file name; pass --arch x86-64 or --arch arm64",
            args.images[0].display()
        ));
    };
    let exts = match bake::extensions(&args.images, arch, &args.confs) {
        Ok(e) => e,
        Err(e) => return refused(e),
    };
    let base = match &args.base {
        Some(b) => b.clone(),
        None => {
            let recipe = sysext_builder::guest::Recipe::new(Profile::Flatcar, arch);
            sysext_builder::guest::build_or_reuse(&recipe, &|l| eprintln!("{l}"))
                .map_err(|e| anyhow::anyhow!("the default base is the flatcar {arch} guest, which could not be built ({e}); pass --base DISK"))?
                .disk
        }
    };
    let start = std::time::Instant::now();
    let written = match bake::bake(&base, &exts, args.install_to, &args.output, &|l| {
        eprintln!("{l}")
    }) {
        Ok(w) => w,
        Err(e) => return refused(e),
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "output": args.output,
                "base": base,
                "arch": arch.systemd_name(),
                "written": written,
                "seconds": start.elapsed().as_secs_f64(),
            })
        ),
        Format::Text => {
            for w in &written {
                println!("{:<5} {}  ({})", w.partition, w.path, w.what);
            }
            println!(
                "baked {} extension(s) into {} ({arch}, from {}) in {:.1}s",
                exts.len(),
                args.output.display(),
                base.display(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
