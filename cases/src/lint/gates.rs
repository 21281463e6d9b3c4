//! Rules that hold on one side of a version change only. systemd 257 reads `.transfer`
//! files (older ones read only `.conf`); systemd 252 learnt `ID=_any` and `ARCHITECTURE=`.
//! A rule for the old side runs only when the target is known to be that old (`--systemd`,
//! or a Flatcar version that implies it): on an unknown target it would be a false alarm.
//! A rule for the new side runs unless the target is known to be older.

use crate::lint::target::Target;

/// Which targets a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// From this systemd major version on.
    SystemdFrom(u32),
    /// Only before this systemd major version.
    SystemdBefore(u32),
}

/// The gate of the rule with id `rule`, if it has one.
pub fn gate(rule: &str) -> Option<Gate> {
    use crate::lint::rules::{matching, release_dir};
    [
        (release_dir::TRANSFER_SUFFIX.id, Gate::SystemdFrom(257)),
        (release_dir::TRANSFER_UNREAD.id, Gate::SystemdBefore(257)),
        (matching::KEYS_NEED_252.id, Gate::SystemdBefore(252)),
    ]
    .into_iter()
    .find(|(id, _)| *id == rule)
    .map(|(_, g)| g)
}

impl Gate {
    pub fn applies(self, target: &Target) -> bool {
        match self {
            Gate::SystemdFrom(v) => !target.systemd.is_below(v),
            Gate::SystemdBefore(v) => target.systemd.is_below(v),
        }
    }

    /// For `lint --list-rules`: `systemd >= 257`.
    pub fn describe(self) -> String {
        match self {
            Gate::SystemdFrom(v) => format!("systemd >= {v}"),
            Gate::SystemdBefore(v) => format!("systemd < {v}"),
        }
    }
}

/// Whether a finding of the rule with id `rule` stands on `target`.
pub fn applies(rule: &str, target: &Target) -> bool {
    gate(rule).is_none_or(|g| g.applies(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::target::{TargetKind, TargetSpec};

    fn target(spec: &str, systemd: Option<u32>) -> Target {
        Target::from_spec(&spec.parse::<TargetSpec>().unwrap(), systemd)
    }

    #[test]
    fn new_side_rules_run_unless_the_target_is_known_older() {
        let g = Gate::SystemdFrom(257);
        assert!(g.applies(&Target::new(TargetKind::Flatcar)));
        assert!(g.applies(&target("flatcar:4593.2.5", None)));
        assert!(g.applies(&target("flatcar:stable", None)));
        // 4459 ships systemd 256 (the release table's).
        assert!(!g.applies(&target("flatcar:4459.2.0", None)));
        assert!(g.applies(&target("generic", Some(257))));
        assert!(!g.applies(&target("generic", Some(256))));
        // Flatcar before 3913 has a systemd older than 255, so older than 257.
        assert!(!g.applies(&target("flatcar:3815.2.0", None)));
    }

    #[test]
    fn old_side_rules_run_only_when_the_target_is_known_older() {
        let g = Gate::SystemdBefore(252);
        assert!(!g.applies(&Target::new(TargetKind::Flatcar)));
        assert!(!g.applies(&target("flatcar:4230.2.0", None)));
        assert!(g.applies(&target("generic", Some(251))));
        assert!(!g.applies(&target("generic", Some(252))));
    }

    #[test]
    fn every_gated_rule_exists() {
        for r in crate::lint::rules::all() {
            if let Some(g) = gate(r.id) {
                assert!(!g.describe().is_empty());
            }
        }
        assert_eq!(
            crate::lint::rules::all()
                .iter()
                .filter(|r| gate(r.id).is_some())
                .count(),
            3
        );
    }
}
