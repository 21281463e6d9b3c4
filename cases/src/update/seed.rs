//! The starting point of every cycle: the first release installed the way the bakery's
//! docs tell users to (Butane `storage.files` and `links`), with the transfer and noop files
//! fetched from the mirror as a user fetches them from extensions.flatcar.org.

use crate::outcome::CaseError;
use std::time::Duration;

use crate::outcome::CaseResult;
use crate::shell::quote;
use crate::update::ctx::{Ctx, h, parse_list};

/// Installs the first release in one round trip: the image upload, then a batch that
/// writes the transfer files, links the image, refreshes and asks for the version and
/// `sysupdate list` (each separate SSH exec costs a TCG guest a few tenths of a second).
pub fn install_first_release(ctx: &Ctx) -> CaseResult {
    let first = ctx
        .versions
        .first()
        .ok_or("the update plan has no versions")?;
    ctx.publish(first)?;
    let conf = fetch(ctx, &format!("{}.conf", ctx.name))?;
    let noop = fetch(ctx, "noop.conf")?;
    let image = ctx
        .releases
        .get(first)
        .ok_or_else(|| format!("no release {first} was built"))?;
    let vm = &*ctx.vm;
    let installed = format!("{}/{}", ctx.target_dir(), ctx.file(first));
    let conf_dir = format!("/etc/sysupdate.{}.d", ctx.name);
    let steps = [
        format!("mkdir -p /etc/extensions {conf_dir} /etc/sysupdate.d"),
        format!(
            "printf '%s' {} > {conf_dir}/{}.conf",
            quote(&conf),
            ctx.name
        ),
        format!("printf '%s' {} > /etc/sysupdate.d/noop.conf", quote(&noop)),
        format!("ln -sfn {installed} {}", ctx.link()),
        "systemd-sysext refresh 2>&1".to_string(),
    ];
    let mut cmds: Vec<&str> = steps.iter().map(String::as_str).collect();
    let list = ctx.sysupdate("list --json=short");
    cmds.push(&ctx.plan.version_command);
    cmds.push(&list);
    let outs = vm.upload_and_batch(image, &installed, &cmds).map_err(h)?;
    for (cmd, out) in steps.iter().zip(&outs) {
        if out.status != 0 {
            return Err(CaseError::Harness(sysext_harness::HarnessError::Command {
                cmd: cmd.clone(),
                what: format!("exited {} while installing the first release", out.status),
                output: out.combined(),
            }));
        }
    }
    let live = outs[steps.len()].combined();
    if !live.split_whitespace().any(|w| w == first) {
        return Err(CaseError::from(format!(
            "after installing the first release: expected `{}` to report {first}, it printed: {}",
            ctx.plan.version_command,
            live.trim()
        )));
    }
    let (current, _) = parse_list(&outs[steps.len() + 1].stdout)?;
    if current.as_deref() != Some(first.as_str()) {
        return Err(CaseError::from(format!(
            "after installing {first}, `systemd-sysupdate -C {} list` says the current version is {current:?}",
            ctx.name
        )));
    }
    if let Some(service) = &ctx.plan.service {
        vm.wait_for_unit(service, Duration::from_secs(30))
            .map_err(h)?;
    }
    ctx.mirror.clear_requests();
    Ok(())
}

/// Fetches a transfer file from the mirror over HTTP, as users fetch them from the hub.
fn fetch(ctx: &Ctx, file: &str) -> Result<String, CaseError> {
    let url = format!("{}/{file}", ctx.mirror.url());
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .and_then(|c| c.get(&url).send())
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("fetching {url} from the mirror: {e}"))?;
    resp.text()
        .map_err(|e| CaseError::from(format!("reading {url} from the mirror: {e}")))
}
