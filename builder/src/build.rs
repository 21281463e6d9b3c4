//! `sysext-test build`: spec in, bakery release files out.

use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::errors::BuildError;
use crate::layout::Layout;
use crate::spec::{Compression, Spec};
use crate::{sha256sums, transfer, write_erofs, write_squashfs};

/// On-disk format of the image; squashfs is what the bakery releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Squashfs,
    Erofs,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "squashfs" => Ok(Format::Squashfs),
            "erofs" => Ok(Format::Erofs),
            o => Err(format!("unknown format '{o}': use squashfs or erofs")),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub arch: Option<Arch>,
    pub format: Format,
    pub compression: Option<Compression>,
    /// URL the transfer file's `Source Path` is under; the bakery hub by default.
    pub hub: Option<String>,
}

/// What a build wrote.
#[derive(Debug, Clone)]
pub struct Output {
    pub image: PathBuf,
    pub sha256: String,
    pub sha256sums: PathBuf,
    pub transfer: PathBuf,
    pub arch: Arch,
}

/// Builds the image for `spec_path` into `out_dir` with its `SHA256SUMS` line and `NAME.conf`.
pub fn build(spec_path: &Path, out_dir: &Path, opts: &Options) -> Result<Output, BuildError> {
    let spec = Spec::load(spec_path)?;
    let spec_dir = spec_path.parent().unwrap_or(Path::new("."));
    build_spec(&spec, spec_dir, out_dir, opts)
}

pub fn build_spec(
    spec: &Spec,
    spec_dir: &Path,
    out_dir: &Path,
    opts: &Options,
) -> Result<Output, BuildError> {
    let arch = spec.arch(opts.arch);
    let layout = Layout::from_spec(spec, spec_dir, arch)?;
    std::fs::create_dir_all(out_dir).map_err(|e| BuildError::io(out_dir, e))?;
    let image = out_dir.join(spec.file_name(arch));
    match opts.format {
        Format::Squashfs => write_squashfs::write(
            &layout,
            opts.compression.unwrap_or(spec.compression),
            spec.epoch,
            &image,
        )?,
        Format::Erofs => write_erofs::write(&layout, spec.epoch, &image)?,
    }
    let sha256 = sha256sums::digest_file(&image).map_err(|e| BuildError::io(&image, e))?;
    let sums = out_dir.join("SHA256SUMS");
    sha256sums::upsert(&sums, &spec.file_name(arch), &sha256)
        .map_err(|e| BuildError::io(&sums, e))?;
    let transfer = out_dir.join(format!("{}.conf", spec.name));
    let hub = opts.hub.as_deref().unwrap_or(transfer::BAKERY_HUB);
    crate::atomic::write_bytes(
        &transfer,
        transfer::render_bakery(&spec.name, hub).as_bytes(),
    )
    .map_err(|e| BuildError::io(&transfer, e))?;
    Ok(Output {
        image,
        sha256,
        sha256sums: sums,
        transfer,
        arch,
    })
}
