//! Declarative extension specs (`fixtures/extensions/*.toml`, or an author's own).
//!
//! A spec says what goes into the image; the builder decides how. Keeping it declarative
//! lets broken variants be one-line differences from a good spec, each with the finding it
//! must produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::arch::Arch;
use crate::errors::BuildError;

/// The squashfs compressors we write; all three are in every distribution kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// mksquashfs's and the bakery's default.
    #[default]
    Gzip,
    Xz,
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "xz" => Ok(Compression::Xz),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "unknown compression '{other}': use gzip, xz or zstd"
            )),
        }
    }
}

/// One extension image to build.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Spec {
    /// Image name: the release file is `extension-release.NAME` and the output
    /// `NAME-VERSION-ARCH.raw`.
    pub name: String,
    pub version: String,
    pub arch: Option<Arch>,
    pub description: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    /// Sets `EXTENSION_RELOAD_MANAGER=1` so systemd reloads units after merge.
    #[serde(default)]
    pub reload_manager: bool,
    /// Overrides the suffix of the release file; only broken fixtures want this.
    pub release_name: Option<String>,
    /// extension-release fields. `ID` defaults to `_any` and `ARCHITECTURE` to the build
    /// arch, as the bakery writes them; an empty value leaves a field out.
    #[serde(default)]
    pub release: BTreeMap<String, String>,
    /// Modification time of every inode, so rebuilds are byte-identical.
    #[serde(default)]
    pub epoch: u32,
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    #[serde(default, rename = "symlink")]
    pub symlinks: Vec<SymlinkSpec>,
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirSpec>,
    #[serde(default, rename = "unit")]
    pub units: Vec<UnitSpec>,
    /// Whole host directories copied into the image (like the bakery's `files/` folders).
    #[serde(default, rename = "tree")]
    pub trees: Vec<TreeSpec>,
    /// The VM test manifest; read by the cases crate, opaque here.
    #[serde(default)]
    pub test: Option<toml::Table>,
    /// Expected lint findings for fixtures; read by the cases crate, opaque here.
    #[serde(default)]
    pub expect: Option<toml::Table>,
}

/// A regular file and where its bytes come from (exactly one of `text`, `from`, `deb`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSpec {
    pub path: String,
    pub text: Option<String>,
    /// A host path, relative to the spec file's directory.
    pub from: Option<PathBuf>,
    /// A file out of a Debian package for the build arch.
    pub deb: Option<DebSource>,
    /// A tiny static program built for the image's arch (`exit-zero`, `segfault`).
    pub program: Option<crate::tiny_program::TinyProgram>,
    #[serde(default = "default_file_mode")]
    pub mode: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebSource {
    pub package: String,
    pub path: String,
    /// Take the package for this arch instead of the build arch (for wrong-arch fixtures).
    pub arch: Option<Arch>,
    /// The Debian suite (one of [`crate::deb::SUITES`]; trixie when absent).
    pub suite: Option<String>,
}

/// A host directory copied recursively to `path`, keeping modes and symlinks; every inode
/// becomes root-owned, as `mksquashfs -all-root` makes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSpec {
    /// A host directory, relative to the spec file's directory.
    pub from: PathBuf,
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkSpec {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    pub path: String,
    #[serde(default = "default_dir_mode")]
    pub mode: u16,
}

/// A systemd unit plus how it gets started, the two ways the bakery's extensions do it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UnitSpec {
    pub name: String,
    pub text: String,
    #[serde(default = "default_unit_dir")]
    pub dir: String,
    /// Adds `TARGET.wants/NAME` symlinks.
    #[serde(default)]
    pub wanted_by: Vec<String>,
    /// Adds `TARGET.d/10-NAME.conf` drop-ins with `Upholds=NAME` (the dot in NAME a dash:
    /// `10-containerd-service.conf`, as the bakery and Flatcar name them).
    #[serde(default)]
    pub upheld_by: Vec<String>,
}

fn default_file_mode() -> u16 {
    0o644
}
fn default_dir_mode() -> u16 {
    0o755
}
fn default_unit_dir() -> String {
    "/usr/lib/systemd/system".into()
}

impl Spec {
    /// Reads and checks a spec; errors name the file and the fix.
    pub fn load(path: &Path) -> Result<Spec, BuildError> {
        let text = std::fs::read_to_string(path).map_err(|e| BuildError::io(path, e))?;
        Spec::parse(&text, path)
    }

    /// A spec from its text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Spec, BuildError> {
        let spec: Spec = toml::from_str(text).map_err(|e| BuildError::SpecFile {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })?;
        spec.validate().map_err(|message| BuildError::SpecFile {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.contains(['/', '\0']) || self.name.starts_with('.') {
            return Err(format!(
                "name '{}' cannot be an image name: use letters, digits and '-'",
                self.name
            ));
        }
        if self.version.is_empty() || self.version.contains(['/', '\0']) {
            return Err(format!(
                "version '{}' cannot be part of a file name",
                self.version
            ));
        }
        // Caught here rather than at build time, so the message names the spec file.
        for (k, v) in &self.release {
            crate::osrelease::render_assignment(k, v).map_err(|e| format!("[release] {e}"))?;
        }
        for f in &self.files {
            let sources = [
                f.text.is_some(),
                f.from.is_some(),
                f.deb.is_some(),
                f.program.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if sources != 1 {
                return Err(format!(
                    "[[file]] {}: give exactly one of text, from, deb or program",
                    f.path
                ));
            }
            check_path(&f.path)?;
            if let Some(suite) = f.deb.as_ref().and_then(|d| d.suite.as_deref())
                && !crate::deb::SUITES.contains(&suite)
            {
                return Err(format!(
                    "[[file]] {}: suite '{suite}' is not one packages come from: use one of {}",
                    f.path,
                    crate::deb::SUITES.join(", ")
                ));
            }
        }
        for s in &self.symlinks {
            check_path(&s.path)?;
        }
        for t in &self.trees {
            check_path(&t.path)?;
        }
        for d in &self.dirs {
            check_path(&d.path)?;
        }
        for u in &self.units {
            if u.name.contains('/') || !u.name.contains('.') {
                return Err(format!(
                    "[[unit]] '{}' must be a unit file name such as foo.service",
                    u.name
                ));
            }
            check_path(&u.dir)?;
        }
        Ok(())
    }

    /// The arch to build: the command line wins, then the spec, then x86-64.
    pub fn arch(&self, cli: Option<Arch>) -> Arch {
        cli.or(self.arch).unwrap_or(Arch::X86_64)
    }

    /// The bakery's release file name for an arch: `NAME-VERSION-ARCH.raw`.
    pub fn file_name(&self, arch: Arch) -> String {
        format!("{}-{}-{}.raw", self.name, self.version, arch.systemd_name())
    }
}

fn check_path(p: &str) -> Result<(), String> {
    let rel = p.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "path '{p}' must be a normalized path inside the image, such as /usr/bin/tool"
        ));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Spec, BuildError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, text).unwrap();
        Spec::load(&p)
    }

    #[test]
    fn minimal_spec_loads_with_bakery_defaults() {
        let s = load_str("name = \"hello\"\nversion = \"1.0\"\n").unwrap();
        assert_eq!(s.compression, Compression::Gzip);
        assert_eq!(s.file_name(s.arch(None)), "hello-1.0-x86-64.raw");
        assert_eq!(
            s.file_name(s.arch(Some(Arch::Arm64))),
            "hello-1.0-arm64.raw"
        );
    }

    #[test]
    fn unknown_keys_name_the_file() {
        let err = load_str("name = \"a\"\nversion = \"1\"\nvresion = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml") && err.contains("vresion"), "{err}");
    }

    #[test]
    fn file_needs_exactly_one_source() {
        let err = load_str("name='a'\nversion='1'\n[[file]]\npath='/usr/a'\ntext='x'\nfrom='y'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one"), "{err}");
    }

    #[test]
    fn paths_must_stay_inside_the_image() {
        let err = load_str("name='a'\nversion='1'\n[[dir]]\npath='/usr/../etc'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("normalized"), "{err}");
    }

    #[test]
    fn release_fields_must_fit_os_release() {
        let err = load_str("name='a'\nversion='1'\n[release]\nNAME=\"two\\nlines\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.toml") && err.contains("control character"),
            "{err}"
        );
        let err = load_str("name='a'\nversion='1'\n[release]\nMY-KEY='x'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid variable name"), "{err}");
    }

    #[test]
    fn arch_uses_systemd_names() {
        let err = load_str("name='a'\nversion='1'\narch='x86_64'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x86-64 or arm64"), "{err}");
    }
}
