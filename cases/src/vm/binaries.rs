//! binaries: the manifest's commands run and print what they should, and every ELF under the
//! image's bin directories is loadable in the guest: its loader exists and resolves all its
//! libraries. No binary is run with flags it might not understand.

use super::{CaseResult, Subject, h, install, merge_and_verify};
use sysext_harness::Vm;

pub fn run(vm: &Vm, s: &Subject) -> CaseResult {
    install(vm, s)?;
    merge_and_verify(vm, s)?;
    for c in &s.manifest.commands {
        let out = vm.execute(&c.run).map_err(h)?;
        if out.status != 0 || !out.stdout.contains(&c.expect) {
            return Err(format!(
                "expected `{}` to exit 0 and print {:?}; it exited {} with:\n{}",
                c.run,
                c.expect,
                out.status,
                out.combined().trim()
            ));
        }
    }
    let mut problems = Vec::new();
    for (path, interp) in &s.binaries {
        let Some(interp) = interp else {
            // Static: the kernel loads it; its architecture is a static check (lint).
            vm.succeed(&format!("test -x '{path}'"))
                .map_err(|e| format!("{path} is not executable in the guest: {e}"))?;
            continue;
        };
        let out = vm.execute(&format!("test -e '{interp}' || {{ echo 'loader {interp} is missing'; exit 127; }}; '{interp}' --list '{path}'")).map_err(h)?;
        let text = out.combined();
        let missing: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("not found")
                    || l.contains("is missing")
                    || l.contains("cannot open shared object file")
            })
            .map(str::trim)
            .collect();
        if out.status != 0 || !missing.is_empty() {
            problems.push(format!(
                "{path}: {}",
                if missing.is_empty() {
                    text.trim().to_string()
                } else {
                    missing.join("; ")
                }
            ));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "expected every binary to be loadable in the guest; these are not:\n{}",
            problems.join("\n")
        ));
    }
    Ok(())
}
