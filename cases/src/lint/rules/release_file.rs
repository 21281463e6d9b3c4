//! The extension-release file: present, found the way systemd finds it, and well-formed
//! (rule book B1-B11, E9, E10).
//!
//! Getting this wrong does not just lose one extension: systemd reads every image's
//! metadata before merging, and one image whose release file it cannot find makes the
//! whole merge fail (E10).

use sysext_builder::image::{Image, Kind};
use sysext_builder::osrelease::{self, OsRelease};

use crate::lint::context::{Lookup, Release};
use crate::lint::finding::{Finding, Rule, Severity};

pub const MISSING: Rule = Rule {
    id: "release/missing",
    severity: Severity::Error,
    summary: "no usr/lib/extension-release.d/extension-release.* file",
    reference: "B1",
};
pub const CONFEXT_ONLY: Rule = Rule {
    id: "release/confext-only",
    severity: Severity::Error,
    summary: "only a confext release file (etc/extension-release.d): not a sysext",
    reference: "E9, I1",
};
pub const NAME_MISMATCH: Rule = Rule {
    id: "release/name-mismatch",
    severity: Severity::Error,
    summary: "no release file matches the image name, and none carries user.extension-release.strict=0",
    reference: "B2, B3, E10",
};
pub const AMBIGUOUS: Rule = Rule {
    id: "release/ambiguous",
    severity: Severity::Error,
    summary: "more than one release file qualifies in the fallback lookup (ENOTUNIQ)",
    reference: "B4",
};
pub const PREFIX_FALLBACK: Rule = Rule {
    id: "release/prefix-fallback",
    severity: Severity::Warning,
    summary: "the release file matches only after cutting the name at '_'/'+', which needs systemd >= 257",
    reference: "B3",
};
pub const XATTR_FALLBACK: Rule = Rule {
    id: "release/strict-xattr-fallback",
    severity: Severity::Info,
    summary: "the release file is accepted through user.extension-release.strict=0",
    reference: "B3, B6",
};
pub const XATTR_VALUE: Rule = Rule {
    id: "release/strict-xattr-value",
    severity: Severity::Warning,
    summary: "user.extension-release.strict is a false boolean other than \"0\", which the spec requires",
    reference: "B5",
};
pub const XATTR_UNKNOWN: Rule = Rule {
    id: "release/xattrs-unreadable",
    severity: Severity::Warning,
    summary: "the release name differs and this format's xattrs cannot be read here, so the fallback is unverified",
    reference: "B6",
};
pub const NOT_REGULAR: Rule = Rule {
    id: "release/not-regular-file",
    severity: Severity::Error,
    summary: "the release file is a directory, a device, or a symlink that leaves the image or dangles",
    reference: "B2",
};
pub const SYNTAX: Rule = Rule {
    id: "release/syntax",
    severity: Severity::Warning,
    summary: "the release file is not clean os-release(5) syntax",
    reference: "B7",
};
pub const FIELD_FORMAT: Rule = Rule {
    id: "release/field-format",
    severity: Severity::Warning,
    summary: "ID, VERSION_ID, SYSEXT_LEVEL must be lower-case [a-z0-9._-]",
    reference: "B10",
};
pub const IMAGE_ID: Rule = Rule {
    id: "release/image-id",
    severity: Severity::Warning,
    summary: "IMAGE_ID/IMAGE_VERSION in extension-release are about to become match constraints; use SYSEXT_IMAGE_ID",
    reference: "B11",
};
pub const RELOAD_VALUE: Rule = Rule {
    id: "release/reload-manager-value",
    severity: Severity::Warning,
    summary: "EXTENSION_RELOAD_MANAGER is not a boolean, so systemd ignores it",
    reference: "B10, G7",
};

pub const RULES: &[&Rule] = &[
    &MISSING,
    &CONFEXT_ONLY,
    &NAME_MISMATCH,
    &AMBIGUOUS,
    &PREFIX_FALLBACK,
    &XATTR_FALLBACK,
    &XATTR_VALUE,
    &XATTR_UNKNOWN,
    &NOT_REGULAR,
    &SYNTAX,
    &FIELD_FORMAT,
    &IMAGE_ID,
    &RELOAD_VALUE,
];

pub use sysext_builder::image::facts::{
    RELEASE_DIR as DIR, RELEASE_PREFIX as PREFIX, release_names as candidate_names,
};
const STRICT_XATTR: &str = "user.extension-release.strict";

/// The message of a `release/not-regular-file` finding whose release file is a directory
/// (what `lint::effects` tells apart: reading it fails, whatever else the image holds).
pub const NOT_REGULAR_DIRECTORY: &str = "the release file is a directory: reading it fails (\"Is a directory\") and, with it, the whole merge; ship a regular file";

/// Finds the release file systemd would use for `image_name`, parses it, and reports
/// what is wrong on the way.
pub fn check(image: &Image, image_name: &str) -> (Option<Release>, Vec<Finding>) {
    let mut out = Vec::new();
    let names = candidate_names(image);
    if names.is_empty() {
        let confext = image.entries().iter().any(|e| {
            e.path
                .starts_with("etc/extension-release.d/extension-release.")
        });
        if confext {
            out.push(Finding::new(
                &CONFEXT_ONLY,
                "etc/extension-release.d",
                "this image has only a confext release file, so systemd-sysext passes the mount check and then ignores it (\"carries no release data\"); add usr/lib/extension-release.d/extension-release.NAME",
            ));
        } else {
            out.push(Finding::new(
                &MISSING,
                DIR,
                format!("no release file: systemd refuses the image and aborts the whole merge. Add {DIR}/extension-release.{image_name} with at least ID=_any"),
            ));
        }
        return (None, out);
    }

    let exact = format!("{DIR}/{PREFIX}{image_name}");
    if image.get(&exact).is_some() {
        return match image.resolve(&exact) {
            Some(p) if image.get(&p).is_some_and(|e| e.is_file()) => {
                let release = parse(image, &p, image_name, Lookup::Exact, &mut out);
                (release, out)
            }
            _ => {
                // A directory is found and fails to read ("Is a directory"): the whole
                // merge fails. A dangling symlink or a device is not found at all.
                let message = if image
                    .get(&exact)
                    .is_some_and(|e| matches!(e.kind, sysext_builder::image::Kind::Dir))
                {
                    NOT_REGULAR_DIRECTORY
                } else {
                    "the release file is not a regular file inside the image (a device, or a symlink that dangles or leaves the image), so systemd does not find it; ship a regular file"
                };
                out.push(Finding::new(&NOT_REGULAR, exact.as_str(), message));
                (None, out)
            }
        };
    }

    // Fallback scan (B3): only real regular files count, symlinks are ignored.
    let cut: &str = image_name.split(['_', '+']).next().unwrap_or(image_name);
    let mut accepted: Vec<(String, String, Lookup)> = Vec::new();
    let mut unreadable = false;
    for n in &names {
        let path = format!("{DIR}/{PREFIX}{n}");
        if !image.get(&path).is_some_and(|e| e.kind == Kind::File) {
            continue;
        }
        if n == cut {
            accepted.push((path, n.clone(), Lookup::NamePrefix));
            continue;
        }
        if !image.has_xattr_support() {
            unreadable = true;
            continue;
        }
        match image.xattr(&path, STRICT_XATTR) {
            Ok(Some(v)) => {
                let text = String::from_utf8_lossy(&v)
                    .trim_end_matches('\0')
                    .to_string();
                if osrelease::parse_bool(&text) == Some(false) {
                    if text != "0" {
                        out.push(Finding::new(
                            &XATTR_VALUE,
                            path.as_str(),
                            format!("{STRICT_XATTR}={text:?} works with systemd, but the Extension Image spec requires \"0\"; set it to 0"),
                        ));
                    }
                    accepted.push((path, n.clone(), Lookup::StrictXattr));
                }
            }
            Ok(None) => {}
            Err(e) => {
                out.push(Finding::new(
                    &XATTR_UNKNOWN,
                    path.as_str(),
                    format!("could not read xattrs: {e}"),
                ));
            }
        }
    }
    match accepted.len() {
        0 => {
            let found = names
                .iter()
                .map(|n| format!("{PREFIX}{n}"))
                .collect::<Vec<_>>()
                .join(", ");
            if unreadable {
                out.push(Finding::new(
                    &XATTR_UNKNOWN,
                    DIR,
                    format!(
                        "systemd will look for {PREFIX}{image_name} but the image has {found}; this format's xattrs cannot be read here, so whether user.extension-release.strict=0 rescues it is unknown"
                    ),
                ));
                return (None, out);
            }
            let first = names.first().map(String::as_str).unwrap_or("NAME");
            out.push(Finding::new(
                &NAME_MISMATCH,
                DIR,
                format!(
                    "systemd looks for {PREFIX}{image_name} but the image has {found}: the merge fails (\"No medium found\") and takes every other extension down with it. Deploy it as {first}.raw, rename the release file, or set {STRICT_XATTR}=0 on it"
                ),
            ));
            (None, out)
        }
        1 => {
            let (path, name, lookup) = accepted.remove(0);
            match lookup {
                Lookup::NamePrefix => out.push(Finding::new(
                    &PREFIX_FALLBACK,
                    path.as_str(),
                    format!(
                        "systemd >= 257 accepts {PREFIX}{name} for image '{image_name}' (name cut at '_'/'+'), older systemd refuses it; name the release file {PREFIX}{image_name} or deploy as {name}.raw"
                    ),
                )),
                Lookup::StrictXattr => out.push(Finding::new(
                    &XATTR_FALLBACK,
                    path.as_str(),
                    format!("image '{image_name}' uses {PREFIX}{name} through {STRICT_XATTR}=0; keep the xattr when repacking (tar and zip drop it)"),
                )),
                Lookup::Exact => {}
            }
            let release = parse(image, &path, &name, lookup, &mut out);
            (release, out)
        }
        _ => {
            let list = accepted
                .iter()
                .map(|(p, _, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Finding::new(
                &AMBIGUOUS,
                DIR,
                format!("more than one release file qualifies for image '{image_name}' ({list}): systemd refuses the image (ENOTUNIQ). Ship exactly one"),
            ));
            (None, out)
        }
    }
}

fn parse(
    image: &Image,
    path: &str,
    name: &str,
    lookup: Lookup,
    out: &mut Vec<Finding>,
) -> Option<Release> {
    let bytes = match image.read(path, 64 * 1024) {
        Ok(b) => b,
        Err(e) => {
            out.push(Finding::new(
                &NOT_REGULAR,
                path,
                format!("cannot read the release file: {e}"),
            ));
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            out.push(Finding::new(
                &SYNTAX,
                path,
                "the release file is not valid UTF-8; os-release(5) requires it",
            ));
            return Some(Release {
                path: path.into(),
                name: name.into(),
                data: OsRelease::default(),
                lookup,
            });
        }
    };
    let (data, issues) = OsRelease::parse(&text);
    for issue in issues {
        out.push(Finding::new(
            &SYNTAX,
            path,
            format!("line {}: {}", issue.line, issue.message),
        ));
    }
    for key in ["ID", "VERSION_ID", "SYSEXT_LEVEL"] {
        if let Some(v) = data.get(key)
            && !(key == "ID" && v == "_any")
            && !v.is_empty()
            && !v
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            out.push(Finding::new(
                &FIELD_FORMAT,
                path,
                format!("{key}={v} should be lower-case [a-z0-9._-]; systemd compares it byte for byte with the host's"),
            ));
        }
    }
    for key in ["IMAGE_ID", "IMAGE_VERSION"] {
        if data.get(key).is_some() {
            out.push(Finding::new(
                &IMAGE_ID,
                path,
                format!("{key}= in extension-release is metadata today but an open systemd change makes it a match constraint; use SYSEXT_{key}= instead"),
            ));
        }
    }
    if let Some(v) = data.get("EXTENSION_RELOAD_MANAGER")
        && osrelease::parse_bool(v).is_none()
    {
        out.push(Finding::new(
            &RELOAD_VALUE,
            path,
            format!("EXTENSION_RELOAD_MANAGER={v} is not a boolean; systemd warns and does not reload. Use 1"),
        ));
    }
    Some(Release {
        path: path.into(),
        name: name.into(),
        data,
        lookup,
    })
}
