//! The shape ARCHITECTURE.md promises, checked from the sources: no file of `cases/` uses
//! one that uses it back (read from its `use` lines and every `crate::`/`super::` path),
//! a thin binary (main under 150 lines, no verb module over 300), and a `--help` that lists
//! the values of every closed-set flag.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use syn::visit::Visit as _;

/// A crate's modules: module path (segments) → file.
struct Crate {
    modules: BTreeMap<Vec<String>, PathBuf>,
}

impl Crate {
    /// Every `.rs` file under `dir` is a module of the crate rooted at `root_file`.
    fn load(dir: &Path, root_file: &str, skip: Option<&Path>) -> Crate {
        let mut modules = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if Some(path.as_path()) == skip {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(dir).unwrap().with_extension("");
                let mut segs: Vec<String> = rel
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if segs.last().is_some_and(|s| s == "mod") {
                    segs.pop();
                }
                if segs == [root_file] {
                    segs.clear();
                }
                modules.insert(segs, path);
            }
        }
        Crate { modules }
    }

    /// The deepest module a path names (`checks::merge::check` → `checks::merge`).
    fn resolve(&self, path: &[String]) -> Option<Vec<String>> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| self.modules.contains_key(p))
    }

    /// Module → the modules it names, other than itself: every `use` and every path that
    /// starts with `crate`, `super`, `self`, a child module or a module a `use` named.
    fn edges(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut out = BTreeMap::new();
        for (module, file) in &self.modules {
            let text = std::fs::read_to_string(file).unwrap();
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let mut v = Names {
                krate: self,
                scope: module.clone(),
                aliases: BTreeMap::new(),
                found: BTreeSet::new(),
            };
            v.visit_file(&ast);
            v.found.remove(module);
            out.insert(module.clone(), v.found);
        }
        out
    }
}

/// Collects the modules a file names, tracking inline modules (`mod tests { … }`), where
/// `super` is the file's own module.
struct Names<'a> {
    krate: &'a Crate,
    /// The module the code being visited is in (the file's, plus inline modules).
    scope: Vec<String>,
    /// Names a `use` brought in that are modules.
    aliases: BTreeMap<String, Vec<String>>,
    found: BTreeSet<Vec<String>>,
}

impl Names<'_> {
    /// The absolute module path `segs` means here, if it starts with a word we know.
    fn absolute(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.scope.clone(),
            "super" => self.scope[..self.scope.len().saturating_sub(1)].to_vec(),
            other => {
                let mut child = self.scope.clone();
                child.push(other.to_string());
                if self.krate.modules.contains_key(&child) {
                    child
                } else {
                    self.aliases.get(other)?.clone()
                }
            }
        };
        let mut rest = &segs[1..];
        while first == "super" && rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn note(&mut self, segs: &[String]) {
        if let Some(abs) = self.absolute(segs)
            && let Some(m) = self.krate.resolve(&abs)
        {
            if m == abs
                && let Some(last) = segs.last()
            {
                self.aliases.insert(last.clone(), m.clone());
            }
            self.found.insert(m);
        }
    }
}

/// The full paths of a `use` tree (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut p = prefix.clone();
            if n.ident != "self" {
                p.push(n.ident.to_string());
            }
            out.push(p);
        }
        syn::UseTree::Rename(r) => {
            let mut p = prefix.clone();
            p.push(r.ident.to_string());
            out.push(p);
        }
        syn::UseTree::Glob(_) => out.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

impl<'ast> syn::visit::Visit<'ast> for Names<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.scope.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.scope.pop();
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut paths = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut paths);
        for p in paths {
            self.note(&p);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 {
            self.note(&segs);
        }
        syn::visit::visit_path(self, p);
    }
}

/// Every cycle's modules, one list per strongly connected part with more than one module.
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let reach = |from: &Vec<String>| -> BTreeSet<Vec<String>> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for n in edges.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    stack.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in edges.keys() {
        if done.contains(m) {
            continue;
        }
        let part: Vec<String> = edges
            .keys()
            .filter(|n| *n != m && reaches[m].contains(*n) && reaches[*n].contains(m))
            .chain(std::iter::once(m).filter(|m| reaches[*m].contains(*m)))
            .inspect(|n| {
                done.insert((*n).clone());
            })
            .map(|n| {
                if n.is_empty() {
                    "(root)".to_string()
                } else {
                    n.join("::")
                }
            })
            .collect();
        if part.len() > 1 {
            let mut part = part;
            part.sort();
            out.push(part);
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_file_of_cases_uses_one_that_uses_it_back() {
    let bin = src().join("bin");
    let lib = Crate::load(&src(), "lib", Some(&bin));
    let cli = Crate::load(&bin.join("sysext-test"), "main", None);
    for (what, krate) in [("the library", &lib), ("the CLI", &cli)] {
        let found = cycles(&krate.edges());
        assert!(
            found.is_empty(),
            "{what} has modules that use each other in a circle: {found:#?}"
        );
    }
}

#[test]
fn the_cycle_check_sees_a_cycle_through_a_parent() {
    // vm/mod.rs dispatches to vm/services.rs, which imports vm/mod.rs back: the shape
    // this test exists to keep out.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("vm")).unwrap();
    std::fs::write(d.join("lib.rs"), "pub mod vm;\npub mod manifest;\n").unwrap();
    std::fs::write(
        d.join("vm/mod.rs"),
        "mod services;\npub fn run() { services::run() }\npub struct Case;\n",
    )
    .unwrap();
    std::fs::write(
        d.join("vm/services.rs"),
        "use super::Case; // a comment: crate::manifest\npub fn run() {}\n#[cfg(test)]\nmod tests { use super::*; }\n",
    )
    .unwrap();
    std::fs::write(d.join("manifest.rs"), "use crate::vm::{Case, self};\n").unwrap();
    let krate = Crate::load(d, "lib", None);
    let found = cycles(&krate.edges());
    assert_eq!(found, [vec!["vm".to_string(), "vm::services".to_string()]]);
}

#[test]
fn the_binary_is_thin_and_each_verb_has_a_module_of_its_own() {
    let bin = src().join("bin").join("sysext-test");
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
    let main = lines(&bin.join("main.rs"));
    assert!(
        main < 150,
        "main.rs has {main} lines: move the verb's code into commands/"
    );
    let mut stack = vec![bin.join("commands")];
    let mut verbs = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                verbs += 1;
                let n = lines(&p);
                assert!(n <= 300, "{} has {n} lines (300 at most)", p.display());
            }
        }
    }
    assert!(verbs >= 15, "{verbs} verb modules");
}

/// Flags whose values are open (paths, numbers, URLs, durations, names): the rest are closed
/// sets, and `--help` must list their values.
const OPEN: &[&str] = &[
    "--output",
    "--guest",
    "--hub",
    "--version",
    "--store",
    "--systemd",
    "--host-os-release",
    "--host-passwd",
    "--host-group",
    "--manifest",
    "--base",
    "--conf",
    "--mirror",
    "--port",
    "--timeout",
    "--duration",
    "--seed",
    "--replay",
    "--mutants",
    "--subject",
    "--workdir",
    "--source",
    "--files",
    "--max-file-mib",
    "--runs",
    "--tmpfs",
    "--upload",
    "--summary",
    "--expected",
    "--target",
    "--images",
    "--count",
    "--pairs",
    "--units",
    "--transfers",
    "--shrink",
    "--help",
    "--version",
];

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sysext-test"))
        .args(args)
        .arg("--help")
        .env("COLUMNS", "400")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_closed_set_flag_lists_its_values_in_help() {
    let mut verbs: Vec<Vec<&str>> = [
        "build",
        "lint",
        "run",
        "check",
        "report",
        "bake",
        "ignition",
        "mirror",
        "fuzz",
        "bench",
        "differential",
    ]
    .iter()
    .map(|v| vec![*v])
    .collect();
    for g in ["build", "status", "clean", "exec", "fetch"] {
        verbs.push(vec!["guest", g]);
    }
    let mut missing = Vec::new();
    for verb in &verbs {
        let text = help(verb);
        // One option per block: `  -o, --output <OUTPUT>` then its description.
        let mut blocks: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.trim_start().starts_with('-') {
                blocks.push(line.to_string());
            } else if let Some(last) = blocks.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        }
        for block in blocks {
            let head = block.lines().next().unwrap_or_default();
            let Some(flag) = head.split_whitespace().find(|w| w.starts_with("--")) else {
                continue;
            };
            let flag = flag.trim_end_matches(',');
            let takes_value = head.contains('<');
            if takes_value
                && !OPEN.contains(&flag)
                && !block.contains("[possible values:")
                && !block.contains("Possible values:")
            {
                missing.push(format!("{} {flag}", verb.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "closed-set flags whose --help lists no values: {missing:?}"
    );
}
