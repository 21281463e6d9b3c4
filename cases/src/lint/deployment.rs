//! What systemd makes of several extensions deployed together: which file a versioned
//! `NAME.raw.v/` directory stands for (rule book A6), which entry of a name wins across the
//! search path (A7, F3: an empty directory in /etc/extensions masks an image further down),
//! and whose copy of a file wins when two extensions ship it (F4: stacked by image name in
//! version order, the highest on top). Lint of one image cannot see these; the differential
//! oracle checks them against systemd like the per-image rules.

use std::cmp::Ordering;

use sysext_builder::Arch;
use sysext_builder::arch::SYSTEMD_ARCHITECTURES;
use sysext_builder::version;

/// systemd-sysext's search path, first wins (rule book F1).
pub const SEARCH_PATH: [&str; 3] = ["/etc/extensions", "/run/extensions", "/var/lib/extensions"];

/// The version and arch a file in `NAME.raw.v/` carries: `NAME_VERSION[_ARCH][+TRIES].raw`.
/// `None` when the file is not one of NAME's.
pub fn versioned_parts<'a>(name: &str, file: &'a str) -> Option<(&'a str, Option<&'a str>)> {
    let rest = file
        .strip_suffix(".raw")?
        .strip_prefix(name)?
        .strip_prefix('_')?;
    let rest = rest.split_once('+').map_or(rest, |(v, _)| v);
    match rest.rsplit_once('_') {
        Some((v, a)) if SYSTEMD_ARCHITECTURES.contains(&a) && !v.is_empty() => Some((v, Some(a))),
        _ if !rest.is_empty() => Some((rest, None)),
        _ => None,
    }
}

/// The file systemd picks from `NAME.raw.v/` on `arch`: the highest version (UAPI.10 order)
/// among those for `arch` or for no arch in particular whose version is one sysupdate
/// accepts ("Version string '2^post' of entry … is invalid, ignoring entry.", seen by
/// `sysext-test differential`).
pub fn pick_versioned<'a>(name: &str, files: &'a [String], arch: Arch) -> Option<&'a str> {
    files
        .iter()
        .filter_map(|f| versioned_parts(name, f).map(|p| (f.as_str(), p)))
        .filter(|(_, (v, a))| {
            version::sysupdate_version_is_valid(v) && a.is_none_or(|a| a == arch.systemd_name())
        })
        .max_by(|(_, (va, _)), (_, (vb, _))| version::compare_on(arch, va, vb))
        .map(|(f, _)| f)
}

/// Of the image names that ship the same file, the one whose copy a merged host sees: the
/// last in systemd's stacking order, which sorts names in version order.
pub fn stacking_winner<'a>(names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .copied()
        .max_by(|a, b| match version::compare(a, b) {
            Ordering::Equal => a.cmp(b),
            o => o,
        })
}

/// The directory of the search path whose entry named `name` systemd uses, given the
/// directories holding one: an empty directory there (a mask) hides every later one.
pub fn winning_dir<'a>(dirs_with_entry: &[&'a str]) -> Option<&'a str> {
    SEARCH_PATH
        .iter()
        .find_map(|d| dirs_with_entry.iter().find(|x| *x == d).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_versioned_directory_picks_the_highest_version_for_this_arch() {
        let files: Vec<String> = [
            "foo_1.2_x86-64.raw",
            "foo_1.10_x86-64.raw",
            "foo_2.0_arm64.raw",
            "foo_1.9.raw",
            "foo_9^post_x86-64.raw",
            "bar_9.raw",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pick_versioned("foo", &files, Arch::X86_64),
            Some("foo_1.10_x86-64.raw")
        );
        assert_eq!(
            pick_versioned("foo", &files, Arch::Arm64),
            Some("foo_2.0_arm64.raw")
        );
        assert_eq!(pick_versioned("baz", &files, Arch::Arm64), None);
    }

    #[test]
    fn tries_and_arch_are_cut_from_the_version() {
        assert_eq!(
            versioned_parts("foo", "foo_1.2_arm64+3.raw"),
            Some(("1.2", Some("arm64")))
        );
        assert_eq!(versioned_parts("foo", "foo_1.2.raw"), Some(("1.2", None)));
        assert_eq!(versioned_parts("foo", "foo.raw"), None);
    }

    #[test]
    fn the_highest_name_in_version_order_is_stacked_on_top() {
        assert_eq!(stacking_winner(&["a_2", "a_10", "a_1"]), Some("a_10"));
        assert_eq!(stacking_winner(&["b", "a_10"]), Some("b"));
    }

    #[test]
    fn an_entry_in_etc_masks_the_same_name_in_run() {
        assert_eq!(
            winning_dir(&["/run/extensions", "/etc/extensions"]),
            Some("/etc/extensions")
        );
    }
}
