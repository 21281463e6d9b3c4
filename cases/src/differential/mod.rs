//! The differential oracle: lint's predictions against systemd itself, thousands of
//! generated inputs at a time, in one restored guest per arch and profile.
//!
//! Each family generates inputs from a seed, asks our code what systemd will do, asks the
//! guest's systemd, and reports every difference with both sides' words:
//! - `images` (`images.rs`): extension images over the rule book's VM-checkable knobs,
//!   lint's merge-or-refuse prediction (`lint::effects`) against `systemd-sysext merge`.
//! - `versions` (`versions.rs`): `builder::version::compare` against systemd's own
//!   `strverscmp_improved`, tens of thousands of pairs per call.
//! - `units` (`units/`): generated units and what they point at, lint's fate for each unit
//!   (`lint::effects::UNIT_FATES`) against what systemd does with it after a real merge.
//! - `transfers` (`transfers/`): generated release directories and transfer files served
//!   by the local mirror, lint's verdict (`lint::effects::SYSUPDATE_FAILURES`) and readers
//!   against `systemd-sysupdate list` and `check-new`.

pub mod images;
pub mod judge;
pub mod observe;
pub mod predict;
pub mod report;
pub mod stage;
pub mod transfers;
pub mod units;
pub mod variant;
pub mod versions;

use std::path::Path;

use serde::Serialize;
use sysext_builder::Arch;
use sysext_builder::guest::Profile;
use sysext_builder::osrelease::OsRelease;
use sysext_harness::{Place, Vm};

use crate::lint::{Linter, Options, TargetKind, TargetSpec};
pub use report::{Disagreement, FamilyReport, Run};
use variant::HostFacts;

/// The families, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Generated extension images: lint's prediction against `systemd-sysext merge`.
    Images,
    /// Generated version pairs: our UAPI.10 order against systemd's `strverscmp_improved`.
    Versions,
    /// Generated units: lint's fate for each against what systemd does after a real merge.
    Units,
    /// Generated release directories and transfer files: lint's verdict and readers
    /// against `systemd-sysupdate list` and `check-new`.
    Transfers,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Images,
        Family::Versions,
        Family::Units,
        Family::Transfers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Images => "images",
            Family::Versions => "versions",
            Family::Units => "units",
            Family::Transfers => "transfers",
        }
    }
}

/// The release of Flatcar a Flatcar guest models: lint's target for it.
pub fn flatcar_target(profile: Profile) -> TargetSpec {
    TargetSpec {
        kind: TargetKind::Flatcar,
        version: profile.flatcar_release().map(|f| f.version),
    }
}

/// What lint is told about a guest of `profile` (whose `/etc/os-release` says
/// `guest_os_release`): the Debian guest as a generic target with its own os-release and
/// systemd 257, the flatcar one as the Flatcar release it models, from lint's own
/// facts (not the guest's: that difference is one the oracle exists to find).
pub fn lint_options(profile: Profile, guest_os_release: &OsRelease, arch: Arch) -> Options {
    match profile {
        Profile::Debian => Options {
            target: TargetSpec {
                kind: TargetKind::Generic,
                version: None,
            },
            systemd: Some(257),
            host_os_release: Some(guest_os_release.clone()),
            host_accounts: None,
            host_sbin_merged: None,
            arch: Some(arch),
        },
        Profile::Flatcar | Profile::FlatcarInitrd => Options {
            target: flatcar_target(profile),
            systemd: None,
            host_os_release: None,
            host_accounts: None,
            host_sbin_merged: None,
            arch: Some(arch),
        },
    }
}

/// The host facts lint works with, for the generator to aim at.
pub fn host_facts(opts: &Options, linter: &Linter, arch: Arch) -> HostFacts {
    let os = opts
        .host_os_release
        .clone()
        .unwrap_or_else(|| linter.target().os_release.clone());
    HostFacts {
        id: os.get("ID").unwrap_or_default().to_string(),
        id_like: os
            .get("ID_LIKE")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        version_id: os.get("VERSION_ID").map(str::to_string),
        sysext_level: os.get("SYSEXT_LEVEL").map(str::to_string),
        arch,
    }
}

/// Restores the saved guest of `arch` and `profile` (saving one first if needed).
pub fn guest(
    arch: Arch,
    profile: Profile,
    place: &Place,
    progress: &dyn Fn(&str),
) -> Result<Vm, String> {
    crate::via::runtime::restore(arch, profile, place, None, progress)
        .map(|(vm, _)| vm)
        .map_err(|e| match e {
            crate::outcome::NotReached::Harness { stage, message } => format!("{stage}: {message}"),
            crate::outcome::NotReached::BrokeBoot { assertion, .. } => assertion.to_string(),
        })
}

/// Runs `family` on a guest already restored: the one entry point for the CLI, the
/// nextest trials and `bench`.
pub fn run_family(
    family: Family,
    vm: &Vm,
    r: &Run,
    work: &Path,
    progress: &dyn Fn(&str),
) -> Result<FamilyReport, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let guest_lint_options = || -> Result<Options, String> {
        let text = vm
            .succeed("cat /etc/os-release")
            .map_err(|e| format!("guest: {e}"))?;
        let (os, _) = OsRelease::parse(&text);
        Ok(lint_options(r.profile, &os, r.arch))
    };
    match family {
        Family::Images => {
            let opts = guest_lint_options()?;
            let linter = Linter::new(opts.clone());
            let host = host_facts(&opts, &linter, r.arch);
            images::run(vm, &linter, &host, r, work, progress)
        }
        Family::Versions => versions::run(vm, r, work, progress),
        Family::Units => units::run(vm, guest_lint_options()?, r, work, progress),
        Family::Transfers => transfers::run(vm, guest_lint_options()?, r, work, progress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lint's target for the Flatcar guest and the guest itself read one release table:
    /// the fields systemd matches on, the `/usr/sbin` layout and systemd are the same.
    #[test]
    fn lint_and_the_flatcar_guests_answer_as_the_same_release() {
        for profile in [Profile::Flatcar, Profile::FlatcarInitrd] {
            let facts = profile.flatcar_release().unwrap();
            for arch in Arch::ALL {
                let (guest_os, problems) = OsRelease::parse(&facts.os_release(arch, "x"));
                assert!(problems.is_empty(), "{problems:?}");
                let linter = Linter::new(lint_options(profile, &guest_os, arch));
                let target = linter.target();
                for key in ["ID", "ID_LIKE", "VERSION_ID", "SYSEXT_LEVEL"] {
                    assert_eq!(target.os_release.get(key), guest_os.get(key), "{key}");
                }
                assert_eq!(target.sbin_merged, facts.sbin_merged);
                assert!(target.sbin_known);
                assert!(target.describe().contains(facts.merge.name()));
            }
        }
        // The real-root guest runs the systemd of the release it answers as.
        let stable = Linter::new(lint_options(
            Profile::Flatcar,
            &OsRelease::default(),
            Arch::X86_64,
        ));
        assert_eq!(
            stable.target().systemd.describe(),
            sysext_builder::guest::SYSTEMD_MAJOR.to_string()
        );
    }
}
