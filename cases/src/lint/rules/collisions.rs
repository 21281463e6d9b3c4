//! Several extensions on one host: the same path in two of them, and who wins.
//!
//! systemd-sysext stacks every merged image in one overlay, in the order of their names
//! (the last on top), so of two copies of one path only the top one is seen. The bakery
//! has shipped exactly that: docker-buildx installed as `docker-compose` overwrote the
//! compose extension's binary (sysext-bakery#183), and on Azure an OEM extension hid the
//! kubernetes extension's `Upholds=` drop-in, so kubelet never started (sysext-bakery#50).
//! Two copies with the same bytes are fine (the bakery's docker and containerd both ship
//! `10-containerd-service.conf`): only copies that differ are findings.

use std::collections::BTreeMap;

use crate::lint::deployment::stacking_winner;
use crate::lint::finding::{Finding, Rule, Severity};

pub const SAME_PATH: Rule = Rule {
    id: "collision/same-path",
    severity: Severity::Error,
    summary: "two extensions ship the same path with different contents: only the one stacked last is seen",
    reference: "G2 (overlay stacking by image name); sysext-bakery#183",
};

pub const SAME_DROPIN: Rule = Rule {
    id: "collision/same-dropin",
    severity: Severity::Error,
    summary: "two extensions ship a drop-in of the same name for the same unit: the one stacked last hides the other's settings",
    reference: "G2; systemd.unit(5) drop-ins by file name; sysext-bakery#50",
};

pub const BUILTIN_ABOVE: Rule = Rule {
    id: "collision/builtin-above",
    severity: Severity::Warning,
    summary: "a Flatcar built-in extension ships the same path and stacks above the image unless masked",
    reference: "flatcar.md built-in extensions; bakery docs/docker.md (mask with /dev/null)",
};

pub const RULES: &[&Rule] = &[&SAME_PATH, &SAME_DROPIN, &BUILTIN_ABOVE];

/// One copy of a path in one member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Copy {
    /// A regular file's bytes (or, for a built-in's packaged file, unknown: `None`).
    File(Option<Vec<u8>>),
    Symlink(String),
    /// Anything else (device, fifo): compared by kind only.
    Other(String),
}

/// An extension taking part: its image name (what the stacking sorts), what to call it,
/// whether it is one of the target's built-ins, and its paths (no leading slash, no
/// directories).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub name: String,
    pub label: String,
    pub builtin: bool,
    pub paths: BTreeMap<String, Copy>,
}

/// Findings for the paths more than one member ships with different copies: one per rule,
/// winner and hidden members, listing its paths.
pub fn check(members: &[Member]) -> Vec<Finding> {
    let mut by_path: BTreeMap<&str, Vec<(&Member, &Copy)>> = BTreeMap::new();
    for m in members {
        for (p, c) in &m.paths {
            if p.starts_with("usr/lib/extension-release.d/") {
                continue;
            }
            by_path.entry(p.as_str()).or_default().push((m, c));
        }
    }
    // (rule, winner, hidden) -> paths, in path order.
    let mut groups: BTreeMap<(&'static str, &Member, Vec<&Member>), Vec<&str>> = BTreeMap::new();
    for (path, copies) in by_path {
        if copies.len() < 2 || all_same(&copies) {
            continue;
        }
        let names: Vec<&str> = copies.iter().map(|(m, _)| m.name.as_str()).collect();
        let Some(winner) = stacking_winner(&names) else {
            continue;
        };
        let Some(top) = copies.iter().map(|(m, _)| *m).find(|m| m.name == winner) else {
            continue;
        };
        let hidden: Vec<&Member> = copies
            .iter()
            .map(|(m, _)| *m)
            .filter(|m| m.name != winner)
            .collect();
        let images = copies.iter().filter(|(m, _)| !m.builtin).count();
        let rule = if images < 2 {
            // An image against a built-in: only a built-in on top needs the mask.
            if !top.builtin {
                continue;
            }
            BUILTIN_ABOVE.id
        } else if is_dropin(path) {
            SAME_DROPIN.id
        } else {
            SAME_PATH.id
        };
        groups.entry((rule, top, hidden)).or_default().push(path);
    }
    groups
        .into_iter()
        .map(|((rule, top, hidden), paths)| finding(rule, top, &hidden, &paths))
        .collect()
}

fn finding(rule: &str, top: &Member, hidden: &[&Member], paths: &[&str]) -> Finding {
    let shown: Vec<String> = paths.iter().take(6).map(|p| format!("/{p}")).collect();
    let more = match paths.len().saturating_sub(shown.len()) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let what = format!("{}{more}", shown.join(", "));
    let losers: Vec<&str> = hidden.iter().map(|m| m.label.as_str()).collect();
    let (rule, message) = if rule == BUILTIN_ABOVE.id {
        (
            &BUILTIN_ABOVE,
            format!(
                "{what}: shipped by {} and by {}, which stacks above it (its name sorts last): without `ln -sf /dev/null /etc/extensions/{}.raw` the built-in's copies are the ones seen",
                losers.join(", "),
                top.label,
                top.name
            ),
        )
    } else {
        let (rule, lost) = if rule == SAME_DROPIN.id {
            (
                &SAME_DROPIN,
                "whose settings for that unit are lost (drop-ins are read by file name, one per name)",
            )
        } else {
            (&SAME_PATH, "whose copies are hidden")
        };
        (
            rule,
            format!(
                "{what}: shipped by {} and {} with different contents; {} wins (stacked last: its name sorts last) over {} {lost}; rename one, or move it under a path of its own",
                losers.join(", "),
                top.label,
                top.label,
                losers.join(", "),
            ),
        )
    };
    Finding::new(rule, paths[0], message)
}

fn is_dropin(path: &str) -> bool {
    path.contains("/systemd/")
        && path
            .rsplit_once('/')
            .is_some_and(|(dir, f)| dir.ends_with(".d") && f.ends_with(".conf"))
}

/// Whether every copy is the same (a built-in's packaged file is never known to be).
fn all_same(copies: &[(&Member, &Copy)]) -> bool {
    let first = copies[0].1;
    if matches!(first, Copy::File(None)) {
        return false;
    }
    copies.iter().all(|(_, c)| *c == first)
}
