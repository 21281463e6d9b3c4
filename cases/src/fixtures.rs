//! The bundled fixtures: extension specs under `fixtures/extensions/`, each with the lint
//! verdict it must get (`[expect]`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sysext_builder::spec::Spec;

use crate::manifest::Manifest;

/// What lint must say about a fixture.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    /// Rule ids that must be reported.
    #[serde(default)]
    pub findings: Vec<String>,
    /// When true (the default), no *other* errors or warnings may be reported: a broken
    /// fixture is broken for exactly the reason it exists.
    #[serde(default = "yes")]
    pub only: bool,
    /// Rule ids that must be reported when the built release directory (image, SHA256SUMS,
    /// transfer file) is linted as a whole.
    #[serde(default)]
    pub dir_findings: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub path: PathBuf,
    pub spec: Spec,
    pub expect: Expect,
}

/// The repository's `fixtures/` directory. cargo and nextest name the crate's directory at
/// run time too, and that one wins: a target directory shared between clones (CI caches
/// one) may hold a binary compiled in another clone.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
        .join("fixtures")
}

/// Loads every `fixtures/extensions/*.toml`, sorted by name.
pub fn extensions() -> Result<Vec<Fixture>, String> {
    toml_files(&root().join("extensions"))?
        .iter()
        .map(|p| load(p))
        .collect()
}

/// The `*.toml` files of `dir`, sorted.
pub fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

pub fn load(path: &Path) -> Result<Fixture, String> {
    let spec = Spec::load(path).map_err(|e| e.to_string())?;
    let expect = match &spec.expect {
        Some(t) => t
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("{}: [expect]: {e}", path.display()))?,
        None => Expect {
            dir_findings: Vec::new(),
            findings: Vec::new(),
            only: true,
        },
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Fixture {
        name,
        path: path.to_path_buf(),
        spec,
        expect,
    })
}

impl Fixture {
    /// What its VM cases check: the spec's own `[test]`, else the manifest of its
    /// extension (a fixture packed from Debian's package runs with the manifest written
    /// for the bakery's); `None` when it has neither (lint only).
    pub fn manifest(&self) -> Result<Option<Manifest>, String> {
        match &self.spec.test {
            Some(table) => Manifest::from_table(table)
                .map(Some)
                .map_err(|e| format!("{}: {e}", self.path.display())),
            None => manifest_for(&self.spec.name),
        }
    }
}

/// The test manifest for extension `name` of a release store: `$SYSEXT_TEST_MANIFESTS/NAME.toml`,
/// else `fixtures/manifests/NAME.toml`, else the `[test]` of the fixture that builds an
/// image of that name (so a store built from the fixtures is judged by their manifests).
pub fn manifest_for(name: &str) -> Result<Option<Manifest>, String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("SYSEXT_TEST_MANIFESTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.push(root().join("manifests"));
    for dir in dirs {
        let path = dir.join(format!("{name}.toml"));
        if path.is_file() {
            return Manifest::load(&path).map(Some);
        }
    }
    for fx in extensions()? {
        if fx.spec.name == name
            && let Some(t) = &fx.spec.test
        {
            return Manifest::from_table(t)
                .map(Some)
                .map_err(|e| format!("{}: [test]: {e}", fx.path.display()));
        }
    }
    Ok(None)
}

/// The fixture's arches: the one its spec pins, else both.
pub fn arches(fx: &Fixture) -> Vec<sysext_builder::Arch> {
    match fx.spec.arch {
        Some(a) => vec![a],
        None => sysext_builder::Arch::ALL.to_vec(),
    }
}

/// Builds the fixture for each of its arches into `out/<arch>/` and checks lint gives it
/// exactly the verdict its `[expect]` states, image and release directory: every listed
/// rule found and, with `only` (the default), no other warning or error, so a broken
/// fixture is broken for exactly the reason it exists and a new false alarm cannot slip in.
pub fn check_lint(fx: &Fixture, out: &Path) -> Result<(), String> {
    use crate::lint::{Linter, Options, ReportKind, Severity};
    let spec_dir = fx.path.parent().unwrap_or(Path::new("."));
    let unexpected = |findings: &[&crate::lint::Finding], listed: &[String]| -> Vec<String> {
        findings
            .iter()
            .filter(|f| fx.expect.only && f.severity >= Severity::Warning)
            .filter(|f| !listed.iter().any(|r| r == f.rule))
            .map(|f| format!("{} {}: {}", f.severity.as_str(), f.rule, f.message))
            .collect()
    };
    for arch in arches(fx) {
        let dir = out.join(arch.systemd_name());
        let built = sysext_builder::build::build_spec(
            &fx.spec,
            spec_dir,
            &dir,
            &sysext_builder::build::Options {
                arch: Some(arch),
                ..Default::default()
            },
        )
        .map_err(|e| format!("building {} for {arch}: {e}", fx.path.display()))?;
        let linter = Linter::new(Options::default());
        let (report, _) = linter.lint_image(&built.image).map_err(|e| e.to_string())?;
        let got: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
        let missing: Vec<&String> = fx
            .expect
            .findings
            .iter()
            .filter(|r| !got.contains(&r.as_str()))
            .collect();
        let image_findings: Vec<&crate::lint::Finding> = report.findings.iter().collect();
        let extra = unexpected(&image_findings, &fx.expect.findings);
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "{} ({arch}): expected {:?}; missing {missing:?}; unexpected {extra:#?}\nall findings: {got:?}",
                fx.path.display(),
                fx.expect.findings
            ));
        }
        let dir_reports = linter.lint_path(&dir).map_err(|e| e.to_string())?;
        let dir_findings: Vec<&crate::lint::Finding> = dir_reports
            .iter()
            .filter(|r| r.kind == ReportKind::ReleaseDir)
            .flat_map(|r| r.findings.iter())
            .collect();
        let got: Vec<&'static str> = dir_findings.iter().map(|f| f.rule).collect();
        let missing: Vec<&String> = fx
            .expect
            .dir_findings
            .iter()
            .filter(|r| !got.contains(&r.as_str()))
            .collect();
        let extra = unexpected(&dir_findings, &fx.expect.dir_findings);
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "{} ({arch}): release directory lacks {missing:?}, has unexpected {extra:#?}; got {got:?}",
                fx.path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifests written for the bakery's documented extensions all load and
    /// validate, and the six the release gate names are there.
    #[test]
    fn every_extension_manifest_in_fixtures_validates() {
        let dir = root().join("manifests");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let m = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    !m.commands.is_empty(),
                    "{}: a manifest checks at least one command",
                    path.display()
                );
                names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
        for want in [
            "docker",
            "containerd",
            "kubernetes",
            "k3s",
            "tailscale",
            "wasmtime",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "no manifest for {want}: {names:?}"
            );
        }
    }

    /// Every fixture's `[test]` table (or its extension's manifest) loads: a typo there
    /// would otherwise surface only as a trial named without an arch, which an arch's
    /// workflow filter never selects.
    #[test]
    fn every_fixture_test_table_validates() {
        let mut with_manifest = 0;
        for fx in extensions().unwrap() {
            if fx.manifest().unwrap_or_else(|e| panic!("{e}")).is_some() {
                with_manifest += 1;
            }
        }
        assert!(
            with_manifest > 5,
            "only {with_manifest} fixtures have a manifest"
        );
    }
}
