//! Matching: would systemd-sysext accept this image on the target host? This is
//! `extension_release_validate()` (rule book C1-C13), applied in systemd's order and
//! reporting systemd's own reason.

use sysext_builder::arch::{SYSTEMD_ARCHITECTURES, correct_misspelling};

use crate::lint::context::Context;
use crate::lint::finding::{Finding, Rule, Severity};

pub const NO_DATA: Rule = Rule {
    id: "match/no-release-data",
    severity: Severity::Error,
    summary: "the release file is empty: \"carries no release data, ignoring\"",
    reference: "C1",
};
pub const SCOPE: Rule = Rule {
    id: "match/scope",
    severity: Severity::Error,
    summary: "SYSEXT_SCOPE does not include 'system', so the image is ignored on a booted host",
    reference: "C2",
};
pub const SCOPE_INVALID: Rule = Rule {
    id: "match/scope-invalid",
    severity: Severity::Warning,
    summary: "SYSEXT_SCOPE has a word other than system, initrd, portable",
    reference: "B10",
};
pub const ARCH_INVALID: Rule = Rule {
    id: "match/arch-invalid",
    severity: Severity::Error,
    summary: "ARCHITECTURE is not one of systemd's names (x86_64, amd64, aarch64, any are common mistakes)",
    reference: "C4, C5",
};
pub const ARCH_TARGET: Rule = Rule {
    id: "match/arch-mismatch",
    severity: Severity::Error,
    summary: "ARCHITECTURE differs from the architecture the image is for",
    reference: "C3",
};
pub const NO_ID: Rule = Rule {
    id: "match/no-id",
    severity: Severity::Error,
    summary: "ID is missing or empty, so the image never matches",
    reference: "C6",
};
pub const ID_MISMATCH: Rule = Rule {
    id: "match/id-mismatch",
    severity: Severity::Error,
    summary: "ID is neither _any, the host's ID, nor in the host's ID_LIKE",
    reference: "C8",
};
pub const LEVEL_MISMATCH: Rule = Rule {
    id: "match/level-mismatch",
    severity: Severity::Error,
    summary: "SYSEXT_LEVEL differs from the host's",
    reference: "C10",
};
pub const VERSION_MISMATCH: Rule = Rule {
    id: "match/version-mismatch",
    severity: Severity::Error,
    summary: "VERSION_ID is missing or differs from the host's, and no SYSEXT_LEVEL pair decides instead",
    reference: "C11",
};
pub const PINNED: Rule = Rule {
    id: "match/pinned-to-os-version",
    severity: Severity::Warning,
    summary: "the image matches through VERSION_ID only, so it breaks on the next OS update",
    reference: "C13",
};

pub const KEYS_NEED_252: Rule = Rule {
    id: "match/keys-need-systemd-252",
    severity: Severity::Error,
    summary: "ID=_any and ARCHITECTURE= need systemd 252; an older target refuses the image",
    reference: "C5, C7, bakery.md 2 (note 8)",
};

pub const RULES: &[&Rule] = &[
    &NO_DATA,
    &KEYS_NEED_252,
    &SCOPE,
    &SCOPE_INVALID,
    &ARCH_INVALID,
    &ARCH_TARGET,
    &NO_ID,
    &ID_MISMATCH,
    &LEVEL_MISMATCH,
    &VERSION_MISMATCH,
    &PINNED,
];

pub fn check(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(rel) = &ctx.release else { return out };
    let p = rel.path.as_str();
    let d = &rel.data;
    if d.is_empty() {
        out.push(Finding::new(&NO_DATA, p, "the release file has no fields: systemd ignores the image. Add ID=_any (and ARCHITECTURE=)"));
        return out;
    }
    // Reported always, kept only for a target known to run systemd < 252 (lint::gates).
    let new_keys: Vec<String> = [("ID", d.get("ID")), ("ARCHITECTURE", d.get("ARCHITECTURE"))]
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            ("ID", Some("_any")) => Some("ID=_any".to_string()),
            ("ARCHITECTURE", Some(a)) => Some(format!("ARCHITECTURE={a}")),
            _ => None,
        })
        .collect();
    if !new_keys.is_empty() {
        out.push(Finding::new(
            &KEYS_NEED_252,
            p,
            format!(
                "{} arrived in systemd 252; the target's systemd ({}) does not know it and refuses the image. Build a variant with the target's ID and VERSION_ID, or require a newer OS",
                new_keys.join(" and "),
                ctx.target.systemd.describe()
            ),
        ));
    }

    let scope = d.get("SYSEXT_SCOPE").unwrap_or("system portable");
    let words: Vec<&str> = scope.split_whitespace().collect();
    for w in &words {
        if !["system", "initrd", "portable"].contains(w) {
            out.push(Finding::new(
                &SCOPE_INVALID,
                p,
                format!("SYSEXT_SCOPE word '{w}' is not system, initrd or portable"),
            ));
        }
    }
    if !words.contains(&"system") {
        out.push(Finding::new(
            &SCOPE,
            p,
            format!("SYSEXT_SCOPE={scope} leaves out 'system': systemd ignores the image on a booted host (\"not suitable for scope system\"). Add system"),
        ));
    }

    // An empty ARCHITECTURE= is no constraint: systemd checks it only when it is not
    // empty (`!isempty(...)`; `sysext-test differential`, seed 77, dt00189).
    if let Some(a) = d
        .get("ARCHITECTURE")
        .filter(|a| *a != "_any" && !a.is_empty())
    {
        if !SYSTEMD_ARCHITECTURES.contains(&a) {
            let fix = match (correct_misspelling(a), a) {
                (Some(right), _) => format!("use ARCHITECTURE={right}"),
                (None, "any" | "native") => {
                    "systemd only special-cases _any: use ARCHITECTURE=_any or the real arch"
                        .to_string()
                }
                (None, _) => "use a systemd architecture name such as x86-64 or arm64".to_string(),
            };
            out.push(Finding::new(
                &ARCH_INVALID,
                p,
                format!("ARCHITECTURE={a} never matches any host; {fix}"),
            ));
        } else if let Some(want) = ctx.arch
            && a != want.systemd_name()
        {
            out.push(Finding::new(
                &ARCH_TARGET,
                p,
                format!("ARCHITECTURE={a} but the image is for {want}: systemd ignores it there (\"is for architecture '{a}', but deployed on top of '{want}'\")"),
            ));
        }
    }

    let host = ctx.host;
    let host_id = host.get("ID").unwrap_or("");
    let Some(id) = d.get("ID").filter(|v| !v.is_empty()) else {
        out.push(Finding::new(&NO_ID, p, "ID= is missing or empty: systemd ignores the image. Use ID=_any to match every OS, or the OS's ID"));
        return out;
    };
    if id == "_any" {
        return out;
    }
    let like: Vec<&str> = host
        .get("ID_LIKE")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if id != host_id && !like.contains(&id) {
        out.push(Finding::new(
            &ID_MISMATCH,
            p,
            format!("ID={id} but the target is ID={host_id}: systemd ignores the image. Use ID=_any (what the bakery ships) or ID={host_id}"),
        ));
        return out;
    }
    let host_level = host.get("SYSEXT_LEVEL").filter(|v| !v.is_empty());
    let host_version = host.get("VERSION_ID").filter(|v| !v.is_empty());
    if host_level.is_none() && host_version.is_none() {
        return out; // C9: rolling host, ID match is enough.
    }
    let level = d.get("SYSEXT_LEVEL").filter(|v| !v.is_empty());
    if let (Some(hl), Some(l)) = (host_level, level) {
        if hl != l {
            out.push(Finding::new(
                &LEVEL_MISMATCH,
                p,
                format!("SYSEXT_LEVEL={l} but the target has SYSEXT_LEVEL={hl}: systemd ignores the image (\"is for API level '{l}'\"). Use {hl}"),
            ));
        }
        return out;
    }
    if let Some(hv) = host_version {
        match d.get("VERSION_ID").filter(|v| !v.is_empty()) {
            None => out.push(Finding::new(
                &VERSION_MISMATCH,
                p,
                format!(
                    "ID={id} without VERSION_ID or a SYSEXT_LEVEL the target shares: systemd ignores the image (\"does not contain VERSION_ID\"). Add SYSEXT_LEVEL={} or use ID=_any",
                    host_level.unwrap_or("1.0")
                ),
            )),
            Some(v) if v != hv => out.push(Finding::new(
                &VERSION_MISMATCH,
                p,
                format!("VERSION_ID={v} but the target is VERSION_ID={hv}: systemd ignores the image. Use SYSEXT_LEVEL or ID=_any instead of pinning an OS version"),
            )),
            Some(v) => out.push(Finding::new(
                &PINNED,
                p,
                format!("matches only because VERSION_ID={v} equals the target's: the next OS update disables it. Use SYSEXT_LEVEL or ID=_any"),
            )),
        }
    }
    out
}
