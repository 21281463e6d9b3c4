//! systemd units shipped in the image: they parse, their programs exist, their enablement
//! links and drop-ins do what the author thinks, and systemd will notice them after a merge
//! (rule book D5, G7; bakery bugs: keepalived's /usr/sbin ExecStart, bird's `.service` drop-in).

use sysext_builder::image::{Image, Kind};
use sysext_builder::osrelease::parse_bool;
use sysext_builder::unitfile::IniFile;

use crate::lint::context::Context;
use crate::lint::finding::{Finding, Rule, Severity};
use crate::lint::target::{TargetKind, aliases};

pub const SYNTAX: Rule = Rule {
    id: "unit/syntax",
    severity: Severity::Warning,
    summary: "a unit file has lines systemd cannot parse (it ignores them)",
    reference: "systemd.syntax(7)",
};
pub const EXEC_MISSING: Rule = Rule {
    id: "unit/exec-missing",
    severity: Severity::Error,
    summary: "an Exec*= program is in neither the image nor the target (status=203/EXEC)",
    reference: "bakery #247",
};
pub const EXEC_SBIN: Rule = Rule {
    id: "unit/exec-via-sbin-merge",
    severity: Severity::Warning,
    summary: "an Exec*= path under /usr/sbin works only where /usr/sbin is a symlink to bin",
    reference: "bakery.md 6.6",
};
pub const DROPIN_SUFFIX: Rule = Rule {
    id: "unit/dropin-suffix",
    severity: Severity::Error,
    summary: "a file in a unit's .d/ directory does not end in .conf, so systemd ignores it",
    reference: "bakery.md 6.6 (bird)",
};
pub const DANGLING_LINK: Rule = Rule {
    id: "unit/dangling-enablement",
    severity: Severity::Error,
    summary: "a .wants/.requires/.upholds link names a unit the image does not ship",
    reference: "bakery.md 8.7",
};
pub const MISSING_DEP: Rule = Rule {
    id: "unit/missing-dependency",
    severity: Severity::Warning,
    summary: "Upholds=/Wants=/Requires= names a unit the image does not ship (the host must have it)",
    reference: "bakery.md 8.7",
};
pub const NO_RELOAD: Rule = Rule {
    id: "unit/reload-manager-missing",
    severity: Severity::Warning,
    summary: "units ship but EXTENSION_RELOAD_MANAGER=1 is not set, so they are invisible until a daemon-reload",
    reference: "G7",
};
pub const EARLY: Rule = Rule {
    id: "unit/default-dependencies-no",
    severity: Severity::Warning,
    summary: "DefaultDependencies=no units may be needed before systemd-sysext merged the image",
    reference: "D5",
};
pub const IN_ETC: Rule = Rule {
    id: "unit/in-etc",
    severity: Severity::Warning,
    summary: "units under etc/ are not merged by a sysext",
    reference: "D1",
};

pub const RULES: &[&Rule] = &[
    &SYNTAX,
    &EXEC_MISSING,
    &EXEC_SBIN,
    &DROPIN_SUFFIX,
    &DANGLING_LINK,
    &MISSING_DEP,
    &NO_RELOAD,
    &EARLY,
    &IN_ETC,
];

/// Unit directories a sysext can populate (both under /usr, so merged).
pub use sysext_builder::image::facts::UNIT_DIRS;
const EXEC_KEYS: &[&str] = &[
    "ExecStart",
    "ExecStartPre",
    "ExecStartPost",
    "ExecStop",
    "ExecStopPost",
    "ExecReload",
    "ExecCondition",
];
/// systemd's fixed search path for Exec*= commands given without a directory.
const EXEC_SEARCH: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

pub use sysext_builder::image::facts::{is_unit_name, unit_files};

fn image_has_unit(image: &Image, unit: &str) -> bool {
    let template = unit.split_once('@').map(|(pre, rest)| {
        let suffix = rest.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
        format!("{pre}@.{suffix}")
    });
    UNIT_DIRS.iter().any(|d| {
        image.get(&format!("{d}/{unit}")).is_some()
            || template
                .as_ref()
                .is_some_and(|t| image.get(&format!("{d}/{t}")).is_some())
    })
}

pub fn check(ctx: &Context) -> Vec<Finding> {
    let image = ctx.image;
    let mut out = Vec::new();
    let units = unit_files(image);

    for e in image.entries() {
        if e.path.starts_with("etc/systemd/system/") && e.path.matches('/').count() == 3 {
            out.push(Finding::new(&IN_ETC, e.path.as_str(), "units under /etc are not merged by systemd-sysext; ship them in usr/lib/systemd/system"));
        }
        for dir in UNIT_DIRS {
            let Some(rest) = e.path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((sub, name)) = rest.split_once('/') else {
                continue;
            };
            if name.contains('/') {
                continue;
            }
            if sub.ends_with(".d") && !name.ends_with(".conf") && !e.is_dir() {
                out.push(Finding::new(
                    &DROPIN_SUFFIX,
                    e.path.as_str(),
                    format!("systemd reads only *.conf in {sub}/, so this drop-in is ignored; rename it to {name}.conf or similar"),
                ));
            }
            if sub.ends_with(".d") && name.ends_with(".conf") && e.is_file() {
                check_unit_text(ctx, &e.path, &mut out);
                check_dependencies(ctx, &e.path, &mut out);
            }
            let link_dir = [".wants", ".requires", ".upholds"]
                .iter()
                .any(|s| sub.ends_with(s));
            if link_dir && is_unit_name(name) {
                check_enablement_link(ctx, dir, &e.path, name, &e.kind, &mut out);
            }
        }
    }

    for (path, _name) in &units {
        if image.get(path).is_some_and(|e| e.is_file()) {
            check_unit_text(ctx, path, &mut out);
        }
    }

    if !units.is_empty() {
        let reload = ctx
            .release
            .as_ref()
            .and_then(|r| r.data.get("EXTENSION_RELOAD_MANAGER"))
            .and_then(parse_bool);
        if reload != Some(true) {
            let p = ctx
                .release
                .as_ref()
                .map(|r| r.path.as_str())
                .unwrap_or(super::release_file::DIR);
            out.push(Finding::new(
                &NO_RELOAD,
                p,
                format!(
                    "the image ships {} unit(s) (e.g. {}) but not EXTENSION_RELOAD_MANAGER=1: after a merge systemd does not see them until 'systemctl daemon-reload'. Add EXTENSION_RELOAD_MANAGER=1",
                    units.len(),
                    units[0].1
                ),
            ));
        }
    }
    out
}

fn check_unit_text(ctx: &Context, path: &str, out: &mut Vec<Finding>) {
    let Ok(bytes) = ctx.image.read(path, 1 << 20) else {
        out.push(Finding::new(
            &SYNTAX,
            path,
            "unreadable or larger than 1 MiB",
        ));
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    let ini = IniFile::parse(&text);
    for (line, msg) in &ini.issues {
        out.push(Finding::new(
            &SYNTAX,
            path,
            format!("line {line}: {msg}; systemd ignores this line"),
        ));
    }
    if ini
        .get("Unit", "DefaultDependencies")
        .and_then(|a| parse_bool(&a.value))
        == Some(false)
    {
        out.push(Finding::new(
            &EARLY,
            path,
            "DefaultDependencies=no: this unit may be wanted before systemd-sysext.service merged the image at boot; make sure it is ordered after it",
        ));
    }
    for a in &ini.assignments {
        if !EXEC_KEYS.contains(&a.key.as_str()) || a.value.is_empty() {
            continue;
        }
        let Some(program) = exec_program(&a.value) else {
            continue;
        };
        match resolve_program(ctx, &program) {
            Resolution::Found => {}
            Resolution::ViaSbinMerge(real) => out.push(Finding::new(
                &EXEC_SBIN,
                path,
                format!(
                    "line {}: {}={program} exists only as {real}; it works on Flatcar since the /usr/sbin merge (2024-09) and fails with 203/EXEC on older releases. Use {real}",
                    a.line, a.key
                ),
            )),
            Resolution::Missing => out.push(Finding::new(
                &EXEC_MISSING,
                path,
                format!(
                    "line {}: {}={program}: no such program in the image or the {} base, so the unit fails with status=203/EXEC. Ship it or fix the path",
                    a.line,
                    a.key,
                    if ctx.target.kind == TargetKind::Flatcar { "Flatcar" } else { "generic" }
                ),
            )),
        }
    }
}

fn check_dependencies(ctx: &Context, path: &str, out: &mut Vec<Finding>) {
    let Ok(bytes) = ctx.image.read(path, 1 << 20) else {
        return;
    };
    let ini = IniFile::parse(&String::from_utf8_lossy(&bytes));
    for key in ["Upholds", "Wants", "Requires", "BindsTo"] {
        for a in ini.all("Unit", key) {
            for unit in a.value.split_whitespace() {
                if unit.contains('%') || image_has_unit(ctx.image, unit) {
                    continue;
                }
                out.push(Finding::new(
                    &MISSING_DEP,
                    path,
                    format!("line {}: {key}={unit}, which the image does not ship; it works only if every host has {unit}", a.line),
                ));
            }
        }
    }
}

fn check_enablement_link(
    ctx: &Context,
    dir: &str,
    path: &str,
    name: &str,
    kind: &Kind,
    out: &mut Vec<Finding>,
) {
    let image = ctx.image;
    if image_has_unit(image, name) {
        return;
    }
    let absolute = matches!(kind, Kind::Symlink(t) if t.starts_with('/'));
    let f = Finding::new(
        &DANGLING_LINK,
        path,
        format!(
            "enables {name}, but the image has no {dir}/{name}: the link dangles on hosts without that unit. Ship the unit or drop the link"
        ),
    );
    out.push(if absolute {
        f.with_severity(Severity::Warning)
    } else {
        f
    });
}

/// The program an Exec*= line runs, or None when it cannot be known statically.
fn exec_program(value: &str) -> Option<String> {
    let v = value.trim_start_matches(['@', '-', ':', '+', '!', '|']);
    let first = v.split_whitespace().next()?.trim_matches(['"', '\'']);
    if first.is_empty() || first.contains(['$', '%']) {
        return None;
    }
    Some(first.to_string())
}

enum Resolution {
    Found,
    ViaSbinMerge(String),
    Missing,
}

fn resolve_program(ctx: &Context, program: &str) -> Resolution {
    let candidates: Vec<String> = if program.starts_with('/') {
        vec![program.to_string()]
    } else {
        EXEC_SEARCH
            .iter()
            .map(|d| format!("{d}/{program}"))
            .collect()
    };
    let in_image = |p: &str| {
        ctx.image
            .resolve(p)
            .is_some_and(|r| ctx.image.get(&r).is_some_and(|e| e.is_file()))
    };
    for c in &candidates {
        for a in aliases(c, false) {
            if in_image(&a) || ctx.target.binaries.contains(&a) {
                return Resolution::Found;
            }
        }
    }
    for c in &candidates {
        for a in aliases(c, true) {
            if !a.starts_with("/usr/bin/") {
                continue;
            }
            if in_image(&a) {
                // The image ships the program in bin but the unit calls it through sbin.
                return if ctx.target.sbin_merged && program.starts_with('/') {
                    Resolution::ViaSbinMerge(a)
                } else if !ctx.target.sbin_merged
                    && ctx.target.version.is_some()
                    && program.starts_with("/usr/sbin/")
                {
                    // A Flatcar release from before the sbin merge: /usr/sbin is a real
                    // directory and the program is not in it (keepalived's 203/EXEC).
                    Resolution::Missing
                } else {
                    Resolution::Found
                };
            }
            if ctx.target.binaries.contains(&a) {
                return Resolution::Found;
            }
        }
    }
    Resolution::Missing
}
