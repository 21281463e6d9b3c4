//! binaries: the manifest's commands run and print what they should, and every ELF under the
//! image's bin directories is loadable in the guest: its loader exists and resolves all its
//! libraries. No binary is run with flags it might not understand. Two round trips: the
//! commands, then every loader check.

use sysext_harness::Vm;

use crate::outcome::{Assertion, CaseResult};
use crate::shell::quote;
use crate::subject::Subject;

/// The checks once the image is merged (at run time, or at boot in the boot case).
pub fn check(vm: &Vm, s: &Subject) -> CaseResult {
    let commands: Vec<String> = s
        .manifest
        .commands
        .iter()
        .map(|c| c.guest_command())
        .collect();
    if !commands.is_empty() {
        let outs = vm.batch(&commands.iter().map(String::as_str).collect::<Vec<_>>())?;
        for (c, out) in s.manifest.commands.iter().zip(&outs) {
            if out.status != 0 || !out.stdout.contains(&c.expect) {
                return Err(Assertion::new(format!(
                    "expected `{}`{} to exit 0 and print {:?}; it exited {}",
                    c.run,
                    c.user
                        .as_deref()
                        .map(|u| format!(" (as {u})"))
                        .unwrap_or_default(),
                    c.expect,
                    out.status
                ))
                .with_evidence(&out.combined())
                .into());
            }
        }
    }
    let checks: Vec<String> = s
        .binaries
        .iter()
        .map(|(path, interp)| match interp {
            // Static: the kernel loads it; its architecture is a static check (lint).
            // `ls -l` shows the mode a failed `test -x` saw.
            None => format!("test -x {p} || {{ ls -l {p}; exit 126; }}", p = quote(path)),
            // ls says "cannot access ...: No such file or directory" for a missing loader.
            Some(interp) => format!(
                "ls -d {i} >/dev/null && {i} --list {p}",
                i = quote(interp),
                p = quote(path)
            ),
        })
        .collect();
    if checks.is_empty() {
        return Ok(());
    }
    let outs = vm.batch(&checks.iter().map(String::as_str).collect::<Vec<_>>())?;
    let mut evidence = String::new();
    let mut bad = Vec::new();
    for ((path, _), out) in s.binaries.iter().zip(&outs) {
        let text = out.combined();
        let missing: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("not found")
                    || l.contains("No such file")
                    || l.contains("cannot open shared object file")
            })
            .map(str::trim)
            .collect();
        if out.status != 0 || !missing.is_empty() {
            bad.push(path.as_str());
            let lines = if missing.is_empty() {
                text.trim().to_string()
            } else {
                missing.join("\n")
            };
            evidence.push_str(&lines);
            evidence.push('\n');
        }
    }
    if !bad.is_empty() {
        return Err(Assertion::new(format!(
            "expected every binary to be loadable in the guest; these are not: {bad:?}"
        ))
        .with_evidence(&evidence)
        .into());
    }
    Ok(())
}
