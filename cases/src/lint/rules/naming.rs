//! Naming: what systemd calls an image, and whether the bakery's `NAME-VERSION-ARCH.raw`
//! convention and systemd-sysupdate can both live with the file name (rule book A1-A8, K12).

use sysext_builder::{Arch, version};

use crate::lint::context::Context;
use crate::lint::finding::{Finding, Rule, Severity};

pub const NOT_RAW: Rule = Rule {
    id: "naming/not-raw",
    severity: Severity::Error,
    summary: "an image file that does not end in .raw is silently not an extension",
    reference: "A3",
};
pub const INVALID_NAME: Rule = Rule {
    id: "naming/invalid-image-name",
    severity: Severity::Error,
    summary: "the image name is not a valid file name (control characters, '.#' prefix, too long)",
    reference: "A2",
};
pub const NOT_BAKERY_STYLE: Rule = Rule {
    id: "naming/not-bakery-style",
    severity: Severity::Info,
    summary: "the file name is not NAME-VERSION-ARCH.raw, the bakery's release convention",
    reference: "bakery.md 1.3",
};
pub const INSTALL_VIA_SYMLINK: Rule = Rule {
    id: "naming/install-via-symlink",
    severity: Severity::Info,
    summary: "a versioned file name must be deployed through the NAME.raw symlink",
    reference: "bakery.md 2.3",
};
pub const ARCH_MISMATCH: Rule = Rule {
    id: "naming/arch-mismatch",
    severity: Severity::Error,
    summary: "the arch in the file name differs from ARCHITECTURE in extension-release",
    reference: "C3, bakery.md 3.2",
};
pub const VERSION_INVISIBLE: Rule = Rule {
    id: "naming/version-invisible-to-sysupdate",
    severity: Severity::Error,
    summary: "the version has characters systemd-sysupdate rejects, so updates never see it",
    reference: "K12, J3",
};
pub const VERSION_DASH: Rule = Rule {
    id: "naming/version-has-dash",
    severity: Severity::Warning,
    summary: "a '-' in the version makes the bakery's redirector split name and version wrongly",
    reference: "bakery.md 3.3",
};

pub const VERSION_ORDER: Rule = Rule {
    id: "naming/version-order-disagrees",
    severity: Severity::Warning,
    summary: "systemd-sysupdate orders these versions differently from semver (1.0.0-rc1 after 1.0.0)",
    reference: "UAPI.10, K11",
};

pub const RULES: &[&Rule] = &[
    &NOT_RAW,
    &INVALID_NAME,
    &NOT_BAKERY_STYLE,
    &INSTALL_VIA_SYMLINK,
    &ARCH_MISMATCH,
    &VERSION_INVISIBLE,
    &VERSION_DASH,
    &VERSION_ORDER,
];

pub use sysext_builder::naming::{Triple, image_name, triple};

/// Checks that need only the file name; they run even when the image cannot be opened.
pub fn check_file_name(file_name: &str, is_dir: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    if !is_dir && !file_name.ends_with(".raw") {
        out.push(Finding::new(
            &NOT_RAW,
            file_name,
            format!(
                "systemd-sysext ignores '{file_name}': image files must end in .raw; rename it"
            ),
        ));
    }
    let name = image_name(file_name, is_dir);
    let problem = if name.is_empty() || name == "." || name == ".." {
        Some("is empty or '.'/'..'")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else if name.starts_with(".#") {
        Some("starts with '.#' (a temporary file to systemd)")
    } else if name.chars().any(|c| c.is_control()) {
        Some("contains control characters")
    } else {
        None
    };
    if let Some(p) = problem {
        out.push(Finding::new(
            &INVALID_NAME,
            file_name,
            format!(
                "image name '{}' {p}; systemd skips the entry. Rename the file",
                name.escape_debug()
            ),
        ));
    }
    out
}

/// A pre-release such as `1.0.0-rc1` is older than `1.0.0` for semver (what a bakery
/// release tag means) but newer for systemd's version order (what sysupdate offers as
/// newest): published next to the final release, it is what sysupdate installs.
fn pre_release_order(t: &Triple) -> Option<Finding> {
    let sv = semver::Version::parse(&t.version).ok()?;
    if sv.pre.is_empty() {
        return None;
    }
    let release = format!("{}.{}.{}", sv.major, sv.minor, sv.patch);
    (version::compare(&t.version, &release) == std::cmp::Ordering::Greater).then(|| {
        Finding::new(
            &VERSION_ORDER,
            format!("{}-{}-{}.raw", t.name, t.version, t.arch),
            format!(
                "{v} is a pre-release for semver (before {release}) but systemd-sysupdate orders it after {release}: once both are published it offers {v} as the update over {release}. Keep pre-releases off the mirror sysupdate reads",
                v = t.version
            ),
        )
    })
}

/// The versions of each extension in a release directory, in systemd's order and in
/// semver's (for the versions that are semver): when they differ, sysupdate's "newest" is
/// not the release the tags call newest.
pub fn check_version_order(file_names: &[String], release_names: &[String]) -> Vec<Finding> {
    use std::collections::BTreeMap;
    let mut by_name: BTreeMap<(String, Arch), Vec<(String, semver::Version)>> = BTreeMap::new();
    for f in file_names {
        if let Some(t) = triple(f, release_names)
            && let Ok(sv) = semver::Version::parse(&t.version)
        {
            by_name
                .entry((t.name, t.arch))
                .or_default()
                .push((t.version, sv));
        }
    }
    let mut out = Vec::new();
    for ((name, arch), versions) in by_name {
        let mut systemd_order: Vec<&(String, semver::Version)> = versions.iter().collect();
        systemd_order.sort_by(|a, b| version::compare(&a.0, &b.0));
        let mut semver_order = systemd_order.clone();
        semver_order.sort_by(|a, b| a.1.cmp(&b.1));
        if systemd_order
            .iter()
            .map(|p| &p.0)
            .ne(semver_order.iter().map(|p| &p.0))
        {
            let list = |o: &[&(String, semver::Version)]| {
                o.iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(" < ")
            };
            out.push(Finding::new(
                &VERSION_ORDER,
                format!("{name}-*-{arch}.raw"),
                format!(
                    "systemd-sysupdate orders the releases {} but semver orders them {}: sysupdate's newest is {}, not {}",
                    list(&systemd_order),
                    list(&semver_order),
                    systemd_order.last().map(|p| p.0.as_str()).unwrap_or_default(),
                    semver_order.last().map(|p| p.0.as_str()).unwrap_or_default()
                ),
            ));
        }
    }
    out
}

/// Cross-checks of the file name against the release file, run once that is known.
pub fn check(ctx: &Context, parsed: Option<&Triple>) -> Vec<Finding> {
    let mut out = Vec::new();
    let f = ctx.file_name.as_str();
    let Some(t) = parsed else {
        if f.ends_with(".raw") {
            out.push(Finding::new(
                &NOT_BAKERY_STYLE,
                f,
                "valid for systemd, but bakery releases and their sysupdate transfers expect NAME-VERSION-ARCH.raw (e.g. docker-28.0.4-x86-64.raw)",
            ));
        }
        return out;
    };
    if let Some(rel) = &ctx.release {
        if let Some(a) = rel.data.get("ARCHITECTURE")
            && a != "_any"
            && a != t.arch.systemd_name()
            && sysext_builder::arch::SYSTEMD_ARCHITECTURES.contains(&a)
        {
            out.push(Finding::new(
                &ARCH_MISMATCH,
                f,
                format!(
                    "file name says {} but {} says ARCHITECTURE={a}; sysupdate installs it on {} hosts, where systemd refuses it. Rebuild with the right --arch",
                    t.arch, rel.path, t.arch
                ),
            ));
        }
        if ctx
            .release
            .as_ref()
            .is_some_and(|r| r.lookup == crate::lint::context::Lookup::Exact)
            && image_name(f, false) != t.name
        {
            out.push(Finding::new(
                &INSTALL_VIA_SYMLINK,
                f,
                format!(
                    "install through the symlink /etc/extensions/{n}.raw (the bakery layout); under its own name systemd would look for extension-release.{}",
                    image_name(f, false),
                    n = t.name
                ),
            ));
        }
    }
    let bad = version::invalid_sysupdate_chars(&t.version);
    if !bad.is_empty() {
        let chars: String = bad
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Finding::new(
            &VERSION_INVISIBLE,
            f,
            format!(
                "version '{}' contains {chars}, which systemd-sysupdate does not accept in @v: it will never offer this file. Use only [A-Za-z0-9.,_+-] (e.g. 2.0-rc1 → 2.0.rc1)",
                t.version
            ),
        ));
    }
    if t.version.contains('-') {
        let greedy = triple(f, &[]).map(|g| g.name).unwrap_or_default();
        out.push(Finding::new(
            &VERSION_DASH,
            f,
            format!(
                "version '{}' contains '-': the bakery redirector reads this file as extension '{greedy}' and 404s. Replace '-' in versions (e.g. with '.')",
                t.version
            ),
        ));
    }
    out.extend(pre_release_order(t));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("foo.raw", false, "foo")]
    #[case("foo.sysext.raw", false, "foo")]
    #[case("foo_1.2.raw", false, "foo_1.2")]
    #[case("foo.confext", true, "foo")]
    #[case("foo", true, "foo")]
    fn derives_image_names_like_systemd(
        #[case] file: &str,
        #[case] dir: bool,
        #[case] expected: &str,
    ) {
        assert_eq!(image_name(file, dir), expected);
    }

    #[rstest]
    #[case("docker-28.0.4-x86-64.raw", &[], Some(("docker", "28.0.4", "x86-64")))]
    #[case("docker-compose-2.34.0-arm64.raw", &[], Some(("docker-compose", "2.34.0", "arm64")))]
    #[case("k3s-v1.32.2+k3s1-x86-64.raw", &["k3s"], Some(("k3s", "v1.32.2+k3s1", "x86-64")))]
    #[case("foo-1.0-rc1-x86-64.raw", &["foo"], Some(("foo", "1.0-rc1", "x86-64")))]
    #[case("foo-1.0-rc1-x86-64.raw", &[], Some(("foo-1.0", "rc1", "x86-64")))]
    #[case("docker.raw", &[], None)]
    #[case("docker-x86-64.raw", &[], None)]
    #[case("docker-1-amd64.raw", &[], None)]
    fn splits_bakery_names(
        #[case] file: &str,
        #[case] names: &[&str],
        #[case] expected: Option<(&str, &str, &str)>,
    ) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let got = triple(file, &names);
        assert_eq!(
            got.as_ref()
                .map(|t| (t.name.as_str(), t.version.as_str(), t.arch.systemd_name())),
            expected
        );
    }

    #[rstest]
    #[case::raw("hello.raw", false, None)]
    #[case::img("hello.img", false, Some("naming/not-raw"))]
    #[case::squashfs("hello.squashfs", false, Some("naming/not-raw"))]
    #[case::dir("hello", true, None)]
    #[case::temp(".#hello.raw", false, Some("naming/invalid-image-name"))]
    #[case::control("he\u{1}llo.raw", false, Some("naming/invalid-image-name"))]
    fn file_name_rules(#[case] file: &str, #[case] dir: bool, #[case] rule: Option<&str>) {
        let rules: Vec<&str> = check_file_name(file, dir).iter().map(|f| f.rule).collect();
        match rule {
            Some(r) => assert!(rules.contains(&r), "{rules:?}"),
            None => assert!(rules.is_empty(), "{rules:?}"),
        }
    }
}
