//! The cycles users go through when nothing goes wrong: update, rollback, retention, the
//! timer drop-in, and a version sysupdate cannot see.

use super::{Ctx, h};
use crate::vm::CaseResult;

fn nth<'a>(ctx: &'a Ctx, i: usize) -> Result<&'a str, String> {
    ctx.versions.get(i).map(String::as_str).ok_or_else(|| {
        format!(
            "[test.update] needs at least {} versions after the first",
            i.max(1)
        )
    })
}

/// Publishes `next`, runs `update`, and checks the download and the symlink. The merged
/// version stays `live` until a refresh.
fn update_to(ctx: &Ctx, next: &str, live: &str) -> CaseResult {
    ctx.publish(next)?;
    let out = ctx.update(None)?;
    if !out.contains(&format!("'{next}'")) {
        return Err(format!(
            "expected `update` to install '{next}', it said:\n{}",
            out.trim()
        ));
    }
    ctx.expect_downloaded(next)?;
    ctx.expect_linked(next, &format!("after updating to {next}"))?;
    ctx.expect_no_partial_files(&format!("after updating to {next}"))?;
    ctx.expect_live(
        live,
        &format!("after updating to {next}, before the refresh"),
    )
}

/// v1 -> v2: listed, downloaded next to v1, symlink moved, v1 live until refresh, then v2
/// live and its service running v2.
pub fn update(ctx: &Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?, nth(ctx, 1)?);
    ctx.publish(v2)?;
    let (_, all) = ctx.list()?;
    if !all.iter().any(|v| v == v2) {
        return Err(format!(
            "expected `list` to show {v2} once the mirror published it, it shows {all:?}; mirror log:{}",
            ctx.log()
        ));
    }
    let available = ctx
        .vm
        .succeed(&ctx.sysupdate("check-new --json=short"))
        .map_err(h)?;
    if !available.contains(&format!("\"{v2}\"")) {
        return Err(format!(
            "expected `check-new` to offer {v2}, it said: {}",
            available.trim()
        ));
    }
    update_to(ctx, v2, v1)?;
    let files = ctx.target_files()?;
    if !files.contains(&ctx.file(v1)) {
        return Err(format!(
            "the update removed the running release {v1}: {files:?}"
        ));
    }
    ctx.refresh()?;
    ctx.expect_live(v2, "after `systemd-sysext refresh`")?;
    ctx.expect_service_runs(v2)
}

/// v1 -> v2, then back: first as an operator re-links the `CurrentSymlink`, then with
/// `update <older version>`; and the pitfall after that: `vacuum` may delete what the
/// symlink names (rule L13).
pub fn rollback(ctx: &Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?, nth(ctx, 1)?);
    update_to(ctx, v2, v1)?;
    ctx.refresh()?;
    ctx.expect_live(v2, "after updating to {v2} and refreshing")?;

    // An operator's rollback: point the symlink at the old file and refresh.
    ctx.vm
        .succeed(&format!(
            "ln -sfn {}/{} {}",
            ctx.target_dir(),
            ctx.file(v1),
            ctx.link()
        ))
        .map_err(h)?;
    ctx.refresh()?;
    ctx.expect_live(v1, "after re-linking to {v1} and refreshing")?;
    ctx.expect_service_runs(v1)?;

    // Forward again, then sysupdate's own rollback verb.
    ctx.vm
        .succeed(&format!(
            "ln -sfn {}/{} {}",
            ctx.target_dir(),
            ctx.file(v2),
            ctx.link()
        ))
        .map_err(h)?;
    ctx.refresh()?;
    let out = ctx.update(Some(v1))?;
    ctx.expect_linked(v1, &format!("after `update {v1}`"))
        .map_err(|e| format!("{e}\nupdate said:\n{}", out.trim()))?;
    ctx.refresh()?;
    ctx.expect_live(v1, &format!("after `update {v1}` and refreshing"))?;

    // The pitfall: keeping one instance deletes the older one, which is the live one.
    let vacuum = ctx
        .vm
        .execute(&ctx.sysupdate("vacuum -m 1 2>&1"))
        .map_err(h)?;
    let linked = ctx.linked_file()?;
    let files = ctx.target_files()?;
    if linked.is_empty() {
        // systemd 257 behaves as the rule book says; tell the user what that means.
        eprintln!(
            "note: as rule L13 warns, `vacuum -m 1` after a rollback deleted {} and left {} dangling (files now {files:?})",
            ctx.file(v1),
            ctx.link()
        );
        ctx.refresh()?;
        let status = ctx
            .vm
            .succeed("systemd-sysext status --json=short")
            .map_err(h)?;
        if crate::vm::merged_on(&status, "/usr").contains(&ctx.name) {
            return Err(format!(
                "{} dangles, yet '{}' is still merged after a refresh",
                ctx.link(),
                ctx.name
            ));
        }
        Ok(())
    } else {
        ctx.expect_linked(v1, "after `vacuum -m 1`")
            .map_err(|e| format!("{e}\nvacuum said:\n{}", vacuum.combined().trim()))
    }
}

/// v1 -> v2 -> v3 -> v4 with `InstancesMax=3`: three files stay, the merged one is never
/// deleted, and the last refresh makes v4 live.
pub fn retention(ctx: &Ctx) -> CaseResult {
    let versions: Vec<&str> = (0..4).map(|i| nth(ctx, i)).collect::<Result<_, _>>()?;
    for pair in versions.windows(2) {
        let (live, next) = (pair[0], pair[1]);
        update_to(ctx, next, live)?;
        let files = ctx.target_files()?;
        if !files.contains(&ctx.file(live)) {
            return Err(format!(
                "updating to {next} deleted {live}, the merged release: {files:?}"
            ));
        }
        ctx.refresh()?;
        ctx.expect_live(next, &format!("after updating to {next} and refreshing"))?;
    }
    let files = ctx.target_files()?;
    let want: Vec<String> = versions[1..].iter().map(|v| ctx.file(v)).collect();
    let mut got = files.clone();
    got.sort();
    if got != want {
        return Err(format!(
            "with InstancesMax=3 after four releases expected {want:?} on disk, found {files:?}"
        ));
    }
    ctx.expect_service_runs(versions[3])
}

/// The drop-in the bakery's docs give every extension for `systemd-sysupdate.service`:
/// readlink before and after the update, `systemd-sysext refresh` when it changed. Starting
/// the service, as its timer does, must leave the new release live.
pub fn timer(ctx: &Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?, nth(ctx, 1)?);
    let n = &ctx.name;
    let dropin = format!(
        "[Service]\n\
         ExecStartPre=/usr/bin/sh -c \"readlink --canonicalize /etc/extensions/{n}.raw > /tmp/{n}\"\n\
         ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C {n} update\n\
         ExecStartPost=/usr/bin/sh -c \"readlink --canonicalize /etc/extensions/{n}.raw > /tmp/{n}-new\"\n\
         ExecStartPost=/usr/bin/sh -c \"if ! cmp --silent /tmp/{n} /tmp/{n}-new; then systemd-sysext refresh; fi\"\n"
    );
    ctx.vm
        .succeed("mkdir -p /etc/systemd/system/systemd-sysupdate.service.d")
        .map_err(h)?;
    ctx.vm
        .write_file(
            &format!("/etc/systemd/system/systemd-sysupdate.service.d/{n}.conf"),
            &dropin,
        )
        .map_err(h)?;
    ctx.vm.succeed("systemctl daemon-reload").map_err(h)?;
    let timer = ctx
        .vm
        .succeed("systemctl show -P Triggers systemd-sysupdate.timer")
        .map_err(h)?;
    if !timer.contains("systemd-sysupdate.service") {
        return Err(format!(
            "systemd-sysupdate.timer does not trigger the service: {timer}"
        ));
    }
    // Nothing new yet: the service runs, changes nothing, refreshes nothing.
    run_service(ctx)?;
    ctx.expect_linked(v1, "after the service ran with nothing to update")?;
    ctx.publish(v2)?;
    run_service(ctx)?;
    ctx.expect_downloaded(v2)?;
    ctx.expect_linked(v2, "after the service ran")?;
    ctx.expect_live(v2, "after the service ran (its drop-in refreshes)")?;
    ctx.expect_service_runs(v2)
}

/// Starts systemd-sysupdate.service as its timer would and waits for it to finish.
fn run_service(ctx: &Ctx) -> CaseResult {
    let out = ctx
        .vm
        .execute("systemctl start systemd-sysupdate.service 2>&1")
        .map_err(h)?;
    if out.status != 0 {
        let journal = ctx
            .vm
            .execute("journalctl -b --no-pager -o cat -u systemd-sysupdate.service | tail -n 30")
            .map(|o| o.combined())
            .unwrap_or_default();
        return Err(format!(
            "systemd-sysupdate.service failed ({}):\n{journal}\nmirror log:{}",
            out.combined().trim(),
            ctx.log()
        ));
    }
    Ok(())
}

/// A release whose version sysupdate cannot parse (`~`): our static check names it, and in
/// the guest it is invisible: not listed, not offered, not downloaded.
pub fn version_rules(ctx: &Ctx) -> CaseResult {
    let Some(bad) = ctx.plan.unparsable_version.as_deref() else {
        return Err("[test.update] has no unparsable-version to release".into());
    };
    let v1 = nth(ctx, 0)?;
    ctx.publish(bad)?;
    let linter = crate::lint::Linter::new(crate::lint::Options::default());
    let reports = linter
        .lint_path(ctx.mirror.store())
        .map_err(|e| e.to_string())?;
    let rules: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.findings.iter())
        .filter(|f| f.path.contains(bad) || f.message.contains(bad))
        .map(|f| f.rule)
        .collect();
    if !rules.contains(&"naming/version-invisible-to-sysupdate") {
        return Err(format!(
            "lint of the release directory did not flag {bad} as invisible to sysupdate; it said {rules:?}"
        ));
    }
    let (_, all) = ctx.list()?;
    if all.iter().any(|v| v == bad) {
        return Err(format!(
            "sysupdate lists {bad}, expected it invisible: {all:?}"
        ));
    }
    let check = ctx
        .vm
        .succeed(&ctx.sysupdate("check-new --json=short"))
        .map_err(h)?;
    if check.contains(bad) {
        return Err(format!("check-new offers {bad}: {}", check.trim()));
    }
    let out = ctx.update(None)?;
    ctx.expect_linked(
        v1,
        "after `update` with only an unparsable release on the mirror",
    )
    .map_err(|e| format!("{e}\nupdate said:\n{}", out.trim()))?;
    let fetched = ctx.served(&ctx.image_path(bad), 200);
    if fetched > 0 {
        return Err(format!("sysupdate downloaded {bad}; log:{}", ctx.log()));
    }
    if ctx.served(&ctx.sums_path(), 200) == 0 {
        return Err(format!(
            "sysupdate never read the manifest, so the check proves nothing; log:{}",
            ctx.log()
        ));
    }
    Ok(())
}
