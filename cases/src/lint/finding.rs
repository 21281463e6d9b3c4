//! Findings and the rules that produce them.

use serde::Serialize;

/// How bad a finding is, in terms of what systemd will do with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: worth knowing, nothing breaks.
    Info,
    /// Works today, but is fragile or breaks on some targets.
    Warning,
    /// systemd will refuse, skip or break it.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// A rule: a stable id users can search for and silence, its default severity, and a
/// one-line summary for `sysext-test lint --list-rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    /// Where the rule comes from: the rule book's ids (`B3`), a systemd source file, or a
    /// bakery issue.
    pub reference: &'static str,
}

/// One thing lint found in one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// Path inside the image (`usr/bin/x`), or the file in a release directory.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Finding {
    pub fn new(rule: &Rule, path: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            rule: rule.id,
            severity: rule.severity,
            path: path.into(),
            message: message.into(),
        }
    }

    /// The same rule at another severity, for rules whose weight depends on the target
    /// (e.g. `/usr/sbin` breaks Flatcar but not a generic distribution).
    pub fn with_severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }

    /// The same finding with a clause added to its message (why its severity changed).
    pub fn with_message_suffix(mut self, suffix: &str) -> Finding {
        self.message.push_str(suffix);
        self
    }
}
