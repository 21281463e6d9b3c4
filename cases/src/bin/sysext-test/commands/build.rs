//! `sysext-test build`: specs into `NAME-VERSION-ARCH.raw`, `SHA256SUMS` and `NAME.conf`,
//! in a release directory or a bakery release store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;
use sysext_builder::Arch;
use sysext_builder::build::{self, Format as ImageFormat};
use sysext_builder::spec::{Compression, Spec};

use crate::args::{ArchChoice, Format};

#[derive(clap::Args)]
#[command(
    after_help = "The output directory is a bakery-style release directory: building the same spec \
for x86-64 and arm64 into one directory gives one SHA256SUMS with both images. With --store, each \
release goes into its own folder of a release store the way the bakery's release jobs publish it.

Examples:
  sysext-test build fixtures/extensions/busybox.toml --arch all -o out/
  sysext-test build my-ext.toml --arch all --version 1.1 --store store/
  sysext-test build my-ext.toml --image-format erofs --format json -o out/"
)]
pub struct Args {
    /// Extension specs, e.g. fixtures/extensions/busybox.toml (several build into one directory).
    #[arg(required = true)]
    specs: Vec<PathBuf>,
    /// Output directory (created if missing).
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Architecture to build for (all: both, except for specs that pin one). Defaults to
    /// the spec's arch, else x86-64.
    #[arg(long, value_enum)]
    arch: Option<ArchChoice>,
    /// The image's file system.
    #[arg(long, value_enum, default_value_t = ImageFormatArg::Squashfs)]
    image_format: ImageFormatArg,
    /// squashfs compression; defaults to the spec's, else gzip (mksquashfs's default).
    #[arg(long, value_enum)]
    compression: Option<CompressionArg>,
    /// URL the transfer file's Source Path points under (default: the bakery hub).
    #[arg(long)]
    hub: Option<String>,
    /// Build this version instead of the spec's (`@VERSION@` in its texts follows).
    #[arg(long)]
    version: Option<String>,
    /// Lay the release out in a bakery release store instead of -o: `DIR/NAME-VERSION/`
    /// (images, SHA256SUMS, NAME.conf), its lines added to `DIR/NAME/SHA256SUMS` and the
    /// global `DIR/SHA256SUMS/SHA256SUMS`, as the bakery's release jobs publish them.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    store: Option<PathBuf>,
    /// What to print: the built images and their digests, for people or for machines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum ImageFormatArg {
    Squashfs,
    Erofs,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Xz,
    Zstd,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let base = build::Options {
        arch: None,
        format: match args.image_format {
            ImageFormatArg::Squashfs => ImageFormat::Squashfs,
            ImageFormatArg::Erofs => ImageFormat::Erofs,
        },
        compression: args.compression.map(|c| match c {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Zstd => Compression::Zstd,
        }),
        hub: args.hub.clone(),
    };
    let total = std::time::Instant::now();
    let mut built = Vec::new();
    for spec_path in &args.specs {
        let mut spec = Spec::load(spec_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(v) = &args.version {
            spec.version = v.clone();
        }
        let arches: Vec<Option<Arch>> = match (args.arch, spec.arch) {
            (Some(ArchChoice::All), Some(pinned)) => vec![Some(pinned)],
            (Some(choice), _) => choice.arches().into_iter().map(Some).collect(),
            (None, _) => vec![None],
        };
        let spec_dir = spec_path.parent().unwrap_or(Path::new("."));
        let failed = |e: anyhow::Error, usage: bool| {
            if usage {
                anyhow::anyhow!("{}: {e}", spec_path.display())
            } else {
                e.context(format!("building {}", spec_path.display()))
            }
        };
        let images: Vec<(build::Output, f64)> = match &args.store {
            // Every arch beside the release, committed all or nothing.
            Some(root) => {
                let arches: Vec<Arch> = arches.iter().map(|a| spec.arch(*a)).collect();
                let release =
                    sysext_builder::store::build_release(root, &spec, spec_dir, &arches, &base)
                        .map_err(|e| {
                            let usage = e.is_usage();
                            failed(e.into(), usage)
                        })?;
                if let Some(p) = &release.left_behind {
                    eprintln!(
                        "note: the replaced release is still at {}; delete it",
                        p.display()
                    );
                }
                eprintln!(
                    "{} {} in the store {}",
                    if release.replaced {
                        "replaced"
                    } else {
                        "added"
                    },
                    release.dir.display(),
                    root.display()
                );
                release
                    .images
                    .into_iter()
                    .map(|b| (b.output, b.took.as_secs_f64()))
                    .collect()
            }
            None => {
                let mut out = Vec::new();
                for a in arches {
                    let opts = build::Options {
                        arch: a,
                        ..base.clone()
                    };
                    let start = std::time::Instant::now();
                    let image =
                        build::build_spec(&spec, spec_dir, &args.output, &opts).map_err(|e| {
                            let usage = e.is_usage();
                            failed(e.into(), usage)
                        })?;
                    out.push((image, start.elapsed().as_secs_f64()));
                }
                out
            }
        };
        for (out, seconds) in images {
            if args.format == Format::Text {
                println!("{}  {}", out.sha256, out.image.display());
            }
            eprintln!(
                "built {} ({}) in {seconds:.2}s",
                out.image.display(),
                out.arch
            );
            built.push(serde_json::json!({
                "image": out.image,
                "arch": out.arch,
                "sha256": out.sha256,
                "seconds": seconds,
            }));
        }
    }
    let into = args.store.as_ref().unwrap_or(&args.output);
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "images": built, "output": into }))?
        );
    }
    eprintln!(
        "{} image(s) in {:.1}s; SHA256SUMS and transfer files are in {}",
        built.len(),
        total.elapsed().as_secs_f64(),
        into.display()
    );
    Ok(ExitCode::SUCCESS)
}
