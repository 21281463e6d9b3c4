//! How an image reaches a guest: one module per way a host takes an extension. Each owns its
//! setup (restore and upload; bake and cold-boot; Ignition and cold-boot) and hands the
//! runner a [`Reached`](crate::runner::Reached) guest; the cases in `checks/` then say what
//! they check there. A fourth way (a real Flatcar image, a channel's guest) is a module
//! here, a variant of [`Via`] and an arm in `runner::reach`.
//!
//! This file holds only the enum: the ways never import it back, so it stays a leaf the
//! cases, the CLI and the verdict can all name.

pub mod baked;
pub mod cold_boot;
pub mod guest;
pub mod ignition;
pub mod runtime;

use serde::{Deserialize, Serialize};

/// How a case's image reaches the guest. `run --via`, the nextest trials' families and
/// `report`'s columns all use this one enum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Installed into a running guest restored from its saved state and merged with
    /// `systemd-sysext merge` (the merge, binaries, services and unmerge cases).
    Runtime,
    /// Baked into the Flatcar guest's disk and merged by systemd-sysext.service
    /// during a cold boot (the boot case).
    Baked,
    /// Fetched from a local mirror by Ignition at the Flatcar guest's first boot
    /// (the ignition case).
    Ignition,
}

impl Via {
    pub const ALL: [Via; 3] = [Via::Runtime, Via::Baked, Via::Ignition];

    pub fn name(self) -> &'static str {
        match self {
            Via::Runtime => "runtime",
            Via::Baked => "baked",
            Via::Ignition => "ignition",
        }
    }

    /// The first word of its trials' names (`vm::`, `boot::`, `ignition::`), which is
    /// also its column in the verdict.
    pub fn family(self) -> &'static str {
        match self {
            Via::Runtime => "vm",
            Via::Baked => "boot",
            Via::Ignition => "ignition",
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
