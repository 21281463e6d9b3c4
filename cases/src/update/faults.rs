//! One cycle per server fault: the update must fail (or do nothing) with a message that
//! names the problem, leave no partial file, keep the symlink and the live version, and the
//! next update after the fault is cleared must succeed. The mirror's log proves each fault
//! was hit.

use crate::outcome::CaseError;
use std::time::Duration;

use sysext_harness::mirror::Fault;

use crate::outcome::CaseResult;
use crate::update::ctx::{Ctx, h};
use crate::update::cycle::FaultCase;

/// How long a stalled download hangs: longer than systemd-pull's own limit (libcurl's
/// low-speed abort after 60 s), so the client gives up first.
const STALL: Duration = Duration::from_secs(150);

/// A fault, where it is injected, and what systemd says about it.
struct Plan {
    fault: Fault,
    on_manifest: bool,
}

fn plan(ctx: &Ctx, case: FaultCase, next: &str) -> Plan {
    let (fault, on_manifest) = match case {
        FaultCase::NotFound => (Fault::NotFound, false),
        FaultCase::ServerError => (Fault::ServerError, true),
        FaultCase::CutShort => (Fault::CutShort, false),
        FaultCase::Corrupt => (Fault::Corrupt, false),
        FaultCase::Stall => (Fault::Stall(STALL), false),
        FaultCase::WrongDigest => (Fault::WrongDigest(ctx.file(next)), true),
        FaultCase::MalformedSums => (Fault::MalformedSums, true),
    };
    Plan { fault, on_manifest }
}

/// systemd-pull's and systemd-sysupdate's own sentence for `case` when it hit `path` (the
/// request path the fault was injected on): one line must hold every part, so a "404"
/// anywhere else in the output (a size, a port, a version) never counts.
fn systemd_says(case: FaultCase, path: &str) -> Vec<String> {
    let file = path.rsplit('/').next().unwrap_or(path);
    match case {
        FaultCase::NotFound => vec![
            "HTTP request to ".into(),
            format!("/{file} failed with code 404."),
        ],
        FaultCase::ServerError => vec![
            "HTTP request to ".into(),
            format!("/{file} failed with code 500."),
        ],
        FaultCase::CutShort => vec!["Transfer failed: Transferred a partial file".into()],
        FaultCase::Corrupt | FaultCase::WrongDigest => vec![
            "DOWNLOAD INVALID: Checksum of".into(),
            "did not check out, file has been tampered with.".into(),
        ],
        FaultCase::Stall => vec!["Transfer failed: Timeout was reached".into()],
        FaultCase::MalformedSums => {
            vec!["Failed to parse digest at manifest line 1, refusing.".into()]
        }
    }
}

/// The line of `output` in which systemd says what [`systemd_says`] expects, if any.
fn said_line<'a>(output: &'a str, parts: &[String]) -> Option<&'a str> {
    output
        .lines()
        .find(|l| parts.iter().all(|p| l.contains(p.as_str())))
}

pub fn run(ctx: &Ctx, case: FaultCase) -> CaseResult {
    let v1 = ctx.versions.first().ok_or("no versions")?.clone();
    let v2 = ctx
        .versions
        .get(1)
        .ok_or("[test.update] needs a second version")?
        .clone();
    let p = plan(ctx, case, &v2);
    let name = p.fault.name();
    let path = if p.on_manifest {
        ctx.sums_path()
    } else {
        ctx.image_path(&v2)
    };
    ctx.publish(&v2)?;
    ctx.mirror.inject(&path, p.fault.clone());
    let cmd = ctx.sysupdate("update 2>&1");
    let timeout = if matches!(p.fault, Fault::Stall(_)) {
        STALL + Duration::from_secs(60)
    } else {
        Duration::from_secs(60)
    };
    let out = ctx.vm.execute_for(&cmd, timeout).map_err(h)?;
    let said = out.combined();
    let when = format!("after `update` against a {name} fault on {path}");
    if out.status == 0 {
        return Err(CaseError::from(format!(
            "{when}: expected `update` to fail, it exited 0:\n{}\nmirror log:{}",
            said.trim(),
            ctx.log()
        )));
    }
    let words = systemd_says(case, &path);
    let Some(line) = said_line(&said, &words) else {
        return Err(CaseError::from(format!(
            "{when}: expected systemd to say {:?} in one line, it said:\n{}",
            words,
            said.trim()
        )));
    };
    let line = line.trim().to_string();
    let hit = ctx
        .mirror
        .requests()
        .iter()
        .any(|r| r.path == path && r.fault == Some(p.fault.name()));
    if !hit {
        return Err(CaseError::from(format!(
            "{when}: the mirror's log shows the fault was never hit:{}",
            ctx.log()
        )));
    }
    let look = ctx.look()?;
    look.expect_no_partial_files(&when)?;
    if look.files.contains(&ctx.file(&v2)) {
        return Err(CaseError::from(format!(
            "{when}: {} is on disk: {:?}",
            ctx.file(&v2),
            look.files
        )));
    }
    look.expect_linked(&ctx.file(&v1), &when)?;
    look.expect_live(&v1, &when)?;

    // The fault is gone: the same command now succeeds.
    ctx.mirror.clear_faults();
    ctx.mirror.clear_requests();
    ctx.update(None)
        .map_err(|e| format!("after the {name} fault was cleared: {e}"))?;
    ctx.expect_downloaded(&v2)?;
    let look = ctx.look()?;
    let cleared = format!("after the {name} fault was cleared");
    look.expect_linked(&ctx.file(&v2), &cleared)?;
    look.expect_no_partial_files(&cleared)?;
    eprintln!("{name}: systemd said: {line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "/extensions/hello-update/hello-update-2.0.0-x86-64.raw";

    #[test]
    fn a_404_elsewhere_in_the_output_is_not_systemds_word_for_the_fault() {
        let words = systemd_says(FaultCase::NotFound, IMAGE);
        let unrelated = "Selected update 'hello-update-1.404.0' for install.\nDownloading 404 bytes...\nTransfer failed: Timeout was reached";
        assert_eq!(said_line(unrelated, &words), None);
        let real = "Failed to download: HTTP request to http://10.0.2.2:41234/extensions/hello-update/hello-update-2.0.0-x86-64.raw failed with code 404.";
        assert!(said_line(real, &words).is_some());
        // The 404 of another file (the manifest) is not this fault.
        let other = "HTTP request to http://10.0.2.2:1/extensions/hello-update/SHA256SUMS failed with code 404.";
        assert_eq!(said_line(other, &words), None);
    }

    #[test]
    fn each_fault_has_words_that_name_it() {
        for (case, output) in [
            (
                FaultCase::ServerError,
                "HTTP request to http://h/extensions/x/SHA256SUMS failed with code 500.",
            ),
            (
                FaultCase::CutShort,
                "Transfer failed: Transferred a partial file",
            ),
            (
                FaultCase::Corrupt,
                "DOWNLOAD INVALID: Checksum of /opt/extensions/x/.#sysupdatex did not check out, file has been tampered with.",
            ),
            (FaultCase::Stall, "Transfer failed: Timeout was reached"),
            (
                FaultCase::MalformedSums,
                "Failed to parse digest at manifest line 1, refusing.",
            ),
        ] {
            let path = if matches!(case, FaultCase::ServerError) {
                "/extensions/x/SHA256SUMS"
            } else {
                IMAGE
            };
            assert!(
                said_line(output, &systemd_says(case, path)).is_some(),
                "{case:?}"
            );
        }
        assert_eq!(
            said_line(
                "checksum mismatch",
                &systemd_says(FaultCase::Corrupt, IMAGE)
            ),
            None
        );
    }
}
