//! The bakery's file names, `NAME-VERSION-ARCH.raw`: one parser for the builder, lint, the
//! VM runner and the CLI, on systemd's arch names ([`Arch::ALL`]).

use crate::arch::Arch;

/// `NAME-VERSION-ARCH.raw`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triple {
    pub name: String,
    pub version: String,
    pub arch: Arch,
}

/// Parses the bakery convention. The name is the longest release-file name that prefixes
/// the stem; without one, the split the bakery's redirector makes (everything before the
/// last `-` ahead of the arch).
pub fn triple(file_name: &str, release_names: &[String]) -> Option<Triple> {
    let stem = file_name.strip_suffix(".raw")?;
    let (rest, arch) = Arch::ALL.iter().find_map(|a| {
        stem.strip_suffix(a.systemd_name())
            .and_then(|r| r.strip_suffix('-'))
            .map(|r| (r, *a))
    })?;
    let by_release = release_names
        .iter()
        .filter(|n| {
            rest.len() > n.len() + 1
                && rest.starts_with(n.as_str())
                && rest.as_bytes()[n.len()] == b'-'
        })
        .max_by_key(|n| n.len());
    let (name, version) = match by_release {
        Some(n) => (n.as_str(), &rest[n.len() + 1..]),
        None => rest.rsplit_once('-')?,
    };
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some(Triple {
        name: name.into(),
        version: version.into(),
        arch,
    })
}

/// The image name systemd derives from a search-directory entry (rule book A1): `.raw` stripped, then
/// an optional `.sysext`/`.confext` class suffix; for directories the same suffixes.
pub fn image_name(file_name: &str, is_dir: bool) -> String {
    let mut s = file_name;
    if !is_dir {
        s = s.strip_suffix(".raw").unwrap_or(s);
    }
    for suffix in [".sysext", ".confext", ".mstack"] {
        if let Some(stripped) = s.strip_suffix(suffix) {
            s = stripped;
            break;
        }
    }
    s.to_string()
}

/// The arch a bakery-style file name states, if it is one.
pub fn arch_of(file_name: &str) -> Option<Arch> {
    triple(file_name, &[]).map(|t| t.arch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_comes_from_the_name() {
        assert_eq!(arch_of("docker-28.0.4-arm64.raw"), Some(Arch::Arm64));
        assert_eq!(arch_of("docker-28.0.4-x86-64.raw"), Some(Arch::X86_64));
        assert_eq!(arch_of("docker.raw"), None);
        assert_eq!(arch_of("docker-28.0.4-x86_64.raw"), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::props::check;
    use proptest::prelude::*;

    fn arch() -> impl Strategy<Value = Arch> {
        prop::sample::select(Arch::ALL.to_vec())
    }

    /// `NAME-VERSION-ARCH.raw` splits back into its parts, given `release_names`.
    fn round_trips(
        name: String,
        version: String,
        arch: Arch,
        release_names: &[String],
    ) -> Result<(), TestCaseError> {
        let file = format!("{name}-{version}-{}.raw", arch.systemd_name());
        let want = Triple {
            name,
            version,
            arch,
        };
        prop_assert_eq!(triple(&file, release_names), Some(want));
        Ok(())
    }

    /// Without release names the version is what follows the last '-' before the arch, so
    /// a version without '-' round-trips whatever the name holds.
    #[test]
    fn triple_round_trips_a_dashless_version() {
        check(
            ("\\PC{1,16}", "[^-\\p{C}]{1,12}", arch()),
            |(name, version, arch)| round_trips(name, version, arch, &[]),
        );
    }

    /// With the release name known, any version round-trips, dashes included.
    #[test]
    fn triple_round_trips_any_version_given_the_release_name() {
        check(
            ("\\PC{1,16}", "\\PC{1,12}", arch()),
            |(name, version, arch)| {
                let names = [name.clone()];
                round_trips(name, version, arch, &names)
            },
        );
    }

    #[test]
    fn triple_never_panics() {
        check(
            ("\\PC{0,30}", prop::collection::vec("\\PC{0,8}", 0..3)),
            |(file, names)| {
                if let Some(t) = triple(&file, &names) {
                    prop_assert!(!t.name.is_empty() && !t.version.is_empty());
                    prop_assert_eq!(format!("{}-{}-{}.raw", t.name, t.version, t.arch), file);
                }
                Ok(())
            },
        );
    }
}
