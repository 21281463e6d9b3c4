//! systemd units shipped in the image: they parse, their programs exist, their enablement
//! links and drop-ins do what the author thinks, and systemd will notice them after a merge
//! (rule book D5, G7; bakery bugs: keepalived's /usr/sbin ExecStart, bird's `.service` drop-in).

use sysext_builder::flatcar_release::MergeModel;
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
    summary: "units ship but EXTENSION_RELOAD_MANAGER=1 is not set: after a merge their .wants links and Upholds= take no effect until a daemon-reload",
    reference: "G7",
};
pub const WANTS_AT_BOOT_ONLY: Rule = Rule {
    id: "unit/wants-only-at-boot",
    severity: Severity::Warning,
    summary: "a unit started only by a .wants/.requires link, on a target that merges from the initrd (no ensure-sysext): it starts at boot, but a live refresh (an update applied without reboot) does not start it; Upholds= does",
    reference: "flatcar.md (how extensions merge at boot)",
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

pub const EXEC_NOT_EXECUTABLE: Rule = Rule {
    id: "unit/exec-not-executable",
    severity: Severity::Error,
    summary: "an Exec*= program the image ships cannot be executed: no execute bit, an ELF for another arch or without its loader (status=203/EXEC)",
    reference: "sysext-bakery 59a0cde (wasmcloud)",
};
pub const EXEC_INTERPRETER: Rule = Rule {
    id: "unit/exec-interpreter-missing",
    severity: Severity::Error,
    summary: "an Exec*= script's #! interpreter is in neither the image nor the target (status=203/EXEC)",
    reference: "execve(2)",
};
pub const NO_EXEC_START: Rule = Rule {
    id: "unit/no-exec-start",
    severity: Severity::Error,
    summary: "a service has no ExecStart=, ExecStop= or SuccessAction= (or several ExecStart= without Type=oneshot): systemd refuses to load it",
    reference: "systemd.service(5)",
};
pub const UNKNOWN_USER: Rule = Rule {
    id: "unit/unknown-user",
    severity: Severity::Error,
    summary: "User=/SocketUser= names a user the target lacks (status=217/USER); a warning when the target's users are not known",
    reference: "systemd.exec(5)",
};
pub const UNKNOWN_GROUP: Rule = Rule {
    id: "unit/unknown-group",
    severity: Severity::Error,
    summary: "Group=/SupplementaryGroups=/SocketGroup= names a group the target lacks (status=216/GROUP); a warning when the target's groups are not known",
    reference: "systemd.exec(5)",
};

pub const RULES: &[&Rule] = &[
    &SYNTAX,
    &EXEC_MISSING,
    &EXEC_NOT_EXECUTABLE,
    &EXEC_INTERPRETER,
    &NO_EXEC_START,
    &UNKNOWN_USER,
    &UNKNOWN_GROUP,
    &EXEC_SBIN,
    &DROPIN_SUFFIX,
    &DANGLING_LINK,
    &MISSING_DEP,
    &NO_RELOAD,
    &WANTS_AT_BOOT_ONLY,
    &EARLY,
    &IN_ETC,
];

/// Unit directories a sysext can populate (both under /usr, so merged).
pub use sysext_builder::image::facts::UNIT_DIRS;
pub const EXEC_KEYS: &[&str] = &[
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

    for (path, name) in &units {
        if image.get(path).is_some_and(|e| e.is_file()) {
            check_unit_text(ctx, path, &mut out);
            let view = UnitView::read(image, path, name);
            check_exec_start(&view, &mut out);
            check_accounts(ctx, &view, &mut out);
        }
    }

    if ctx.target.merge_model == Some(MergeModel::Initrd) {
        for (link, unit) in wanted_not_upheld(image) {
            out.push(Finding::new(
                &WANTS_AT_BOOT_ONLY,
                link.as_str(),
                format!(
                    "{unit} is started only by this link: {} merges extensions in the initrd and has no ensure-sysext, so it starts at boot, but after a live 'systemd-sysext refresh' (a sysupdate applied without a reboot) nothing starts it. Uphold it from its target instead (a multi-user.target.d/*.conf drop-in with Upholds={unit}, as the bakery's images do), or reboot after updates",
                    ctx.target.describe()
                ),
            ));
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
                    "the image ships {} unit(s) (e.g. {}) but not EXTENSION_RELOAD_MANAGER=1: after a merge the manager is not reloaded, so the image's .wants links and Upholds= start nothing until 'systemctl daemon-reload' (a direct 'systemctl start' still finds the unit). Add EXTENSION_RELOAD_MANAGER=1",
                    units.len(),
                    units[0].1
                ),
            ));
        }
    }
    out
}

/// `*.wants/` and `*.requires/` links of the image, with the unit each starts, for units
/// nothing in the image upholds (an `*.upholds/` link or `Upholds=` in a drop-in): what
/// starts only when its target starts.
fn wanted_not_upheld(image: &Image) -> Vec<(String, String)> {
    let mut wanted = Vec::new();
    let mut upheld = Vec::new();
    for e in image.entries() {
        for dir in UNIT_DIRS {
            let Some((sub, name)) = e
                .path
                .strip_prefix(dir)
                .and_then(|r| r.strip_prefix('/'))
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            if name.contains('/') {
                continue;
            }
            if matches!(e.kind, Kind::Symlink(_)) && is_unit_name(name) {
                if sub.ends_with(".wants") || sub.ends_with(".requires") {
                    wanted.push((e.path.clone(), name.to_string()));
                } else if sub.ends_with(".upholds") {
                    upheld.push(name.to_string());
                }
            }
            if sub.ends_with(".d")
                && name.ends_with(".conf")
                && let Ok(bytes) = image.read(&e.path, 1 << 20)
            {
                let ini = IniFile::parse(&String::from_utf8_lossy(&bytes));
                for a in ini.all("Unit", "Upholds") {
                    upheld.extend(a.value.split_whitespace().map(str::to_string));
                }
            }
        }
    }
    wanted.retain(|(_, unit)| !upheld.contains(unit));
    wanted
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
        // `-` makes systemd record the command's failure and carry on (a missing program is
        // skipped outright), so what would fail the unit only weakens it.
        let ignored = a
            .value
            .trim_start()
            .trim_start_matches(['@', ':', '+', '!', '|'])
            .starts_with('-');
        let fails = |f: Finding| {
            if ignored {
                f.with_severity(Severity::Warning).with_message_suffix(
                    "; the '-' prefix makes systemd ignore this failure, so the unit runs without the command",
                )
            } else {
                f
            }
        };
        match resolve_program(ctx, &program) {
            Resolution::Found => {}
            Resolution::InImage(at) => {
                if let Some(f) = check_shipped_program(ctx, path, a, &program, &at) {
                    out.push(fails(f));
                }
            }
            Resolution::ViaSbinMerge(real) => {
                out.push(Finding::new(
                    &EXEC_SBIN,
                    path,
                    format!(
                        "line {}: {}={program} exists only as {real}; it works on Flatcar since the /usr/sbin merge (2024-09) and fails with 203/EXEC on older releases. Use {real}",
                        a.line, a.key
                    ),
                ));
                let shipped = real.trim_start_matches('/');
                if let Some(f) = check_shipped_program(ctx, path, a, &program, shipped) {
                    out.push(fails(f));
                }
            }
            Resolution::Missing => out.push(fails(Finding::new(
                &EXEC_MISSING,
                path,
                format!(
                    "line {}: {}={program}: no such program in the image or the {} base, so the unit fails with status=203/EXEC. Ship it or fix the path",
                    a.line,
                    a.key,
                    if ctx.target.kind == TargetKind::Flatcar { "Flatcar" } else { "generic" }
                ),
            ))),
        }
    }
}

/// A program the image ships for an Exec*= line: execve(2) needs its execute bit, and a
/// script needs its `#!` interpreter on the merged host.
fn check_shipped_program(
    ctx: &Context,
    path: &str,
    a: &sysext_builder::unitfile::Assignment,
    program: &str,
    at: &str,
) -> Option<Finding> {
    let entry = ctx.image.get(at)?;
    if entry.mode & 0o111 == 0 {
        return Some(Finding::new(
            &EXEC_NOT_EXECUTABLE,
            path,
            format!(
                "line {}: {}={program} is mode {:04o} in the image: execve fails with EACCES and the unit with status=203/EXEC. Ship it with mode 0755",
                a.line, a.key, entry.mode
            ),
        ));
    }
    if let Some(why) = super::binaries::cannot_exec(ctx, at) {
        return Some(Finding::new(
            &EXEC_NOT_EXECUTABLE,
            path,
            format!(
                "line {}: {}={program} is {why}: execve fails and the unit with status=203/EXEC",
                a.line, a.key
            ),
        ));
    }
    let head = ctx.image.read(at, 256).ok()?;
    let line = head.strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line);
    let interpreter = line.lines().next()?.split_whitespace().next()?.to_string();
    if !interpreter.starts_with('/') {
        return None;
    }
    let in_image = aliases(&interpreter, ctx.target.sbin_merged)
        .iter()
        .any(|p| {
            ctx.image
                .resolve(p)
                .is_some_and(|r| ctx.image.get(&r).is_some_and(|e| e.is_file()))
        });
    if in_image || ctx.target.has_binary(&interpreter) {
        return None;
    }
    Some(Finding::new(
        &EXEC_INTERPRETER,
        path,
        format!(
            "line {}: {}={program} is a script for {interpreter}, which is in neither the image nor the {} base: execve fails with ENOENT and the unit with status=203/EXEC. Ship the interpreter or fix the #! line",
            a.line,
            a.key,
            if ctx.target.kind == TargetKind::Flatcar {
                "Flatcar"
            } else {
                "generic"
            }
        ),
    ))
}

/// A unit as systemd loads it from the image: its file, then the `.conf` drop-ins in its
/// `NAME.d/` directories, in file-name order (later assignments win).
struct UnitView {
    name: String,
    files: Vec<(String, IniFile)>,
}

impl UnitView {
    fn read(image: &Image, path: &str, name: &str) -> UnitView {
        let parse = |p: &str| {
            image
                .read(p, 1 << 20)
                .ok()
                .map(|b| IniFile::parse(&String::from_utf8_lossy(&b)))
        };
        let mut files: Vec<(String, IniFile)> = parse(path)
            .map(|i| vec![(path.to_string(), i)])
            .unwrap_or_default();
        let mut dropins: Vec<(String, String)> = image
            .entries()
            .iter()
            .filter(|e| e.is_file() && e.path.ends_with(".conf"))
            .filter_map(|e| {
                UNIT_DIRS.iter().find_map(|d| {
                    let rest = e.path.strip_prefix(d)?.strip_prefix('/')?;
                    let (sub, file) = rest.split_once('/')?;
                    (sub == format!("{name}.d") && !file.contains('/'))
                        .then(|| (file.to_string(), e.path.clone()))
                })
            })
            .collect();
        dropins.sort();
        for (_, p) in dropins {
            if let Some(i) = parse(&p) {
                files.push((p, i));
            }
        }
        UnitView {
            name: name.to_string(),
            files,
        }
    }

    /// Every assignment of `key` in `section`, in load order, with the file it is in.
    fn all<'a>(
        &'a self,
        section: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a sysext_builder::unitfile::Assignment)> {
        self.files
            .iter()
            .flat_map(move |(p, i)| i.all(section, key).map(move |a| (p.as_str(), a)))
    }

    /// The values of a list key after systemd's rule that an empty assignment resets it.
    fn list<'a>(
        &'a self,
        section: &'a str,
        key: &'a str,
    ) -> Vec<(&'a str, &'a sysext_builder::unitfile::Assignment)> {
        let mut out = Vec::new();
        for (p, a) in self.all(section, key) {
            if a.value.trim().is_empty() {
                out.clear();
            } else {
                out.push((p, a));
            }
        }
        out
    }

    /// Every command line has the `-` prefix, so systemd carries on past any command's
    /// failure, the accounts' included (the service is active, its status 216 or 217).
    fn ignores_every_failure(&self, section: &str) -> bool {
        let mut any = false;
        for key in EXEC_KEYS {
            for (_, a) in self.list(section, key) {
                any = true;
                let v = a
                    .value
                    .trim_start()
                    .trim_start_matches(['@', ':', '+', '!', '|']);
                if !v.starts_with('-') {
                    return false;
                }
            }
        }
        any
    }

    fn last<'a>(&'a self, section: &'a str, key: &'a str) -> Option<&'a str> {
        self.all(section, key).last().map(|(_, a)| a.value.trim())
    }
}

/// systemd refuses to load a service with nothing to run ("Service has no ExecStart=,
/// ExecStop=, or SuccessAction=. Refusing.") or with several ExecStart= lines when it is not
/// a oneshot: the unit is `bad-setting` and never starts.
fn check_exec_start(view: &UnitView, out: &mut Vec<Finding>) {
    if !view.name.ends_with(".service") || view.files.is_empty() {
        return;
    }
    let starts = view.list("Service", "ExecStart");
    let stops = view.list("Service", "ExecStop");
    let success = view.last("Unit", "SuccessAction").unwrap_or("");
    let main = view.files[0].0.as_str();
    if starts.is_empty() && stops.is_empty() && success.is_empty() {
        out.push(Finding::new(
            &NO_EXEC_START,
            main,
            format!(
                "{} has no ExecStart= in the unit or its .conf drop-ins: systemd says \"Service has no ExecStart=, ExecStop=, or SuccessAction=. Refusing.\" and never starts it",
                view.name
            ),
        ));
        return;
    }
    let oneshot = view.last("Service", "Type") == Some("oneshot");
    if starts.len() > 1 && !oneshot {
        let (p, a) = starts[1];
        out.push(Finding::new(
            &NO_EXEC_START,
            p,
            format!(
                "line {}: a second ExecStart= for {}, which is not Type=oneshot: systemd refuses to load it (\"more than one ExecStart= setting\"). Use one, or Type=oneshot",
                a.line, view.name
            ),
        ));
    }
}

/// Users and groups the image itself creates through sysusers.d (`u NAME`, `g NAME`).
fn sysusers_accounts(image: &Image) -> (Vec<String>, Vec<String>) {
    let (mut users, mut groups) = (Vec::new(), Vec::new());
    for e in image.entries() {
        if !(e.is_file() && e.path.starts_with("usr/lib/sysusers.d/")) {
            continue;
        }
        let Ok(b) = image.read(&e.path, 1 << 20) else {
            continue;
        };
        for line in String::from_utf8_lossy(&b).lines() {
            let mut f = line.split_whitespace();
            match (f.next(), f.next()) {
                (Some("u") | Some("u!"), Some(n)) => {
                    users.push(n.to_string());
                    groups.push(n.to_string());
                }
                (Some("g"), Some(n)) => groups.push(n.to_string()),
                _ => {}
            }
        }
    }
    (users, groups)
}

/// The accounts a unit runs as must exist when it starts: systemd resolves `User=` (and a
/// socket's `SocketUser=`) or fails the unit with 217/USER, `Group=`,
/// `SupplementaryGroups=` and `SocketGroup=` or 216/GROUP. `DynamicUser=yes` allocates
/// them instead.
fn check_accounts(ctx: &Context, view: &UnitView, out: &mut Vec<Finding>) {
    let section = if view.name.ends_with(".socket") {
        "Socket"
    } else if view.name.ends_with(".service") {
        "Service"
    } else {
        return;
    };
    let dynamic = view.last(section, "DynamicUser").and_then(parse_bool) == Some(true);
    let ignored = view.ignores_every_failure(section);
    let (made_users, made_groups) = sysusers_accounts(ctx.image);
    let accounts = &ctx.target.accounts;
    let mut keys: Vec<(&str, bool)> = Vec::new();
    if !dynamic {
        keys.extend([("User", true), ("Group", false)]);
    }
    keys.push(("SupplementaryGroups", false));
    if section == "Socket" {
        keys.extend([("SocketUser", true), ("SocketGroup", false)]);
    }
    for (key, is_user) in keys {
        let assigned: Vec<(&str, &sysext_builder::unitfile::Assignment)> =
            if key == "SupplementaryGroups" {
                view.list(section, key)
            } else {
                view.all(section, key).last().into_iter().collect()
            };
        for (path, a) in assigned {
            for name in a.value.split_whitespace() {
                let numeric = name.chars().all(|c| c.is_ascii_digit());
                let (known, made) = if is_user {
                    (&accounts.users, &made_users)
                } else {
                    (&accounts.groups, &made_groups)
                };
                if numeric
                    || name.contains('%')
                    || known.contains(name)
                    || made.iter().any(|m| m == name)
                {
                    continue;
                }
                let (rule, status, what) = if is_user {
                    (&UNKNOWN_USER, "217/USER", "user")
                } else {
                    (&UNKNOWN_GROUP, "216/GROUP", "group")
                };
                let f = Finding::new(
                    rule,
                    path,
                    format!(
                        "line {}: {key}={name}: {}; the unit fails with status={status} where it is missing. Create it (sysusers.d, Ignition) or use DynamicUser=yes",
                        a.line,
                        if accounts.complete {
                            format!("the host has no {what} {name}")
                        } else {
                            format!(
                                "{name} is not a {what} every host has (give --host-passwd and --host-group to know)"
                            )
                        }
                    ),
                );
                out.push(if ignored {
                    f.with_severity(Severity::Warning).with_message_suffix(
                        "; every command has the '-' prefix, so systemd ignores the failure and the unit is active without running them",
                    )
                } else if accounts.complete {
                    f
                } else {
                    f.with_severity(Severity::Warning)
                });
            }
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
    /// The target provides it.
    Found,
    /// The image ships it, at this path (symlinks followed).
    InImage(String),
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
    let shipped = |p: &str| {
        ctx.image
            .resolve(p)
            .filter(|r| ctx.image.get(r).is_some_and(|e| e.is_file()))
    };
    let in_image = |p: &str| shipped(p).is_some();
    for c in &candidates {
        for a in aliases(c, false) {
            if let Some(at) = shipped(&a) {
                return Resolution::InImage(at);
            }
            if ctx.target.binaries.contains(&a) {
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
                    && ctx.target.sbin_known
                    && program.starts_with("/usr/sbin/")
                {
                    // A Flatcar release from before the sbin merge, or a host whose
                    // /usr/sbin is a real directory: the program is not in it
                    // (keepalived's 203/EXEC).
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
