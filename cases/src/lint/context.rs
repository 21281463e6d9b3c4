//! What every rule sees about the image under test.

use sysext_builder::Arch;
use sysext_builder::image::Image;
use sysext_builder::osrelease::OsRelease;

use super::target::Target;

/// How the release file was found (rule book B2/B3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// `extension-release.<image name>` exists.
    Exact,
    /// Fallback: the candidate's name equals the image name cut at `_`/`+` (systemd ≥ 257).
    NamePrefix,
    /// Fallback: the candidate carries `user.extension-release.strict` set to false.
    StrictXattr,
}

/// The release file systemd would use, parsed.
#[derive(Debug, Clone)]
pub struct Release {
    /// Path inside the image.
    pub path: String,
    /// The `X` of `extension-release.X`.
    pub name: String,
    pub data: OsRelease,
    pub lookup: Lookup,
}

pub struct Context<'a> {
    /// The image file or directory name as the user gave it (last component).
    pub file_name: String,
    /// The name systemd will know the image by once deployed (see `naming::deployed_name`).
    pub image_name: String,
    pub image: &'a Image,
    pub target: &'a Target,
    /// The os-release the image must match: `--host-os-release`, else the target's.
    pub host: &'a OsRelease,
    /// The arch the image is meant for: `--arch`, else the file name's, else unknown.
    pub arch: Option<Arch>,
    pub release: Option<Release>,
}
