//! Which program a command reaches when an image replaces a Flatcar built-in
//! (containerd-flatcar, docker-flatcar): with the bakery's `/dev/null` masks the image's
//! own; without them, the copy of whichever extension systemd stacks on top, the one whose
//! name sorts last (`docker-flatcar` above `docker`, but `docker` above
//! `containerd-flatcar`). Told apart by content: the guest's digest of `/usr/bin/P`
//! against the image's file.

use sha2::{Digest, Sha256};
use sysext_builder::guest::builtins;
use sysext_builder::image::Image;
use sysext_harness::{HarnessError, Vm};

use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::shell::quote;
use crate::subject::Subject;

/// One program the image shares with a built-in it replaces: its path and whether the
/// merged `/usr` runs the image's copy.
struct Reached {
    builtin: &'static str,
    path: String,
    image_copy: bool,
    said: String,
}

/// For each built-in the image replaces, the first program both ship, as the guest has it.
fn reached(vm: &Vm, s: &Subject) -> Result<Vec<Reached>, CaseError> {
    let ours = |e: std::io::Error| CaseError::Harness(HarnessError::io(&s.image, e));
    let image = Image::open(&s.image).map_err(|e| ours(std::io::Error::other(e.to_string())))?;
    let mut shared = Vec::new();
    for b in builtins::replaced_by(image.entries().iter().map(|e| e.path.as_str())) {
        let Some(p) = builtins::programs(b)
            .into_iter()
            .find(|p| image.entries().iter().any(|e| &e.path == p))
        else {
            continue;
        };
        let bytes = image.read(&p, u64::MAX).map_err(ours)?;
        shared.push((b, p, hex::encode(Sha256::digest(&bytes))));
    }
    if shared.is_empty() {
        return Ok(Vec::new());
    }
    let cmds: Vec<String> = shared
        .iter()
        .map(|(_, p, _)| {
            format!(
                "sha256sum {p} && {p} --version",
                p = quote(&format!("/{p}"))
            )
        })
        .collect();
    let outs = vm.batch(&cmds.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(shared
        .into_iter()
        .zip(outs)
        .map(|((builtin, path, digest), out)| Reached {
            builtin,
            image_copy: out.stdout.split_whitespace().next() == Some(digest.as_str()),
            said: out.combined(),
            path: format!("/{path}"),
        })
        .collect())
}

/// With the masks: every program the image shares with a built-in is the image's.
pub fn image_wins(vm: &Vm, s: &Subject) -> CaseResult {
    for r in reached(vm, s)? {
        if !r.image_copy {
            return Err(Assertion::new(format!(
                "expected {} to be {}'s with {} masked; it is another copy (the built-in's?)",
                r.path, s.file_name, r.builtin
            ))
            .with_evidence(&r.said)
            .into());
        }
    }
    Ok(())
}

/// Without the masks: each shared program is the copy of the extension stacked on top
/// (systemd orders extensions by name, the last on top), and at least one built-in
/// shadows the image, as the bakery's docs warn.
pub fn builtin_wins(vm: &Vm, s: &Subject) -> CaseResult {
    let reached = reached(vm, s)?;
    if !reached.iter().any(|r| stacked_above(r.builtin, &s.name)) {
        return Err(Assertion::new(format!(
            "{} replaces no Flatcar built-in that systemd stacks above it: nothing can shadow it",
            s.file_name
        ))
        .into());
    }
    for r in reached {
        let above = stacked_above(r.builtin, &s.name);
        if r.image_copy == above {
            let (expected, found) = if above {
                (format!("the built-in {}'s", r.builtin), "the image's")
            } else {
                (
                    format!("{}'s (stacked above {})", s.name, r.builtin),
                    "another copy",
                )
            };
            return Err(Assertion::new(format!(
                "expected {} to be {expected} without the masks; it is {found}",
                r.path
            ))
            .with_evidence(&r.said)
            .into());
        }
    }
    Ok(())
}

/// Whether systemd stacks extension `a` above extension `b`: it merges them sorted by
/// name, and the last one's files cover the others'.
fn stacked_above(a: &str, b: &str) -> bool {
    a.as_bytes() > b.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_that_sorts_last_is_stacked_on_top() {
        assert!(stacked_above("docker-flatcar", "docker"));
        assert!(stacked_above("containerd-flatcar", "containerd"));
        assert!(!stacked_above("containerd-flatcar", "docker"));
    }
}
