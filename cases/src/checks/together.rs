//! together: several extensions installed the bakery way on one guest and merged at once,
//! as a host that takes several from the bakery has them. Each one's manifest commands must
//! print what they should, and the case says which image's copy of its program each
//! command reached: where two images ship one path, every command reaches the copy
//! stacked last (sysext-bakery#183: docker-buildx installed as docker-compose).

use sysext_builder::image::Image;
use sysext_harness::Vm;

use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::shell::quote;
use crate::subject::Subject;
use crate::sysext_status::{merged_on, refusal_lines};

/// Which subject's copy of `path` has these bytes (hex SHA-256), read from the images
/// opened once for the case.
fn owner_of(images: &[(&Subject, Image)], path: &str, digest: &str) -> Option<String> {
    let rel = path.trim_start_matches('/');
    images.iter().find_map(|(s, image)| {
        let resolved = image.resolve(rel)?;
        let bytes = image.read(&resolved, 1 << 30).ok()?;
        (sha256_hex(&bytes) == digest).then(|| s.file_name.clone())
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The regular files two subjects or more ship, each with every subject's copy (file
/// name, hex SHA-256), read from the images.
fn shared_files(opened: &[(&Subject, Image)]) -> Vec<(String, Vec<(String, String)>)> {
    let mut by_path: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    let mut count: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, image) in opened {
        for e in image.entries().iter().filter(|e| e.is_file()) {
            *count.entry(e.path.as_str()).or_default() += 1;
        }
    }
    for (s, image) in opened {
        for e in image.entries().iter().filter(|e| e.is_file()) {
            if count.get(e.path.as_str()).is_some_and(|n| *n > 1)
                && !e
                    .path
                    .starts_with(sysext_builder::image::facts::RELEASE_DIR)
                && let Ok(bytes) = image.read(&e.path, 1 << 30)
            {
                by_path
                    .entry(format!("/{}", e.path))
                    .or_default()
                    .push((s.file_name.clone(), sha256_hex(&bytes)));
            }
        }
    }
    by_path.into_iter().collect()
}

/// The program a command runs: its first word, found on the guest's `PATH` when it has no
/// slash.
fn program(cmd: &str) -> Option<&str> {
    cmd.split_whitespace().next()
}

pub fn check(vm: &Vm, subjects: &[Subject], say: &dyn Fn(&str)) -> CaseResult {
    let mut install = vec!["mkdir -p /etc/extensions".to_string()];
    for s in subjects {
        let dir = format!("/opt/extensions/{}", s.name);
        vm.succeed(&format!("mkdir -p {dir}"))?;
        vm.upload(&s.image, &format!("{dir}/{}", s.file_name))?;
        install.push(format!(
            "ln -sfn {dir}/{} /etc/extensions/{}.raw",
            s.file_name, s.name
        ));
    }
    install.push("systemd-sysext unmerge >/dev/null".into());
    let mut cmds: Vec<&str> = install.iter().map(String::as_str).collect();
    cmds.extend([
        "SYSTEMD_LOG_LEVEL=debug systemd-sysext merge",
        "systemd-sysext status --json=short",
    ]);
    let outs = vm.batch(&cmds)?;
    let n = install.len();
    if let Some((cmd, out)) = install.iter().zip(&outs).find(|(_, o)| o.status != 0) {
        return Err(CaseError::Harness(sysext_harness::HarnessError::Command {
            cmd: cmd.clone(),
            what: format!("exited {}", out.status),
            output: out.combined(),
        }));
    }
    let (merge, status) = (&outs[n], &outs[n + 1]);
    let on_usr = merged_on(&status.stdout, "/usr").map_err(CaseError::MergeRefused)?;
    if let Some(s) = subjects.iter().find(|s| !on_usr.contains(&s.name)) {
        return Err(CaseError::MergeRefused(
            Assertion::new(format!(
                "expected `systemd-sysext merge` to merge all {} extensions together; '{}' is not on /usr ({on_usr:?})",
                subjects.len(),
                s.name
            ))
            .with_evidence(&refusal_lines(&merge.combined(), &s.name)),
        ));
    }
    // Each image opened once: which copy the merged /usr shows where images share a
    // path, and whose copy each command reached.
    let opened: Vec<(&Subject, Image)> = subjects
        .iter()
        .filter_map(|s| Image::open(&s.image).ok().map(|i| (s, i)))
        .collect();
    let shared = shared_files(&opened);
    if !shared.is_empty() {
        let cmd = format!(
            "sha256sum {}",
            shared
                .iter()
                .map(|(p, _)| quote(p))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = vm.execute(&cmd)?;
        for line in out.stdout.lines() {
            let mut f = line.split_whitespace();
            let (Some(digest), Some(path)) = (f.next(), f.next()) else {
                continue;
            };
            let Some((_, copies)) = shared.iter().find(|(p, _)| p == path) else {
                continue;
            };
            let seen = copies
                .iter()
                .find(|(_, d)| d == digest)
                .map_or("none of the images' copies", |(n, _)| n.as_str());
            let all: Vec<&str> = copies.iter().map(|(n, _)| n.as_str()).collect();
            say(&format!(
                "{path}: shipped by {}; the merged copy is {seen}'s",
                all.join(" and ")
            ));
        }
    }
    for s in subjects {
        if s.manifest.commands.is_empty() {
            say(&format!(
                "{}: its manifest has no commands, so only its merge was checked",
                s.file_name
            ));
        }
        for c in &s.manifest.commands {
            let Some(prog) = program(&c.run) else {
                continue;
            };
            let reach = format!(
                "p=$(command -v {}) && r=$(readlink -f \"$p\") && sha256sum \"$r\"",
                quote(prog)
            );
            let run = c.guest_command();
            let outs = vm.batch(&[run.as_str(), reach.as_str()])?;
            let (out, reached) = (&outs[0], &outs[1]);
            let mut fields = reached.stdout.split_whitespace();
            let (digest, path) = (fields.next(), fields.next());
            let whose = match (digest, path) {
                (Some(d), Some(p)) => {
                    let owner = owner_of(&opened, p, d).unwrap_or_else(|| {
                        "the base system (no merged image has these bytes)".into()
                    });
                    format!("{p} from {owner}")
                }
                _ => format!("nothing: `{prog}` is not found"),
            };
            say(&format!("{}: `{}` reached {whose}", s.file_name, c.run));
            if out.status != 0 || !out.stdout.contains(&c.expect) {
                return Err(Assertion::new(format!(
                    "expected `{}` ({}'s command) to exit 0 and print {:?} with {} merged together; it exited {} and reached {whose}",
                    c.run,
                    s.file_name,
                    c.expect,
                    subjects
                        .iter()
                        .map(|x| x.file_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    out.status
                ))
                .with_evidence(&out.combined())
                .into());
            }
        }
    }
    Ok(())
}
