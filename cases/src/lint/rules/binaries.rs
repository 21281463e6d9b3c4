//! Binaries: every ELF in the image is for the image's architecture and can be loaded on the
//! target (its loader and libraries are in the image or the base OS).
//!
//! Only ELF headers, program headers and the dynamic section are read, never whole files;
//! files are inspected in parallel.

use std::collections::HashSet;

use rayon::prelude::*;
use sysext_builder::elf::{self, ElfInfo};
use sysext_builder::image::Image;

use crate::lint::context::Context;
use crate::lint::finding::{Finding, Rule, Severity};

pub const ARCH_MISMATCH: Rule = Rule {
    id: "binary/arch-mismatch",
    severity: Severity::Error,
    summary: "an ELF file is for another architecture than the image's ARCHITECTURE",
    reference: "C3, bakery #249",
};
pub const MISSING_INTERPRETER: Rule = Rule {
    id: "binary/missing-interpreter",
    severity: Severity::Error,
    summary: "a dynamically linked program's loader (PT_INTERP) is in neither the image nor the target",
    reference: "bakery.md 8.6",
};
pub const MISSING_LIBRARY: Rule = Rule {
    id: "binary/missing-library",
    severity: Severity::Warning,
    summary: "a DT_NEEDED library is in neither the image nor the target's base libraries",
    reference: "bakery.md 8.6",
};
pub const CORRUPT: Rule = Rule {
    id: "binary/corrupt-elf",
    severity: Severity::Warning,
    summary: "a file starts with the ELF magic but its headers are broken",
    reference: "—",
};
pub const NOT_EXECUTABLE: Rule = Rule {
    id: "binary/not-executable",
    severity: Severity::Warning,
    summary: "a program in a bin directory has no execute bit",
    reference: "bakery.md 8.5",
};

pub const RULES: &[&Rule] = &[
    &ARCH_MISMATCH,
    &MISSING_INTERPRETER,
    &MISSING_LIBRARY,
    &CORRUPT,
    &NOT_EXECUTABLE,
];

const LIMIT: usize = 10;

struct Inspected {
    path: String,
    mode: u16,
    result: Result<ElfInfo, String>,
}

/// Reads the ELF headers of every regular file that is big enough to be one.
fn inspect_all(image: &Image) -> Vec<Inspected> {
    image
        .entries()
        .par_iter()
        .filter(|e| e.is_file() && e.size >= 52)
        .filter_map(|e| {
            let f = image.open_file(&e.path).ok()?;
            let mut head = [0u8; 4];
            let n = f.read_at(0, &mut head).ok()?;
            if n < 4 || !elf::is_elf(&head) {
                return None;
            }
            Some(Inspected {
                path: e.path.clone(),
                mode: e.mode,
                result: elf::inspect(f.as_ref()).map_err(|e| e.to_string()),
            })
        })
        .collect()
}

/// The architecture the image's programs must be built for: its `ARCHITECTURE=`, else the
/// arch it is for (`--arch`, the file name).
pub fn expected_arch(ctx: &Context) -> Option<String> {
    ctx.release
        .as_ref()
        .and_then(|r| r.data.get("ARCHITECTURE"))
        .filter(|a| *a != "_any" && sysext_builder::arch::SYSTEMD_ARCHITECTURES.contains(a))
        .map(str::to_string)
        .or_else(|| ctx.arch.map(|a| a.systemd_name().to_string()))
}

/// The ELF's architecture when it is not `expected` (the name, or the raw machine number).
fn wrong_arch(info: &ElfInfo, expected: Option<&str>) -> Option<String> {
    let want = expected?;
    let arch = elf::machine_arch(info.machine, info.class64, info.little_endian);
    (arch != Some(want)).then(|| {
        arch.map(str::to_string)
            .unwrap_or_else(|| format!("unknown machine {}", info.machine))
    })
}

/// The ELF's loader when neither the image nor the target has it.
fn missing_loader(ctx: &Context, info: &ElfInfo) -> Option<String> {
    let interp = info.interpreter.as_ref()?;
    let in_image = ctx
        .image
        .resolve(interp)
        .is_some_and(|p| ctx.image.get(&p).is_some_and(|e| e.is_file()));
    (!in_image && !ctx.target.has_interpreter(interp)).then(|| interp.clone())
}

/// Why execve(2) of the shipped program at `path` fails on the target, when it is an ELF
/// that cannot run there: built for another arch, or its loader is missing.
pub fn cannot_exec(ctx: &Context, path: &str) -> Option<String> {
    let f = ctx.image.open_file(path).ok()?;
    let info = elf::inspect(f.as_ref()).ok()?;
    if let Some(got) = wrong_arch(&info, expected_arch(ctx).as_deref()) {
        return Some(format!("an ELF for {got} (\"Exec format error\")"));
    }
    missing_loader(ctx, &info)
        .map(|l| format!("an ELF whose loader {l} is in neither the image nor the target"))
}

pub fn check(ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let elves = inspect_all(ctx.image);
    let expected = expected_arch(ctx);

    // Libraries the image provides, by soname and by file name.
    let mut provided: HashSet<String> = HashSet::new();
    for i in &elves {
        if let Ok(info) = &i.result
            && let Some(s) = &info.soname
        {
            provided.insert(s.clone());
        }
    }
    for e in ctx.image.entries() {
        let n = e.file_name();
        if n.starts_with("lib") && n.contains(".so") {
            provided.insert(n.to_string());
        }
    }

    let (mut arch_bad, mut lib_bad, mut interp_bad) = (Vec::new(), Vec::new(), Vec::new());
    for i in &elves {
        let info = match &i.result {
            Ok(info) => info,
            Err(e) => {
                out.push(Finding::new(
                    &CORRUPT,
                    i.path.as_str(),
                    format!("ELF headers are broken ({e}); a truncated copy?"),
                ));
                continue;
            }
        };
        if let Some(want) = &expected
            && let Some(got) = wrong_arch(info, Some(want))
        {
            arch_bad.push(Finding::new(
                &ARCH_MISMATCH,
                i.path.as_str(),
                format!("ELF for {got} in an image for {want}: it fails with \"Exec format error\". Take the {want} build of this file"),
            ));
        }
        if let Some(interp) = missing_loader(ctx, info) {
            interp_bad.push(Finding::new(
                &MISSING_INTERPRETER,
                i.path.as_str(),
                format!("needs the loader {interp}, which neither the image nor the target has: it fails with \"No such file or directory\". Link it statically or ship the loader"),
            ));
        }
        let search: Vec<String> = info
            .runpath
            .iter()
            .map(|r| {
                r.replace(
                    "$ORIGIN",
                    i.path.rsplit_once('/').map(|(d, _)| d).unwrap_or(""),
                )
            })
            .collect();
        for lib in &info.needed {
            let via_runpath = search.iter().any(|d| {
                ctx.image
                    .get(&format!("{}/{lib}", d.trim_matches('/')))
                    .is_some()
            });
            if provided.contains(lib) || via_runpath || ctx.target.libraries.contains(lib) {
                continue;
            }
            let f = Finding::new(
                &MISSING_LIBRARY,
                i.path.as_str(),
                format!(
                    "needs {lib}, which is in neither the image nor the {} base: ship it in the image or link statically",
                    target_name(ctx)
                ),
            );
            lib_bad.push(if ctx.target.knows_base {
                f
            } else {
                f.with_severity(Severity::Info)
            });
        }
        let in_bin = i
            .path
            .split('/')
            .rev()
            .nth(1)
            .is_some_and(|d| d == "bin" || d == "sbin" || d == "libexec");
        let runnable = info.elf_type == elf::ET_EXEC
            || (info.elf_type == elf::ET_DYN && info.interpreter.is_some());
        if in_bin && runnable && i.mode & 0o111 == 0 {
            out.push(Finding::new(
                &NOT_EXECUTABLE,
                i.path.as_str(),
                format!(
                    "a program without execute permission (mode {:04o}); set 0755",
                    i.mode
                ),
            ));
        }
    }
    for (group, rule) in [
        (arch_bad, &ARCH_MISMATCH),
        (interp_bad, &MISSING_INTERPRETER),
        (lib_bad, &MISSING_LIBRARY),
    ] {
        let n = group.len();
        out.extend(group.into_iter().take(LIMIT));
        if n > LIMIT {
            out.push(Finding::new(
                rule,
                "",
                format!("{} more files like the above", n - LIMIT),
            ));
        }
    }
    out
}

fn target_name(ctx: &Context) -> &'static str {
    match ctx.target.kind {
        crate::lint::target::TargetKind::Flatcar => "Flatcar",
        crate::lint::target::TargetKind::Generic => "generic",
    }
}
