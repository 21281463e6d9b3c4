//! Content: what may be in a sysext's tree and what breaks the host when it is
//! (rule book D1-D6, bakery issues on /usr/sbin and ownership).

use sysext_builder::image::{Kind, normalize};

use crate::lint::context::Context;
use crate::lint::finding::{Finding, Rule, Severity};

pub const TOP_LEVEL: Rule = Rule {
    id: "content/top-level",
    severity: Severity::Warning,
    summary: "a top-level entry other than usr/ or opt/ is silently not merged",
    reference: "D1",
};
pub const OS_RELEASE: Rule = Rule {
    id: "content/os-release",
    severity: Severity::Error,
    summary: "usr/lib/os-release in a sysext makes systemd refuse it (a directory image: the whole merge)",
    reference: "B8, D2",
};
pub const USR_SBIN: Rule = Rule {
    id: "content/usr-sbin",
    severity: Severity::Error,
    summary: "usr/sbin in the image shadows the host's /usr/sbin (a symlink to bin on Flatcar)",
    reference: "bakery #105, #131",
};
pub const WHITEOUT: Rule = Rule {
    id: "content/whiteout",
    severity: Severity::Warning,
    summary: "an overlayfs whiteout (char device 0:0) hides a host file instead of adding one",
    reference: "D4",
};
pub const SPECIAL: Rule = Rule {
    id: "content/special-file",
    severity: Severity::Warning,
    summary: "device nodes, FIFOs and sockets have no place in a sysext (merged nodev)",
    reference: "D6",
};
pub const SETUID: Rule = Rule {
    id: "content/setuid",
    severity: Severity::Warning,
    summary: "setuid/setgid files run with privileges on every host that merges the image",
    reference: "D6",
};
pub const WORLD_WRITABLE: Rule = Rule {
    id: "content/world-writable",
    severity: Severity::Warning,
    summary: "world-writable files or directories (without the sticky bit)",
    reference: "D6",
};
pub const SYMLINK_LEAVES: Rule = Rule {
    id: "content/symlink-leaves-image",
    severity: Severity::Warning,
    summary: "a symlink points outside the extension's tree, so it depends on the host's layout",
    reference: "D1",
};
pub const NOT_ROOT: Rule = Rule {
    id: "content/not-root-owned",
    severity: Severity::Warning,
    summary: "files not owned by root:root (ext4/btrfs builds leak the builder's uid)",
    reference: "bakery.md 8.5",
};
pub const NO_PAYLOAD: Rule = Rule {
    id: "content/no-payload",
    severity: Severity::Warning,
    summary: "the image holds nothing but its release file",
    reference: "D3",
};
pub const EARLY_BOOT: Rule = Rule {
    id: "content/early-boot",
    severity: Severity::Warning,
    summary: "sysusers.d and similar early-boot files may be applied before the extension is merged",
    reference: "D5",
};
pub const UNREADABLE_FILE: Rule = Rule {
    id: "content/unreadable-file",
    severity: Severity::Error,
    summary: "a file's data cannot be read back (a corrupt or truncated block): the image merges, then reading the file fails with EIO",
    reference: "E1",
};

pub const RULES: &[&Rule] = &[
    &TOP_LEVEL,
    &OS_RELEASE,
    &USR_SBIN,
    &WHITEOUT,
    &SPECIAL,
    &SETUID,
    &WORLD_WRITABLE,
    &SYMLINK_LEAVES,
    &NOT_ROOT,
    &NO_PAYLOAD,
    &EARLY_BOOT,
    &UNREADABLE_FILE,
];

/// Per-file rules stop listing paths after this many and summarise the rest.
const PER_RULE_LIMIT: usize = 10;

pub fn check(ctx: &Context) -> Vec<Finding> {
    let image = ctx.image;
    let mut out = Vec::new();
    let mut not_root = Vec::new();
    let mut per_rule: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let mut push = |out: &mut Vec<Finding>, f: Finding| {
        let n = per_rule.entry(f.rule).or_default();
        *n += 1;
        if *n <= PER_RULE_LIMIT {
            out.push(f);
        }
    };
    let mut payload = false;
    for e in image.entries() {
        let path = e.path.as_str();
        if path.is_empty() {
            continue;
        }
        let top = path.split('/').next().unwrap_or(path);
        if !path.contains('/') && top != "usr" && top != "opt" {
            push(
                &mut out,
                Finding::new(
                    &TOP_LEVEL,
                    path,
                    format!(
                        "/{top} is not merged (only /usr and /opt are); move it under usr/ or ship it through tmpfiles.d"
                    ),
                ),
            );
        }
        if e.uid != 0 || e.gid != 0 {
            not_root.push(path);
        }
        if e.is_file() && !path.starts_with(super::release_file::DIR) {
            payload = true;
        }
        match &e.kind {
            Kind::CharDevice { major: 0, minor: 0 } => push(
                &mut out,
                Finding::new(
                    &WHITEOUT,
                    path,
                    format!(
                        "whiteout: merging this image hides the host's /{path}; extensions should only add files"
                    ),
                ),
            ),
            Kind::CharDevice { .. } | Kind::BlockDevice | Kind::Fifo | Kind::Socket => push(
                &mut out,
                Finding::new(
                    &SPECIAL,
                    path,
                    "device nodes, FIFOs and sockets are useless in a sysext (mounted nodev); create them at run time",
                ),
            ),
            Kind::Symlink(target) => {
                if let Some(msg) = symlink_problem(path, target, image) {
                    push(&mut out, Finding::new(&SYMLINK_LEAVES, path, msg));
                }
            }
            _ => {}
        }
        if !matches!(e.kind, Kind::Symlink(_)) {
            if e.mode & 0o6000 != 0 && e.is_file() {
                let what = if e.mode & 0o4000 != 0 {
                    "setuid"
                } else {
                    "setgid"
                };
                push(
                    &mut out,
                    Finding::new(
                        &SETUID,
                        path,
                        format!(
                            "{what} file (mode {:04o}): it runs privileged on every host that merges this image; drop the bit unless it is required",
                            e.mode
                        ),
                    ),
                );
            }
            let sticky_dir = e.is_dir() && e.mode & 0o1000 != 0;
            if e.mode & 0o002 != 0 && !sticky_dir {
                push(
                    &mut out,
                    Finding::new(
                        &WORLD_WRITABLE,
                        path,
                        format!("mode {:04o} is world-writable; use 0755/0644", e.mode),
                    ),
                );
            }
        }
        if path.starts_with("usr/lib/sysusers.d/") && e.is_file() {
            push(
                &mut out,
                Finding::new(
                    &EARLY_BOOT,
                    path,
                    "sysusers.d in a sysext may not be applied at boot (systemd-sysusers is not ordered after systemd-sysext); create users in ExecStartPre= or DynamicUser=",
                ),
            );
        }
    }
    for (rule, n) in per_rule {
        if n > PER_RULE_LIMIT {
            let r = RULES
                .iter()
                .find(|r| r.id == rule)
                .copied()
                .unwrap_or(&TOP_LEVEL);
            out.push(Finding::new(
                r,
                "",
                format!("{} more entries like the above", n - PER_RULE_LIMIT),
            ));
        }
    }
    if image.get("usr/lib/os-release").is_some() {
        // A raw image is refused when it is mounted ("Extension contains
        // '/usr/lib/os-release', which is not allowed, refusing."), the others still merge;
        // a directory image fails reading its metadata, and with it the whole merge
        // (rule book D2, E10; the raw case measured by `sysext-test differential`).
        let what = if image.format == sysext_builder::image::Format::Directory {
            "systemd refuses it and the whole merge fails"
        } else {
            "systemd refuses the image (\"which is not allowed, refusing\")"
        };
        out.push(Finding::new(
            &OS_RELEASE,
            "usr/lib/os-release",
            format!("a sysext must not contain usr/lib/os-release: {what}. Remove it"),
        ));
    }
    if let Some(e) = image.get("usr/sbin") {
        let what = if matches!(e.kind, Kind::Symlink(_)) {
            "a symlink"
        } else {
            "a directory"
        };
        let f = Finding::new(
            &USR_SBIN,
            "usr/sbin",
            format!(
                "usr/sbin is {what} in the image: on Flatcar /usr/sbin is a symlink to bin, and merging this replaces it, hiding every base sbin binary (a boot-breaking bug the bakery has shipped). Install binaries in usr/bin"
            ),
        );
        // An error where /usr/sbin is a symlink (Flatcar from 4152): merging replaces it.
        out.push(if ctx.target.sbin_merged {
            f
        } else {
            f.with_severity(Severity::Warning)
        });
    }
    if !not_root.is_empty() {
        let shown: Vec<&str> = not_root.iter().take(5).copied().collect();
        out.push(Finding::new(
            &NOT_ROOT,
            shown[0],
            format!(
                "{} entries are not owned by root:root (e.g. {}); build with mksquashfs -all-root or sysext-test build",
                not_root.len(),
                shown.join(", ")
            ),
        ));
    }
    if !payload {
        out.push(Finding::new(
            &NO_PAYLOAD,
            "",
            "the image contains no files besides its release file",
        ));
    }
    // The other rules read only the bytes they need (ELF headers, unit files), so a corrupt
    // block anywhere else would go unnoticed until the file is used; this reads every block
    // once (for compressed squashfs that also checks each block's checksum).
    let unreadable = image.unreadable_files();
    let total = unreadable.len();
    for (path, why) in unreadable.into_iter().take(PER_RULE_LIMIT) {
        out.push(Finding::new(
            &UNREADABLE_FILE,
            path,
            format!(
                "{why}{}: systemd merges the image, then every read of this file fails with EIO. Rebuild the image",
                if total > PER_RULE_LIMIT {
                    format!(" ({total} files in all)")
                } else {
                    String::new()
                }
            ),
        ));
    }
    out
}

/// Why a symlink depends on the host, if it does. Links into the host's /usr or /opt that the
/// image itself provides are fine; so are relative links that stay inside the tree.
fn symlink_problem(
    path: &str,
    target: &str,
    image: &sysext_builder::image::Image,
) -> Option<String> {
    if target.starts_with('/') {
        let inside = normalize(target);
        if image.get(&inside).is_some() {
            return None;
        }
        let hier = inside.split('/').next().unwrap_or("");
        if hier == "usr" || hier == "opt" {
            // A host file in a merged hierarchy: fine if the host has it, but we cannot know.
            return None;
        }
        return Some(format!(
            "absolute symlink to {target}, outside /usr and /opt: it works only if every host has that path; point it inside the image"
        ));
    }
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let depth = parent.split('/').filter(|c| !c.is_empty()).count() as isize;
    let mut level = depth;
    for c in target.split('/') {
        match c {
            ".." => level -= 1,
            "" | "." => {}
            _ => level += 1,
        }
        if level < 0 {
            return Some(format!(
                "relative symlink to {target} climbs above the image root"
            ));
        }
    }
    None
}
