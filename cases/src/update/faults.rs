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

/// A fault, where it is injected, and what systemd says about it (any of the phrases).
struct Plan {
    fault: Fault,
    on_manifest: bool,
    says: &'static [&'static str],
}

fn plan(ctx: &Ctx, case: FaultCase, next: &str) -> Plan {
    let (fault, on_manifest, says): (Fault, bool, &[&str]) = match case {
        FaultCase::NotFound => (Fault::NotFound, false, &["404"]),
        FaultCase::ServerError => (Fault::ServerError, true, &["500"]),
        FaultCase::CutShort => (
            Fault::CutShort,
            false,
            &["Transferred a partial file", "Premature", "partial"],
        ),
        FaultCase::Corrupt => (Fault::Corrupt, false, &["Checksum", "checksum"]),
        FaultCase::Stall => (
            Fault::Stall(STALL),
            false,
            &["too slow", "Timeout", "timed out"],
        ),
        FaultCase::WrongDigest => (
            Fault::WrongDigest(ctx.file(next)),
            true,
            &["Checksum", "checksum"],
        ),
        FaultCase::MalformedSums => (
            Fault::MalformedSums,
            true,
            &["at manifest line", "Corrupt manifest", "Truncated manifest"],
        ),
    };
    Plan {
        fault,
        on_manifest,
        says,
    }
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
    if !p.says.iter().any(|s| said.contains(s)) {
        return Err(CaseError::from(format!(
            "{when}: expected systemd to say one of {:?}, it said:\n{}",
            p.says,
            said.trim()
        )));
    }
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
    eprintln!(
        "{name}: systemd said: {}",
        said.lines()
            .filter(|l| p.says.iter().any(|s| l.contains(s)))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    Ok(())
}
