//! The tree an extension image will contain, before it is written in any format.
//!
//! Both writers (squashfs through backhand, erofs through mkfs.erofs) take the same layout,
//! so a spec means the same image whatever the format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::errors::BuildError;
use crate::osrelease;
use crate::spec::Spec;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Inline(Vec<u8>),
    Host(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u16 },
    File { content: Content, mode: u16 },
    Symlink { target: String },
}

/// Paths relative to the image root (`usr/bin/x`), in sorted order, parents before children.
#[derive(Debug, Default, Clone)]
pub struct Layout {
    pub nodes: BTreeMap<String, Node>,
}

impl Layout {
    /// Adds a node, creating missing parent directories with mode 0755.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<(), BuildError> {
        let rel = path.trim_start_matches('/').to_string();
        let mut parent = String::new();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(c);
            match self.nodes.get(&parent) {
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir { mode: 0o755 });
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => {
                    return Err(BuildError::Spec(format!(
                        "/{rel}: parent /{parent} is not a directory"
                    )));
                }
            }
        }
        match (self.nodes.get(&rel), &node) {
            (Some(Node::Dir { .. }), Node::Dir { .. }) => {}
            (Some(_), _) => return Err(BuildError::Spec(format!("/{rel} is given twice"))),
            (None, _) => {}
        }
        self.nodes.insert(rel, node);
        Ok(())
    }

    /// Copies the host directory `from` to `at` (relative), recursively, in sorted order.
    /// Sockets, FIFOs and devices are skipped: they do not belong in an extension.
    pub fn insert_tree(&mut self, from: &Path, at: &str) -> Result<(), BuildError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(from).map_err(|e| BuildError::io(from, e))?;
        let mode = (meta.permissions().mode() & 0o7777) as u16;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(from).map_err(|e| BuildError::io(from, e))?;
            return self.insert(
                at,
                Node::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            );
        }
        if ft.is_file() {
            return self.insert(
                at,
                Node::File {
                    content: Content::Host(from.to_path_buf()),
                    mode,
                },
            );
        }
        if !ft.is_dir() {
            return Ok(());
        }
        if !at.is_empty() {
            self.insert(at, Node::Dir { mode })?;
        }
        let mut children: Vec<_> = std::fs::read_dir(from)
            .map_err(|e| BuildError::io(from, e))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        children.sort();
        for name in children {
            let name_str = name.to_string_lossy();
            let child_at = if at.is_empty() {
                name_str.into_owned()
            } else {
                format!("{at}/{name_str}")
            };
            self.insert_tree(&from.join(&name), &child_at)?;
        }
        Ok(())
    }

    /// Builds the layout for `spec` on `arch`, fetching Debian files as needed.
    pub fn from_spec(spec: &Spec, spec_dir: &Path, arch: Arch) -> Result<Layout, BuildError> {
        let mut l = Layout::default();
        for d in &spec.dirs {
            l.insert(&d.path, Node::Dir { mode: d.mode })?;
        }
        for f in &spec.files {
            let content = if let Some(t) = &f.text {
                Content::Inline(with_version(t, spec).into_bytes())
            } else if let Some(p) = &f.from {
                let p = spec_dir.join(p);
                if !p.is_file() {
                    return Err(BuildError::Spec(format!(
                        "[[file]] {}: source {} is not a readable file",
                        f.path,
                        p.display()
                    )));
                }
                Content::Host(p)
            } else if let Some(deb) = &f.deb {
                let deb_arch = deb.arch.unwrap_or(arch);
                let suite = deb.suite.as_deref().unwrap_or(crate::deb::SUITE);
                let root = crate::deb::unpacked_from(&deb.package, deb_arch, suite)?;
                let p = root.join(deb.path.trim_start_matches('/'));
                if !p.is_file() {
                    return Err(BuildError::Spec(format!(
                        "[[file]] {}: package {} has no file {}",
                        f.path, deb.package, deb.path
                    )));
                }
                Content::Host(p)
            } else if let Some(program) = f.program {
                Content::Inline(program.elf(arch))
            } else {
                unreachable!("Spec::validate guarantees one source per file")
            };
            l.insert(
                &f.path,
                Node::File {
                    content,
                    mode: f.mode,
                },
            )?;
        }
        for s in &spec.symlinks {
            l.insert(
                &s.path,
                Node::Symlink {
                    target: s.target.clone(),
                },
            )?;
        }
        for t in &spec.trees {
            let from = spec_dir.join(&t.from);
            if !from.is_dir() {
                return Err(BuildError::Spec(format!(
                    "[[tree]] {}: {} is not a directory",
                    t.path,
                    from.display()
                )));
            }
            l.insert_tree(&from, t.path.trim_matches('/'))?;
        }
        for u in &spec.units {
            let dir = u.dir.trim_end_matches('/');
            l.insert(
                &format!("{dir}/{}", u.name),
                Node::File {
                    content: Content::Inline(with_version(&u.text, spec).into_bytes()),
                    mode: 0o644,
                },
            )?;
            for t in &u.wanted_by {
                l.insert(
                    &wants_link(dir, t, &u.name),
                    Node::Symlink {
                        target: format!("../{}", u.name),
                    },
                )?;
            }
            for t in &u.upheld_by {
                l.insert(
                    &upholds_dropin(dir, t, &u.name),
                    Node::File {
                        content: Content::Inline(upholds_dropin_text(&u.name).into_bytes()),
                        mode: 0o644,
                    },
                )?;
            }
        }
        let release_name = spec.release_name.as_deref().unwrap_or(&spec.name);
        // Like the bakery's generate step, the generated release file wins over one that a
        // copied tree already holds.
        l.nodes.remove(&format!(
            "usr/lib/extension-release.d/extension-release.{release_name}"
        ));
        l.insert(
            &format!("usr/lib/extension-release.d/extension-release.{release_name}"),
            Node::File {
                content: Content::Inline(release_file(spec, arch)?.into_bytes()),
                mode: 0o644,
            },
        )?;
        Ok(l)
    }
}

/// Where a spec's `wanted-by` target links its unit: `DIR/TARGET.wants/UNIT`.
pub fn wants_link(dir: &str, target: &str, unit: &str) -> String {
    format!("{}/{target}.wants/{unit}", dir.trim_end_matches('/'))
}

/// The drop-in a spec's `upheld-by` target gets: the bakery's and Flatcar's name
/// (`10-containerd-service.conf`), so two images that uphold the same unit ship the same
/// drop-in, as theirs do.
pub fn upholds_dropin(dir: &str, target: &str, unit: &str) -> String {
    format!(
        "{}/{target}.d/10-{}.conf",
        dir.trim_end_matches('/'),
        unit.replace('.', "-")
    )
}

/// What that drop-in says.
pub fn upholds_dropin_text(unit: &str) -> String {
    format!("[Unit]\nUpholds={unit}\n")
}

/// Renders extension-release the way the bakery's `_create_metadata` does, plus any extra
/// fields the spec sets. `ID` comes first, then the matching keys, then the rest sorted.
///
/// Values are quoted where os-release(5) needs it ([`osrelease::render_assignment`]): a
/// field such as `NAME = "Hello World"` written bare would be misread by every shell
/// script that sources the file, and flagged by our own `release/syntax` rule.
pub fn release_file(spec: &Spec, arch: Arch) -> Result<String, BuildError> {
    let mut fields = spec.release.clone();
    fields.entry("ID".into()).or_insert_with(|| "_any".into());
    fields
        .entry("ARCHITECTURE".into())
        .or_insert_with(|| arch.systemd_name().into());
    if spec.reload_manager {
        fields
            .entry("EXTENSION_RELOAD_MANAGER".into())
            .or_insert_with(|| "1".into());
    }
    const FIRST: [&str; 6] = [
        "ID",
        "VERSION_ID",
        "SYSEXT_LEVEL",
        "ARCHITECTURE",
        "SYSEXT_SCOPE",
        "EXTENSION_RELOAD_MANAGER",
    ];
    let mut out = String::new();
    let mut emit = |k: &str, v: &str| -> Result<(), BuildError> {
        if !v.is_empty() {
            let line = osrelease::render_assignment(k, v)
                .map_err(|e| BuildError::Spec(format!("[release] {e}")))?;
            out.push_str(&line);
        }
        Ok(())
    };
    for k in FIRST {
        if let Some(v) = fields.get(k) {
            emit(k, v)?;
        }
    }
    for (k, v) in &fields {
        if !FIRST.contains(&k.as_str()) {
            emit(k, v)?;
        }
    }
    Ok(out)
}
/// Inline text with `@VERSION@` replaced by the spec's version, so one spec can build the
/// successive releases an update cycle needs, each binary reporting its own version.
fn with_version(text: &str, spec: &Spec) -> String {
    text.replace("@VERSION@", &spec.version)
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::osrelease::OsRelease;
    use crate::props::check;
    use proptest::prelude::*;

    fn spec_with_release(fields: &std::collections::BTreeMap<String, String>) -> Spec {
        let mut table = toml::Table::new();
        table.insert("name".into(), "x".into());
        table.insert("version".into(), "1".into());
        let release: toml::Table = fields
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::from(v.as_str())))
            .collect();
        table.insert("release".into(), release.into());
        match table.try_into() {
            Ok(spec) => spec,
            Err(e) => panic!("spec table: {e}"),
        }
    }

    /// Regression (found by the property below): `NAME = "Hello World"` was written bare,
    /// `NAME=Hello World`, which a shell runs as the command `World`.
    #[test]
    fn release_file_quotes_a_value_with_spaces() {
        let fields = [("NAME".to_string(), "Hello World".to_string())].into();
        let text = release_file(&spec_with_release(&fields), Arch::X86_64).unwrap();
        assert_eq!(text, "ID=_any\nARCHITECTURE=x86-64\nNAME=\"Hello World\"\n");
    }

    /// Whatever a spec's `[release]` holds, the written file is clean os-release(5) that
    /// reads back as those fields: the builder must not make images its own linter flags.
    #[test]
    fn release_file_reads_back_as_the_spec_fields() {
        let fields = prop::collection::btree_map(
            crate::osrelease::proptests::key(),
            crate::osrelease::proptests::value(),
            0..6,
        );
        check(fields, |fields| {
            let spec = spec_with_release(&fields);
            let text = release_file(&spec, Arch::X86_64)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (parsed, issues) = OsRelease::parse(&text);
            prop_assert!(issues.is_empty(), "{:?} in {:?}", issues, text);
            for (k, v) in &fields {
                let want = if v.is_empty() { None } else { Some(v.as_str()) };
                prop_assert_eq!(parsed.get(k), want, "{}", text);
            }
            Ok(())
        });
    }
}
