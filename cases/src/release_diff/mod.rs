//! Release diffs: what a release changed against the one before it.
//!
//! The bakery's worst regressions were invisible in the new image alone: containerd 1.7.29
//! dropped `LimitNOFILE=` and pods died of "Too many open files" (flatcar/Flatcar#1956), a
//! release lost a binary or an arch. A diff compares two images (or two releases of a store,
//! every arch and transfer file) and calls the changes that take something away from a host
//! regressions: errors unless the extension's manifest accepts them by name. Everything else
//! it shows.
//!
//! `inventory.rs` reads what an image holds; `units.rs` how systemd reads a unit and its
//! limits; this file holds the rules and the comparisons.

pub mod inventory;
pub mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sysext_builder::Arch;
use sysext_builder::errors::ImageError;
use sysext_builder::image::Image;
use sysext_builder::unitfile::IniFile;

use crate::lint::{Rule, Severity};
use inventory::Inventory;
use units::Limit;

macro_rules! rule {
    ($name:ident, $id:literal, $sev:ident, $summary:literal) => {
        pub const $name: Rule = Rule {
            id: $id,
            severity: Severity::$sev,
            summary: $summary,
            reference: "sysext-test release diff",
        };
    };
}

rule!(
    LIMIT_LOWERED,
    "diff/limit-lowered",
    Error,
    "a unit's Limit* allows less than the previous release's (a removed limit falls to systemd's default)"
);
rule!(
    UNIT_LOST,
    "diff/unit-lost",
    Error,
    "a unit the previous release shipped is gone"
);
rule!(
    BINARY_LOST,
    "diff/binary-lost",
    Error,
    "an executable the previous release shipped is gone"
);
rule!(
    ARCH_LOST,
    "diff/arch-lost",
    Error,
    "an architecture the previous release had is gone (no image, other ELF machine, or ARCHITECTURE=)"
);
rule!(
    NO_LONGER_STARTED,
    "diff/no-longer-started",
    Error,
    "a unit the previous release started at boot (.wants, .upholds, Upholds=) no longer is"
);
rule!(
    UNIT_PROPERTY,
    "diff/unit-property",
    Info,
    "a unit's property changed"
);
rule!(
    DROPIN_ADDED,
    "diff/dropin-added",
    Info,
    "a unit got a drop-in"
);
rule!(
    DROPIN_LOST,
    "diff/dropin-lost",
    Warning,
    "a unit lost a drop-in"
);
rule!(
    INTERPRETER,
    "diff/binary-interpreter",
    Warning,
    "a binary's ELF interpreter changed"
);
rule!(
    LIBRARIES,
    "diff/binary-libraries",
    Info,
    "a binary needs other libraries"
);
rule!(
    PATHS_REMOVED,
    "diff/paths-removed",
    Info,
    "files the previous release shipped are gone"
);
rule!(
    RELEASE_FIELD,
    "diff/release-field",
    Info,
    "an extension-release field changed"
);
rule!(
    TRANSFER_FIELD,
    "diff/transfer-field",
    Info,
    "a transfer file's field changed"
);
rule!(
    CURRENT_SYMLINK_MOVED,
    "diff/current-symlink-moved",
    Error,
    "a transfer file's CurrentSymlink= names another link than the previous release's: hosts end with two"
);
rule!(
    TRANSFER_LOST,
    "diff/transfer-lost",
    Warning,
    "a transfer file the previous release had is gone"
);

/// Every diff rule, for `diff --list-rules` and the docs.
pub const RULES: &[&Rule] = &[
    &LIMIT_LOWERED,
    &UNIT_LOST,
    &BINARY_LOST,
    &ARCH_LOST,
    &NO_LONGER_STARTED,
    &UNIT_PROPERTY,
    &DROPIN_ADDED,
    &DROPIN_LOST,
    &INTERPRETER,
    &LIBRARIES,
    &PATHS_REMOVED,
    &RELEASE_FIELD,
    &TRANSFER_FIELD,
    &CURRENT_SYMLINK_MOVED,
    &TRANSFER_LOST,
];

/// One change between two releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub rule: &'static str,
    pub severity: Severity,
    /// What changed, the way an acceptance names it: `containerd.service:LimitNOFILE`,
    /// `/usr/bin/ctr`, `arm64`, `ARCHITECTURE`, `containerd.conf:Target.Path`.
    pub subject: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub message: String,
    /// Why the manifest accepts this regression, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
}

impl Change {
    fn new(rule: &Rule, subject: impl Into<String>, message: impl Into<String>) -> Change {
        Change {
            rule: rule.id,
            severity: rule.severity,
            subject: subject.into(),
            old: None,
            new: None,
            message: message.into(),
            accepted: None,
        }
    }

    fn values(mut self, old: Option<&str>, new: Option<&str>) -> Change {
        self.old = old.map(str::to_string);
        self.new = new.map(str::to_string);
        self
    }

    /// An error no acceptance covers.
    pub fn is_regression(&self) -> bool {
        self.severity == Severity::Error && self.accepted.is_none()
    }
}

/// A regression the manifest accepts: `rule` alone accepts every change of that rule,
/// with `subject` only that one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    pub rule: String,
    #[serde(default)]
    pub subject: Option<String>,
    /// Why it is fine (shown beside the change).
    #[serde(default)]
    pub why: Option<String>,
}

impl std::str::FromStr for Acceptance {
    type Err = String;

    /// `RULE` or `RULE:SUBJECT` (`diff/limit-lowered:containerd.service:LimitNOFILE`).
    fn from_str(s: &str) -> Result<Acceptance, String> {
        let (rule, subject) = match s.split_once(':') {
            Some((r, sub)) => (r, Some(sub.to_string())),
            None => (s, None),
        };
        if !RULES.iter().any(|r| r.id == rule) {
            return Err(format!(
                "'{rule}' is not a diff rule; `sysext-test diff --list-rules` lists them"
            ));
        }
        Ok(Acceptance {
            rule: rule.to_string(),
            subject,
            why: None,
        })
    }
}

/// Two releases compared: which two, and what changed.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub extension: String,
    pub old: String,
    pub new: String,
    /// The arch compared, or `all` for what spans arches (an arch lost, transfer files).
    pub arch: String,
    pub changes: Vec<Change>,
}

impl DiffReport {
    pub fn regressions(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.is_regression())
    }

    /// Marks the changes `accept` covers.
    pub fn accept(&mut self, accept: &[Acceptance]) {
        for c in &mut self.changes {
            if let Some(a) = accept
                .iter()
                .find(|a| a.rule == c.rule && a.subject.as_ref().is_none_or(|s| *s == c.subject))
            {
                c.accepted = Some(a.why.clone().unwrap_or_else(|| "by name".into()));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{}: {error}; pass two images, two release folders, or a store", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{}: holds no NAME-VERSION-ARCH.raw image; pass two images, two release folders, or a store",
        path.display()
    )]
    NoImages { path: PathBuf },
}

/// Compares two images' contents.
pub fn images(old: &Path, new: &Path) -> Result<Vec<Change>, DiffError> {
    let (o, n) = (Image::open(old)?, Image::open(new)?);
    Ok(inventories(&Inventory::read(&o), &Inventory::read(&n)))
}

/// Compares two inventories: binaries, units, what starts at boot, paths, release fields.
pub fn inventories(old: &Inventory, new: &Inventory) -> Vec<Change> {
    let mut out = Vec::new();
    binaries(old, new, &mut out);
    units(old, new, &mut out);
    for unit in old.started_at_boot.difference(&new.started_at_boot) {
        out.push(Change::new(
            &NO_LONGER_STARTED,
            unit.as_str(),
            format!("{unit} was pulled in at boot by the previous release and no longer is: nothing starts it after a merge or a reboot"),
        ));
    }
    for unit in new.started_at_boot.difference(&old.started_at_boot) {
        out.push(Change::new(
            &UNIT_PROPERTY,
            format!("{unit}:started-at-boot"),
            format!("{unit} is now pulled in at boot"),
        ));
    }
    removed_paths(old, new, &mut out);
    release_fields(old, new, &mut out);
    out
}

fn binaries(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    for (path, was) in &old.executables {
        let Some(now) = new.executables.get(path) else {
            out.push(Change::new(
                &BINARY_LOST,
                path.as_str(),
                format!("{path} is gone (the previous release shipped it executable); a script or unit that runs it fails with 'No such file or directory'"),
            ).values(Some("executable"), new.paths.get(path).map(String::as_str).or(Some("absent"))));
            continue;
        };
        let (Some(was), Some(now)) = (was, now) else {
            continue;
        };
        if was.arch != now.arch {
            out.push(
                Change::new(
                    &ARCH_LOST,
                    path.as_str(),
                    format!(
                        "{path} was built for {} and is now built for {}",
                        was.arch, now.arch
                    ),
                )
                .values(Some(&was.arch), Some(&now.arch)),
            );
        }
        if was.interpreter != now.interpreter {
            let show = |i: &Option<String>| i.clone().unwrap_or_else(|| "none (static)".into());
            out.push(
                Change::new(
                    &INTERPRETER,
                    path.as_str(),
                    format!(
                        "{path}: interpreter {} -> {}",
                        show(&was.interpreter),
                        show(&now.interpreter)
                    ),
                )
                .values(Some(&show(&was.interpreter)), Some(&show(&now.interpreter))),
            );
        }
        let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
            (was.needed.iter().collect(), now.needed.iter().collect());
        if a != b {
            let added: Vec<&str> = b.difference(&a).map(|s| s.as_str()).collect();
            let gone: Vec<&str> = a.difference(&b).map(|s| s.as_str()).collect();
            out.push(
                Change::new(
                    &LIBRARIES,
                    path.as_str(),
                    format!(
                        "{path}: needs {} more, {} no longer",
                        list_or_none(&added),
                        list_or_none(&gone)
                    ),
                )
                .values(Some(&was.needed.join(" ")), Some(&now.needed.join(" "))),
            );
        }
    }
}

fn list_or_none(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn units(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    for (name, was) in &old.units {
        let now = new.units.get(name);
        if let Some((path, _)) = &was.file
            && now.is_none_or(|n| n.file.is_none())
        {
            out.push(Change::new(
                &UNIT_LOST,
                name.as_str(),
                format!("{name} ({path}) is gone: whatever started or needed it fails with 'Unit {name} not found'"),
            ));
            continue;
        }
        let Some(now) = now else {
            for d in was.dropins.keys() {
                out.push(dropin_lost(name, d));
            }
            continue;
        };
        for d in was.dropins.keys().filter(|d| !now.dropins.contains_key(*d)) {
            out.push(dropin_lost(name, d));
        }
        for d in now.dropins.keys().filter(|d| !was.dropins.contains_key(*d)) {
            out.push(Change::new(
                &DROPIN_ADDED,
                format!("{name}:{d}"),
                format!("{name} gets a new drop-in {name}.d/{d}"),
            ));
        }
        properties(name, &was.effective(), &now.effective(), out);
    }
    for (name, now) in &new.units {
        if !old.units.contains_key(name) {
            for d in now.dropins.keys() {
                out.push(Change::new(
                    &DROPIN_ADDED,
                    format!("{name}:{d}"),
                    format!("{name} gets a new drop-in {name}.d/{d}"),
                ));
            }
        }
    }
}

fn dropin_lost(unit: &str, dropin: &str) -> Change {
    Change::new(
        &DROPIN_LOST,
        format!("{unit}:{dropin}"),
        format!("{unit}.d/{dropin} is gone: what it set on {unit} is back to the unit's own"),
    )
}

/// Every property that differs; a `Limit*` that allows less (or is gone, where systemd's
/// default is lower) is a regression.
fn properties(
    unit: &str,
    was: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    out: &mut Vec<Change>,
) {
    let keys: BTreeSet<&String> = was.keys().chain(now.keys()).collect();
    for key in keys {
        let (o, n) = (was.get(key), now.get(key));
        if o == n {
            continue;
        }
        let short = key.rsplit_once('.').map_or(key.as_str(), |(_, k)| k);
        let subject = format!("{unit}:{short}");
        let show = |v: Option<&String>| match v {
            Some(v) => format!("{short}={v}"),
            None => format!("{short} unset"),
        };
        if short.starts_with("Limit")
            && let Some(o) = o
        {
            let old_limit = Limit::parse(short, o);
            let new_limit = match n {
                Some(n) => Limit::parse(short, n),
                None => Limit::default_for(short),
            };
            let lowered = match (old_limit, new_limit, n) {
                (Some(ol), Some(nl), _) => nl.lower_than(&ol),
                // Gone, and systemd's default depends on the host: it can only be lower
                // than anything a unit asked for.
                (Some(_), None, None) => true,
                _ => false,
            };
            if lowered {
                let new_desc = match n {
                    Some(n) => format!("{short}={n}"),
                    None => match Limit::default_for(short) {
                        Some(d) => {
                            format!("{short} unset (systemd's default, {}:{})", d.soft, d.hard)
                        }
                        None => format!("{short} unset (the manager's default)"),
                    },
                };
                out.push(
                    Change::new(
                        &LIMIT_LOWERED,
                        subject,
                        format!("{unit}: {short}={o} lowered to {new_desc}"),
                    )
                    .values(Some(o), Some(n.map_or("unset", String::as_str))),
                );
                continue;
            }
        }
        out.push(
            Change::new(
                &UNIT_PROPERTY,
                subject,
                format!("{unit}: {} -> {}", show(o), show(n)),
            )
            .values(o.map(String::as_str), n.map(String::as_str)),
        );
    }
}

/// Paths gone that no other rule reports (executables and unit files have their own), in
/// one change: how many, and the first few.
fn removed_paths(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let unit_files: BTreeSet<&str> = old
        .units
        .values()
        .filter_map(|u| u.file.as_ref().map(|(p, _)| p.as_str()))
        .collect();
    let gone: Vec<&str> = old
        .paths
        .keys()
        .filter(|p| !new.paths.contains_key(*p))
        .filter(|p| !old.executables.contains_key(*p) && !unit_files.contains(p.as_str()))
        .filter(|p| !p.starts_with("/usr/lib/extension-release.d/"))
        .map(String::as_str)
        .collect();
    if gone.is_empty() {
        return;
    }
    let first: Vec<&str> = gone.iter().take(8).copied().collect();
    let more = gone.len().saturating_sub(first.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    out.push(Change::new(
        &PATHS_REMOVED,
        format!("{} path(s)", gone.len()),
        format!("{} path(s) gone: {}{tail}", gone.len(), first.join(", ")),
    ));
}

fn release_fields(old: &Inventory, new: &Inventory, out: &mut Vec<Change>) {
    let (o, n): (BTreeMap<_, _>, BTreeMap<_, _>) = (
        old.release.iter().cloned().collect(),
        new.release.iter().cloned().collect(),
    );
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for key in keys {
        let (a, b) = (o.get(key), n.get(key));
        if a == b {
            continue;
        }
        let show = |v: Option<&String>| v.map_or("unset".to_string(), |v| format!("{v:?}"));
        let rule = if key == "ARCHITECTURE" && a.is_some() {
            &ARCH_LOST
        } else {
            &RELEASE_FIELD
        };
        out.push(
            Change::new(
                rule,
                key.as_str(),
                format!("extension-release {key}: {} -> {}", show(a), show(b)),
            )
            .values(a.map(String::as_str), b.map(String::as_str)),
        );
    }
}

/// A running unit's limits before and after an update (`systemctl show` of each): every
/// one that allows less is a regression, named with both values.
pub fn live_limits(unit: &str, before: &str, after: &str) -> Vec<Change> {
    let (b, a) = (units::shown_limits(before), units::shown_limits(after));
    let show = |l: &Limit| {
        let one = |v: u128| {
            if v == u128::MAX {
                "infinity".to_string()
            } else {
                v.to_string()
            }
        };
        format!("{}:{}", one(l.soft), one(l.hard))
    };
    b.iter()
        .filter_map(|(k, was)| {
            let now = a.get(k)?;
            now.lower_than(was).then(|| {
                Change::new(
                    &LIMIT_LOWERED,
                    format!("{unit}:{k}"),
                    format!(
                        "{unit} runs with {k}={} after the update, {} before (soft:hard, as systemctl show reports them)",
                        show(now),
                        show(was)
                    ),
                )
                .values(Some(&show(was)), Some(&show(now)))
            })
        })
        .collect()
}

/// Compares two transfer files field by field (`Section.Key`).
pub fn transfer(name: &str, old: &Path, new: &Path) -> Result<Vec<Change>, DiffError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| IniFile::parse(&t))
            .map_err(|error| DiffError::Io {
                path: p.to_path_buf(),
                error,
            })
    };
    let (o, n) = (read(old)?, read(new)?);
    let fields = |f: &IniFile| -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in &f.assignments {
            m.entry(format!("{}.{}", a.section, a.key))
                .or_default()
                .push(a.value.clone());
        }
        m.into_iter().map(|(k, v)| (k, v.join(" ; "))).collect()
    };
    let (a, b) = (fields(&o), fields(&n));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        let show = |v: Option<&String>| v.map_or("unset".to_string(), |v| v.clone());
        if key == "Target.CurrentSymlink"
            && let (Some(was), Some(now)) = (x, y)
        {
            out.push(
                Change::new(
                    &CURRENT_SYMLINK_MOVED,
                    format!("{name}:{key}"),
                    format!(
                        "{name}: CurrentSymlink={was} became {now}: a host set up with the previous release links {was}, the update adds {now} beside it, and at the next boot systemd-sysext finds two images of one extension and refuses the merge (sysext-bakery#140)"
                    ),
                )
                .values(Some(was), Some(now)),
            );
            continue;
        }
        out.push(
            Change::new(
                &TRANSFER_FIELD,
                format!("{name}:{key}"),
                format!("{name} {key}: {} -> {}", show(x), show(y)),
            )
            .values(x.map(String::as_str), y.map(String::as_str)),
        );
    }
    Ok(out)
}

/// One side of a diff: a release's images by arch and its transfer files by file name.
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub extension: String,
    pub version: String,
    pub images: BTreeMap<Arch, PathBuf>,
    pub transfers: BTreeMap<String, PathBuf>,
}

impl Side {
    /// A release folder (images named `NAME-VERSION-ARCH.raw`, transfer files beside them)
    /// or one image.
    pub fn read(path: &Path) -> Result<Side, DiffError> {
        let io = |error| DiffError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut side = Side::default();
        let files: Vec<PathBuf> = if path.is_dir() && !looks_like_image_tree(path) {
            let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else {
            std::fs::metadata(path).map_err(io)?;
            vec![path.to_path_buf()]
        };
        for f in files {
            let file = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if file.ends_with(".conf") || file.ends_with(".transfer") {
                side.transfers.insert(file, f);
                continue;
            }
            match sysext_builder::naming::triple(&file, &[]) {
                Some(t) => {
                    side.extension = t.name;
                    side.version = t.version;
                    side.images.insert(t.arch, f);
                }
                // One image named some other way: compared as it is, for the arch it says.
                None if path == f => {
                    side.extension = sysext_builder::naming::image_name(&file, f.is_dir());
                    side.version = "-".into();
                    let arch = sysext_builder::naming::arch_of(&file)
                        .or_else(Arch::host)
                        .unwrap_or(Arch::ALL[0]);
                    side.images.insert(arch, f);
                }
                None => {}
            }
        }
        if side.images.is_empty() {
            return Err(DiffError::NoImages {
                path: path.to_path_buf(),
            });
        }
        Ok(side)
    }
}

/// A directory that is an extension tree (it has `usr/` or `opt/`), not a release folder.
fn looks_like_image_tree(dir: &Path) -> bool {
    dir.join("usr").is_dir() || dir.join("opt").is_dir()
}

/// Compares two releases: one report per arch both have (their images), and one for what
/// spans arches (arches lost, transfer files).
pub fn releases(old: &Side, new: &Side) -> Result<Vec<DiffReport>, DiffError> {
    let report = |arch: &str, changes| DiffReport {
        extension: new.extension.clone(),
        old: old.version.clone(),
        new: new.version.clone(),
        arch: arch.to_string(),
        changes,
    };
    let mut reports = Vec::new();
    let single = old.images.len() == 1 && new.images.len() == 1;
    if single {
        // Two images: compared whatever arch their names say (an arch change shows up in
        // the binaries and ARCHITECTURE=).
        let (oa, op) = old.images.iter().next().expect("one image");
        let (na, np) = new.images.iter().next().expect("one image");
        let mut changes = images(op, np)?;
        if oa != na {
            changes.insert(
                0,
                Change::new(
                    &ARCH_LOST,
                    oa.systemd_name(),
                    format!("the previous release was for {oa}, this one is for {na}"),
                )
                .values(Some(oa.systemd_name()), Some(na.systemd_name())),
            );
        }
        reports.push(report(na.systemd_name(), changes));
    } else {
        for (arch, op) in &old.images {
            if let Some(np) = new.images.get(arch) {
                reports.push(report(arch.systemd_name(), images(op, np)?));
            }
        }
    }
    let mut spanning = Vec::new();
    if !single {
        for arch in old.images.keys().filter(|a| !new.images.contains_key(*a)) {
            spanning.push(arch_lost(old, new, *arch));
        }
    }
    spanning.extend(transfers(old, new)?);
    if !spanning.is_empty() || reports.is_empty() {
        reports.push(report("all", spanning));
    }
    Ok(reports)
}

/// `arch`'s image is in `old` and not in `new`.
fn arch_lost(old: &Side, new: &Side, arch: Arch) -> Change {
    Change::new(
        &ARCH_LOST,
        arch.systemd_name(),
        format!(
            "{} {} has no {arch} image ({} had one): {arch} hosts stay on the old release",
            new.extension, new.version, old.version
        ),
    )
}

/// The transfer files of two releases, by file name: fields changed, files gone.
fn transfers(old: &Side, new: &Side) -> Result<Vec<Change>, DiffError> {
    let mut out = Vec::new();
    for (file, op) in &old.transfers {
        match new.transfers.get(file) {
            Some(np) => out.extend(transfer(file, op, np)?),
            None => out.push(Change::new(
                &TRANSFER_LOST,
                file.as_str(),
                format!("{file} is gone: hosts that installed it keep the previous release's"),
            )),
        }
    }
    Ok(out)
}

/// Each release of each extension of a store with the one before it, as (older, newer).
pub fn store_pairs(store: &sysext_builder::store::Store) -> Vec<(Side, Side)> {
    let mut out = Vec::new();
    for ext in &store.extensions {
        let side = |r: &sysext_builder::store::Release| Side {
            extension: ext.name.clone(),
            version: r.version.clone(),
            images: r.images.clone(),
            transfers: ext
                .confs_of(&r.version)
                .into_iter()
                .filter_map(|p| {
                    p.file_name()
                        .map(|n| (n.to_string_lossy().into_owned(), p.to_path_buf()))
                })
                .collect(),
        };
        for pair in ext.releases.windows(2) {
            out.push((side(&pair[0]), side(&pair[1])));
        }
    }
    out
}

/// Every release of a store against its predecessor.
pub fn store(store: &sysext_builder::store::Store) -> Result<Vec<DiffReport>, DiffError> {
    let mut out = Vec::new();
    for (old, new) in store_pairs(store) {
        out.extend(releases(&old, &new)?);
    }
    Ok(out)
}

/// One arch of two releases: its images compared (or the arch lost) and the transfer
/// files, which every arch's hosts install. None when only the newer release has the arch.
pub fn release_arch(old: &Side, new: &Side, arch: Arch) -> Result<Option<DiffReport>, DiffError> {
    let Some(op) = old.images.get(&arch) else {
        return Ok(None);
    };
    let mut changes = match new.images.get(&arch) {
        Some(np) => images(op, np)?,
        None => vec![arch_lost(old, new, arch)],
    };
    changes.extend(transfers(old, new)?);
    Ok(Some(DiffReport {
        extension: new.extension.clone(),
        old: old.version.clone(),
        new: new.version.clone(),
        arch: arch.systemd_name().to_string(),
        changes,
    }))
}

#[cfg(test)]
mod tests;
