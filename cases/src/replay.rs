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
use crate::manifest::Manifest;
use crate::outcome::{Case, ExpectedFailure, Outcome};
use crate::release_diff::{self, Side};
use crate::runner;
use crate::subject::Subject;

/// What a replay checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// `specs` are releases of one extension, oldest first: each against the one before.
    Diff,
    /// `specs` are extensions merged on one host: their collisions.
    Together,
    /// `specs` are two releases: the first installed the bakery's way, `conf` as the
    /// transfer file, updated to the second and rebooted for real in a guest
    /// (`update::<arch>::<replay>::reboot`); `expect` holds systemd's words for the
    /// failure, empty when it must work.
    UpdateReboot,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// The bug it replays (`sysext-bakery#183`).
    pub bug: String,
    pub check: Check,
    /// Spec files, relative to the replay.
    pub specs: Vec<PathBuf>,
    /// Exactly the regressions (`RULE:SUBJECT`) or collisions (`RULE:PATH`) it must find;
    /// for `update-reboot`, the words systemd must say.
    pub expect: Vec<String>,
    /// For `together`: the words the guest must say when the extensions run together (a
    /// command's own output); empty when every manifest's commands must work.
    #[serde(default, rename = "vm-expect")]
    pub vm_expect: Vec<String>,
    /// The transfer file an `update-reboot` replay installs, relative to the replay.
    #[serde(default)]
    pub conf: Option<PathBuf>,
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Every `fixtures/replays/*.toml`, by name.
pub fn all() -> Result<Vec<Replay>, String> {
    crate::fixtures::toml_files(&crate::fixtures::root().join("replays"))?
        .iter()
        .map(|p| load(p))
        .collect()
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
    if r.check == Check::UpdateReboot && (r.specs.len() != 2 || r.conf.is_none()) {
        return Err(format!(
            "{}: an update-reboot replay takes two specs (the installed release and the update) and conf = the transfer file",
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
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The specs built for `arch` under `out`: (name, version, image), in order.
    pub fn build(&self, arch: Arch, out: &Path) -> Result<Vec<(String, String, PathBuf)>, String> {
        let dir = self.dir();
        let mut images = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let opts = BuildOptions {
                arch: Some(arch),
                ..Default::default()
            };
            let path = dir.join(spec);
            let spec_text = sysext_builder::spec::Spec::load(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let built = build(&path, &out.join(i.to_string()), &opts)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            images.push((spec_text.name, spec_text.version, built.image));
        }
        Ok(images)
    }

    /// A `together` replay in a guest (`vm::<arch>::<replay>::together`): the specs built
    /// for `arch`, installed and merged together, each spec's `[test]` commands run
    /// ([`runner::run_together`]); it must fail with `vm-expect`'s words, or pass when there
    /// are none.
    pub fn run_together(
        &self,
        name: &str,
        arch: Arch,
        place: &sysext_harness::Place,
        progress: &dyn Fn(&str),
    ) -> Result<Outcome, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut subjects = Vec::new();
        for (i, spec) in self.specs.iter().enumerate() {
            let path = self.dir().join(spec);
            let loaded = sysext_builder::spec::Spec::load(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let manifest = match &loaded.test {
                Some(t) => Manifest::from_table(t)
                    .map_err(|e| format!("{}: [test]: {e}", path.display()))?,
                None => Manifest::default(),
            };
            let opts = BuildOptions {
                arch: Some(arch),
                ..Default::default()
            };
            let built = build(&path, &tmp.path().join(i.to_string()), &opts)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            subjects.push(Subject::from_image(&built.image, manifest.for_arch(arch))?);
        }
        let expected = (!self.vm_expect.is_empty()).then(|| ExpectedFailure {
            case: Case::Merge,
            systemd: self.vm_expect.clone(),
        });
        Ok(runner::run_together(
            name,
            &subjects,
            arch,
            expected.as_ref(),
            place,
            progress,
        ))
    }

    /// The transfer file an `update-reboot` replay installs.
    pub fn conf_path(&self) -> Option<PathBuf> {
        self.conf.as_ref().map(|c| self.dir().join(c))
    }

    /// Builds the specs (x86-64) under `out` and runs a static check (`diff`, `together`):
    /// what it found, as `RULE:SUBJECT`, with every line it printed.
    pub fn run(&self, out: &Path) -> Result<(BTreeSet<String>, Vec<String>), String> {
        let images: Vec<PathBuf> = self
            .build(Arch::X86_64, out)?
            .into_iter()
            .map(|(_, _, p)| p)
            .collect();
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
            Check::UpdateReboot => {
                return Err(format!(
                    "{}: an update-reboot replay runs in a guest (update::<arch>::{}::reboot), not statically",
                    self.path.display(),
                    self.name
                ));
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
