//! Which guest the cases run on: the guests this tool builds (the default), or one Flatcar
//! disk the user names: a release (`flatcar:CHANNEL[:VERSION]`, fetched and verified as
//! `guest fetch` does) or a disk image (`PATH`). `run --guest` sets it for the process;
//! the nextest suite reads `SYSEXT_TEST_GUEST`. With a disk named, every way runs on it:
//! the run-time cases on its saved state (through sudo as `core`), the boot cases on baked
//! copies of it, the Ignition cases on its first boot.

use std::path::PathBuf;
use std::sync::OnceLock;

use sysext_builder::Arch;
use sysext_builder::guest::{self, Guest, Profile};
use sysext_harness::Place;
use sysext_harness::flatcar::{Fetcher, Release};

use crate::outcome::NotReached;

/// The environment variable the nextest suite reads.
pub const ENV: &str = "SYSEXT_TEST_GUEST";

/// A guest the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The guests this tool builds, by profile.
    Built,
    /// A Flatcar release, fetched for the trial's arch.
    Release(Release),
    /// A disk image in Flatcar's format, for its own arch.
    Disk(PathBuf),
}

impl std::str::FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Choice, String> {
        if s.starts_with("flatcar:") {
            return s
                .parse::<Release>()
                .map(Choice::Release)
                .map_err(|e| e.to_string());
        }
        if s.is_empty() {
            return Err(
                "an empty guest: give flatcar:CHANNEL[:VERSION] or the path of a disk image".into(),
            );
        }
        Ok(Choice::Disk(PathBuf::from(s)))
    }
}

static CHOSEN: OnceLock<Choice> = OnceLock::new();

/// Sets the guest for this process (`run --guest`); the first call wins.
pub fn choose(choice: Choice) {
    let _ = CHOSEN.set(choice);
}

/// The guest chosen for this process, else `SYSEXT_TEST_GUEST`'s, else the built ones. A
/// `SYSEXT_TEST_GUEST` that does not parse is an error for every trial, never the default.
pub fn chosen() -> Result<Choice, String> {
    if let Some(c) = CHOSEN.get() {
        return Ok(c.clone());
    }
    match std::env::var(ENV) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|e| format!("{ENV}={v}: {e}")),
        _ => Ok(Choice::Built),
    }
}

/// The guest a case of `profile` runs on for `arch`: the built one, or the chosen disk.
pub fn resolve(arch: Arch, profile: Profile, progress: &dyn Fn(&str)) -> Result<Guest, NotReached> {
    let choice = chosen().map_err(|e| NotReached::harness("guest", e))?;
    let disk = match choice {
        Choice::Built => {
            let recipe = guest::Recipe::new(profile, arch);
            return guest::build_or_reuse(&recipe, progress).map_err(|e| {
                NotReached::harness(
                    "guest image",
                    format!(
                        "{arch} {profile}: {e} (build it with `sysext-test guest build --profile {profile} --arch {arch}`)"
                    ),
                )
            });
        }
        Choice::Release(release) => {
            let place = Place::from_env();
            let image = Fetcher::from_env(&place.cache)
                .fetch(&release, arch, progress)
                .map_err(|e| NotReached::harness("guest fetch", e))?;
            image.disk
        }
        Choice::Disk(path) => path,
    };
    let g = guest::image::from_disk(&disk, progress)
        .map_err(|e| NotReached::harness("guest image", e))?;
    if g.arch != arch {
        return Err(NotReached::harness(
            "guest image",
            format!(
                "{} is a disk for {}, and this case is for {arch}: give a disk of each arch, or run only its arch's cases",
                disk.display(),
                g.arch
            ),
        ));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_and_a_path_parse_and_a_bad_channel_does_not() {
        assert_eq!(
            "flatcar:stable".parse::<Choice>(),
            Ok(Choice::Release(Release {
                channel: "stable".into(),
                version: None
            }))
        );
        assert_eq!(
            "flatcar:lts:4081.3.4"
                .parse::<Choice>()
                .map(|c| matches!(c, Choice::Release(_))),
            Ok(true)
        );
        assert_eq!(
            "./flatcar.img".parse::<Choice>(),
            Ok(Choice::Disk(PathBuf::from("./flatcar.img")))
        );
        assert!("flatcar:nightly".parse::<Choice>().is_err());
        assert!("".parse::<Choice>().is_err());
    }
}
