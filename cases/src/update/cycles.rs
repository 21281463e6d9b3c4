//! The cycles users go through when nothing goes wrong: update, rollback, retention, the
//! timer drop-in, and a version sysupdate cannot see.

use crate::outcome::{CaseError, CaseResult};
use crate::update::ctx::{Ctx, h};

fn nth<'a>(ctx: &'a Ctx, i: usize) -> Result<&'a str, CaseError> {
    ctx.versions.get(i).map(String::as_str).ok_or_else(|| {
        CaseError::from(format!(
            "[test.update] needs at least {} versions after the first",
            i.max(1)
        ))
    })
}

/// Publishes `next`, runs `update`, and checks the download and the symlink. The merged
/// version stays `live` until a refresh.
fn update_to(ctx: &Ctx, next: &str, live: &str) -> CaseResult {
    ctx.publish(next)?;
    let out = ctx.update(None)?;
    if !out.contains(&format!("'{next}'")) {
        return Err(CaseError::from(format!(
            "expected `update` to install '{next}', it said:\n{}",
            out.trim()
        )));
    }
    ctx.expect_downloaded(next)?;
    let look = ctx.look()?;
    let when = format!("after updating to {next}");
    look.expect_linked(&ctx.file(next), &when)?;
    look.expect_no_partial_files(&when)?;
    look.expect_live(live, &format!("{when}, before the refresh"))
}

/// v1 -> v2: listed, downloaded next to v1, symlink moved, v1 live until refresh, then v2
/// live and its service running v2.
pub fn update(ctx: &Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?, nth(ctx, 1)?);
    let limits_before = live_limits(ctx)?;
    ctx.publish(v2)?;
    let (_, all) = ctx.list()?;
    if !all.iter().any(|v| v == v2) {
        return Err(CaseError::from(format!(
            "expected `list` to show {v2} once the mirror published it, it shows {all:?}; mirror log:{}",
            ctx.log()
        )));
    }
    let available = ctx
        .vm
        .succeed(&ctx.sysupdate("check-new --json=short"))
        .map_err(h)?;
    if !available.contains(&format!("\"{v2}\"")) {
        return Err(CaseError::from(format!(
            "expected `check-new` to offer {v2}, it said: {}",
            available.trim()
        )));
    }
    update_to(ctx, v2, v1)?;
    let files = ctx.target_files()?;
    if !files.contains(&ctx.file(v1)) {
        return Err(CaseError::from(format!(
            "the update removed the running release {v1}: {files:?}"
        )));
    }
    ctx.refresh_expect_live(v2, "after `systemd-sysext refresh`")?;
    ctx.expect_service_runs(v2)?;
    // The live unit, as the static diff compares the files: a limit the new release
    // lowers (flatcar/Flatcar#1956) is a regression here too.
    if let (Some((service, before)), Some((_, after))) = (limits_before, live_limits(ctx)?) {
        let lowered = crate::release_diff::live_limits(&service, &before, &after);
        if !lowered.is_empty() {
            return Err(CaseError::from(
                lowered
                    .iter()
                    .map(|c| format!("{}: {}", c.rule, c.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
    }
    Ok(())
}

/// The plan's service and its `systemctl show` limits, when the plan names one.
fn live_limits(ctx: &Ctx) -> Result<Option<(String, String)>, CaseError> {
    let Some(service) = &ctx.plan.service else {
        return Ok(None);
    };
    ctx.vm
        .wait_for_unit(service, std::time::Duration::from_secs(30))
        .map_err(h)?;
    let shown = ctx
        .vm
        .succeed(&format!("systemctl show {service} | grep '^Limit'"))
        .map_err(h)?;
    Ok(Some((service.clone(), shown)))
}

/// v1 -> v2, then back: first as an operator re-links the `CurrentSymlink`, then with
/// `update <older version>`; and the pitfall after that: `vacuum` may delete what the
/// symlink names (rule L13).
pub fn rollback(ctx: &Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?, nth(ctx, 1)?);
    update_to(ctx, v2, v1)?;
    ctx.refresh_expect_live(v2, &format!("after updating to {v2} and refreshing"))?;

    // An operator's rollback: point the symlink at the old file and refresh.
    relink(ctx, v1)?;
    ctx.refresh_expect_live(v1, &format!("after re-linking to {v1} and refreshing"))?;
    ctx.expect_service_runs(v1)?;

    // Forward again, and tidy up as a user short of space would: v1 goes.
    relink(ctx, v2)?;
    ctx.refresh()?;
    ctx.vm
        .succeed(&ctx.sysupdate("vacuum -m 1 2>&1"))
        .map_err(h)?;
    let files = ctx.target_files()?;
    if files != [ctx.file(v2)] {
        return Err(CaseError::from(format!(
            "after `vacuum -m 1` with {v2} current, expected only its file, found {files:?}"
        )));
    }
    ctx.expect_linked(v2, "after `vacuum -m 1`")?;

    // sysupdate's own rollback: `update <older version>` fetches it again and moves the
    // symlink ("is not the newest, proceeding anyway").
    ctx.mirror.clear_requests();
    let out = ctx.update(Some(v1))?;
    ctx.expect_downloaded(v1)?;
    ctx.expect_linked(v1, &format!("after `update {v1}`"))
        .map_err(|e| format!("{e}\nupdate said:\n{}", out.trim()))?;
    ctx.refresh_expect_live(v1, &format!("after `update {v1}` and refreshing"))?;
    ctx.expect_service_runs(v1)?;

    // The pitfall (rule L13): vacuum keeps the newest, which is not the live one.
    ctx.vm
        .succeed(&ctx.sysupdate("vacuum -m 1 2>&1"))
        .map_err(h)?;
    let linked = ctx.linked_file()?;
    let files = ctx.target_files()?;
    if !linked.is_empty() {
        return Err(CaseError::from(format!(
            "rule L13 says `vacuum -m 1` after a rollback deletes the live release; here {} still resolves to '{linked}' ({files:?}): update the rule book",
            ctx.link()
        )));
    }
    eprintln!(
        "note: as rule L13 warns, `vacuum -m 1` after the rollback deleted {} and left {} dangling (files now {files:?})",
        ctx.file(v1),
        ctx.link()
    );
    // What the user sees next: the extension is gone after a refresh.
    ctx.refresh()?;
    let status = ctx
        .vm
        .succeed("systemd-sysext status --json=short")
        .map_err(h)?;
    if crate::sysext_status::merged_on(&status, "/usr")?.contains(&ctx.name) {
        return Err(CaseError::from(format!(
            "{} dangles, yet '{}' is still merged after a refresh",
            ctx.link(),
            ctx.name
        )));
    }
    Ok(())
}

fn relink(ctx: &Ctx, version: &str) -> CaseResult {
    ctx.vm
        .succeed(&format!(
            "ln -sfn {}/{} {}",
            ctx.target_dir(),
            ctx.file(version),
            ctx.link()
        ))
        .map(|_| ())
        .map_err(h)
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
            return Err(CaseError::from(format!(
                "updating to {next} deleted {live}, the merged release: {files:?}"
            )));
        }
        ctx.refresh_expect_live(next, &format!("after updating to {next} and refreshing"))?;
    }
    let files = ctx.target_files()?;
    // Compared as sets: a directory listing is in name order, where 10.0 sorts before 9.0.
    let want: std::collections::BTreeSet<String> =
        versions[1..].iter().map(|v| ctx.file(v)).collect();
    let got: std::collections::BTreeSet<String> = files.iter().cloned().collect();
    if got != want {
        return Err(CaseError::from(format!(
            "with InstancesMax=3 after four releases expected {want:?} on disk, found {files:?}"
        )));
    }
    ctx.expect_service_runs(versions[3])
}

/// The drop-in the bakery's docs give for `systemd-sysupdate.service`: readlink before and
/// after `systemd-sysupdate -C NAME update`, then `after_change` when the link moved. The
/// `+` prefix runs that last command without the unit's sandbox. Written by the same
/// function `sysext-test ignition` prints with, so what a cycle proves is what users get.
fn install_dropin(ctx: &Ctx, after_change: &str, privileged: bool) -> CaseResult {
    let n = &ctx.name;
    let dropin = sysext_builder::ignition::sysupdate_dropin(n, after_change, privileged);
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
        return Err(CaseError::from(format!(
            "systemd-sysupdate.timer does not trigger the service: {timer}"
        )));
    }
    Ok(())
}

/// The form most of the bakery's docs give (`touch /run/reboot-required` on change): the
/// service, started as its timer starts it, stages the update and flags the reboot; the
/// old release stays live. With nothing new it flags nothing.
pub fn timer(ctx: &Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?, nth(ctx, 1)?);
    install_dropin(ctx, "touch /run/reboot-required", false)?;
    run_service(ctx)?;
    ctx.expect_linked(v1, "after the service ran with nothing to update")?;
    if reboot_flagged(ctx)? {
        return Err(CaseError::from(
            "the service flagged a reboot with nothing updated",
        ));
    }
    ctx.publish(v2)?;
    run_service(ctx)?;
    ctx.expect_downloaded(v2)?;
    ctx.expect_linked(v2, "after the service ran")?;
    ctx.vm
        .succeed("test -e /run/reboot-required")
        .map_err(|e| format!("the service staged {v2} but did not flag a reboot: {e}"))?;
    ctx.expect_live(v1, "after the service staged the update (no refresh yet)")?;
    ctx.refresh_expect_live(v2, "after the refresh a reboot would do")
}

/// Whether the docs' drop-in has flagged a reboot (`/run/reboot-required`).
fn reboot_flagged(ctx: &Ctx) -> Result<bool, CaseError> {
    Ok(ctx
        .vm
        .execute("test -e /run/reboot-required")
        .map_err(h)?
        .status
        == 0)
}

/// The docs' drop-in again (`touch /run/reboot-required`), and the reboot it asks for done
/// for real (`Vm::reboot`: the guest's shutdown, a cold boot of its disk): after it the new
/// release is live, merged at boot by systemd-sysext.service, which did not fail. A
/// transfer file whose `CurrentSymlink=` is not the link the release was installed under
/// (sysext-bakery#140, k3s) leaves two links behind, and systemd refuses the merge here,
/// in its own words.
pub fn reboot(ctx: &mut Ctx) -> CaseResult {
    let (v1, v2) = (nth(ctx, 0)?.to_string(), nth(ctx, 1)?.to_string());
    install_dropin(ctx, "touch /run/reboot-required", false)?;
    ctx.publish(&v2)?;
    run_service(ctx)?;
    if !reboot_flagged(ctx)? {
        // The drop-in flags a reboot when the link it watches moves; a transfer file with
        // another CurrentSymlink moves a link it does not watch. The host reboots anyway,
        // at its next OS update.
        eprintln!(
            "note: the service ran with {v2} published and flagged no reboot ({} did not move); rebooting anyway, as the host will at its next OS update",
            ctx.link()
        );
    }
    let took = ctx.vm.reboot().map_err(h)?;
    if reboot_flagged(ctx)? {
        return Err(CaseError::from(
            "/run/reboot-required is still there after the reboot: /run did not start over, so the guest did not really reboot",
        ));
    }
    let outs = ctx
        .vm
        .batch(&[
            "systemctl is-system-running --wait >/dev/null 2>&1; systemctl is-failed systemd-sysext.service",
            "journalctl -b -o cat --no-pager -u systemd-sysext.service",
            "for f in /etc/extensions/*; do echo \"${f##*/} -> $(readlink \"$f\")\"; done",
        ])
        .map_err(h)?;
    let when = format!(
        "after {v1} -> {v2} and a real reboot ({:.1}s)",
        took.as_secs_f64()
    );
    if outs[0].stdout.trim() == "failed" {
        return Err(CaseError::Fail(
            crate::outcome::Assertion::new(format!(
                "expected systemd-sysext.service to merge the extensions at boot {when}; it failed (/etc/extensions: {})",
                outs[2].stdout.lines().map(str::trim).collect::<Vec<_>>().join(", ")
            ))
            .with_evidence(&outs[1].stdout),
        ));
    }
    ctx.expect_live(&v2, &when)?;
    ctx.expect_service_runs(&v2)
}

/// The form some docs give (wasmtime, tilde): `systemd-sysext refresh` on change. Inside
/// systemd-sysupdate.service's sandbox (RestrictNamespaces=net, a syscall filter) the
/// refresh cannot set up its mounts, so the service fails after staging the update. The
/// same drop-in with `+` before the refresh works; the case proves both.
pub fn timer_refresh(ctx: &Ctx) -> CaseResult {
    let (v1, v2, v3) = (nth(ctx, 0)?, nth(ctx, 1)?, nth(ctx, 2)?);
    install_dropin(ctx, "systemd-sysext refresh", false)?;
    ctx.publish(v2)?;
    match run_service(ctx) {
        Ok(()) => {
            return Err(CaseError::from(
                "systemd-sysext refresh inside systemd-sysupdate.service succeeded: the sandbox no longer stops it, so the docs' drop-in is fine; update this case",
            ));
        }
        Err(CaseError::Fail(a)) if a.explanation.contains("Operation not permitted") => eprintln!(
            "note: the docs' refresh drop-in fails inside the unit's sandbox: {}",
            a.explanation
                .lines()
                .find(|l| l.contains("Operation not permitted"))
                .unwrap_or_default()
        ),
        Err(e) => {
            return Err(CaseError::from(format!(
                "expected the sandboxed refresh to fail with EPERM: {e}"
            )));
        }
    }
    ctx.expect_linked(v2, "after the sandboxed refresh failed")?;
    ctx.expect_live(v1, "after the sandboxed refresh failed")?;

    install_dropin(ctx, "systemd-sysext refresh", true)?;
    ctx.publish(v3)?;
    run_service(ctx)?;
    ctx.expect_linked(v3, "after the service ran with `+` before the refresh")?;
    ctx.expect_live(v3, "after the service ran with `+` before the refresh")?;
    ctx.expect_service_runs(v3)
}

/// Starts systemd-sysupdate.service as its timer would and waits for it to finish.
fn run_service(ctx: &Ctx) -> CaseResult {
    let cursor = ctx
        .vm
        .succeed("journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p'")
        .map_err(h)?;
    let out = ctx
        .vm
        .execute("systemctl start systemd-sysupdate.service 2>&1")
        .map_err(h)?;
    if out.status != 0 {
        // systemd logs the unit's failure itself, at once; what its processes printed comes
        // through their stdout streams and may reach the journal later. `--sync` makes
        // journald take in what the streams hold, and the journal is read until it stops
        // growing, so the reason is there (twice it was not, and the case blamed the wrong
        // thing: the second time with reads 0.3 s apart and no sync). The systemd tools the
        // drop-in runs log to journald's socket, not the stream, and journald learns a
        // sender's unit from its cgroup: a `systemd-sysext refresh` that fails and exits at
        // once is often gone before journald looks, so its words carry no unit (a third
        // miss, in CI). They are matched by the tools' names too, after this run's cursor.
        let query = format!(
            "journalctl --sync 2>/dev/null; journalctl --no-pager -o cat --after-cursor='{}' \
             _SYSTEMD_UNIT=systemd-sysupdate.service + UNIT=systemd-sysupdate.service \
             + SYSLOG_IDENTIFIER=systemd-sysupdate + SYSLOG_IDENTIFIER=systemd-sysext | tail -n 60",
            cursor.trim()
        );
        let read = || {
            ctx.vm
                .execute(&query)
                .map(|o| o.combined())
                .unwrap_or_default()
        };
        let mut journal = read();
        for _ in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let again = read();
            if again == journal {
                break;
            }
            journal = again;
        }
        return Err(CaseError::from(format!(
            "systemd-sysupdate.service failed ({}):\n{journal}\nmirror log:{}",
            out.combined().trim(),
            ctx.log()
        )));
    }
    Ok(())
}

/// A release whose version sysupdate cannot parse (`~`): our static check names it, and in
/// the guest it is invisible: not listed, not offered, not downloaded.
pub fn version_rules(ctx: &Ctx) -> CaseResult {
    let Some(bad) = ctx.plan.unparsable_version.as_deref() else {
        return Err(CaseError::from(
            "[test.update] has no unparsable-version to release",
        ));
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
        return Err(CaseError::from(format!(
            "lint of the release directory did not flag {bad} as invisible to sysupdate; it said {rules:?}"
        )));
    }
    let (_, all) = ctx.list()?;
    if all.iter().any(|v| v == bad) {
        return Err(CaseError::from(format!(
            "sysupdate lists {bad}, expected it invisible: {all:?}"
        )));
    }
    let check = ctx
        .vm
        .succeed(&ctx.sysupdate("check-new --json=short"))
        .map_err(h)?;
    if check.contains(bad) {
        return Err(CaseError::from(format!(
            "check-new offers {bad}: {}",
            check.trim()
        )));
    }
    let out = ctx.update(None)?;
    ctx.expect_linked(
        v1,
        "after `update` with only an unparsable release on the mirror",
    )
    .map_err(|e| format!("{e}\nupdate said:\n{}", out.trim()))?;
    let fetched = ctx.served(&ctx.image_path(bad), 200);
    if fetched > 0 {
        return Err(CaseError::from(format!(
            "sysupdate downloaded {bad}; log:{}",
            ctx.log()
        )));
    }
    if ctx.served(&ctx.sums_path(), 200) == 0 {
        return Err(CaseError::from(format!(
            "sysupdate never read the manifest, so the check proves nothing; log:{}",
            ctx.log()
        )));
    }
    Ok(())
}
