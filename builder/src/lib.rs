//! Makes and reads what systemd system extensions are made of: images (squashfs, erofs),
//! extension-release files, `SHA256SUMS` manifests and sysupdate transfer files.
//!
//! Nothing here boots a VM; the harness crate does that. Everything input-driven returns a
//! typed error from [`errors`].

pub mod arch;
pub mod atomic;
pub mod bake;
pub mod btrfs;
pub mod build;
pub mod cache;
pub mod deb;
pub mod elf;
pub mod errors;
pub mod flatcar_release;
pub mod gpt;
pub mod guest;
pub mod host_tool;
pub mod ignition;
pub mod image;
pub mod layout;
pub mod naming;
pub mod osrelease;
pub mod partition_image;
pub mod pattern;
#[cfg(test)]
mod props;
pub mod sha256sums;
pub mod spec;
pub mod squashfs_tools;
pub mod store;
pub mod tiny_program;
pub mod transfer;
pub mod unitfile;
pub mod userns;
pub mod verity;
pub mod version;
pub mod write_erofs;
pub mod write_squashfs;

pub use arch::Arch;
pub use errors::{BakeError, BuildError, ImageError};
