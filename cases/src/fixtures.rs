//! The bundled fixtures: extension specs under `fixtures/extensions/`, each with the lint
//! verdict it must get (`[expect]`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sysext_builder::spec::Spec;

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
    let dir = root().join("extensions");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
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
