//! `image/`: files systemd cannot open as an extension image at all.

use crate::lint::finding::{Rule, Severity};

/// A file systemd would refuse outright: empty, garbage, truncated, or an unknown format.
pub const UNREADABLE: Rule = Rule {
    id: "image/unreadable",
    severity: Severity::Error,
    summary: "the image cannot be read: systemd refuses it and aborts the whole merge",
    reference: "E1, E10",
};

pub const RULES: &[&Rule] = &[&UNREADABLE];
