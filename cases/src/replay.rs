//! The bakery's cross-release and cross-extension bugs, replayed: `fixtures/replays/*.toml`.
//!
//! Each replay names the bug, the specs that rebuild its situation (two releases of one
//! extension, or extensions a host merges together) and exactly what the check must find.
//! A replay whose `expect` is empty is the fixed situation: green means nothing found.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sysext_builder::Arch;
use sysext_builder::build::{Options as BuildOptions, build};

use crate::lint::{Linter, Options, Severity};
use crate::release_diff::{self, Side};

/// What a replay checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// `specs` are releases of one extension, oldest first: each against the one before.
    Diff,
    /// `specs` are extensions merged on one host: their collisions.
    Together,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// The bug it replays (`sysext-bakery#183`).
    pub bug: String,
    pub check: Check,
    /// Spec files, relative to the replay.
    pub specs: Vec<PathBuf>,
    /// Exactly the regressions (`RULE:SUBJECT`) or collisions (`RULE:PATH`) it must find.
    pub expect: Vec<String>,
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Every `fixtures/replays/*.toml`, by name.
pub fn all() -> Result<Vec<Replay>, String> {
    let dir = crate::fixtures::root().join("replays");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

pub fn load(path: &Path) -> Result<Replay, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r: Replay = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    if r.specs.len() < 2 {
        return Err(format!(
            "{}: a replay needs two specs or more (releases in order, or extensions together)",
            path.display()
        ));
    }
    r.name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    r.path = path.to_path_buf();
    Ok(r)
}

impl Replay {
    /// Builds the specs (x86-64) under `out` and runs the check: what it found, as
    /// `RULE:SUBJECT`, with every line it printed.
    pub fn run(&self, out: &Path) -> Result<(BTreeSet<String>, Vec<String>), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut images = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let opts = BuildOptions {
                arch: Some(Arch::X86_64),
                ..Default::default()
            };
            let built = build(&dir.join(spec), &out.join(i.to_string()), &opts)
                .map_err(|e| format!("{}: {e}", dir.join(spec).display()))?;
            images.push(built.image);
        }
        let mut found = BTreeSet::new();
        let mut lines = Vec::new();
        match self.check {
            Check::Diff => {
                for pair in images.windows(2) {
                    let (a, b) = (
                        Side::read(&pair[0]).map_err(|e| e.to_string())?,
                        Side::read(&pair[1]).map_err(|e| e.to_string())?,
                    );
                    for r in release_diff::releases(&a, &b).map_err(|e| e.to_string())? {
                        for c in &r.changes {
                            lines.push(format!("{} {}: {}", r.new, c.rule, c.message));
                            if c.is_regression() {
                                found.insert(format!("{}:{}", c.rule, c.subject));
                            }
                        }
                    }
                }
            }
            Check::Together => {
                let linter = Linter::new(Options::default());
                for r in linter.lint_together(&images).map_err(|e| e.to_string())? {
                    for f in &r.findings {
                        lines.push(format!("{} {}: {}", f.severity.as_str(), f.rule, f.message));
                        if f.severity >= Severity::Warning {
                            found.insert(format!("{}:{}", f.rule, f.path));
                        }
                    }
                }
            }
        }
        Ok((found, lines))
    }
}
