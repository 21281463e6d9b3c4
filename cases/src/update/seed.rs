//! The starting point of every cycle: the first release installed the way the bakery's
//! docs tell users to (Butane `storage.files` and `links`), with the transfer and noop files
//! fetched from the mirror as a user fetches them from extensions.flatcar.org.

use crate::vm::CaseError;
use std::time::Duration;

use super::{Ctx, h};
use crate::vm::CaseResult;

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
    let vm = ctx.vm;
    vm.succeed(&format!(
        "mkdir -p {} /etc/extensions /etc/sysupdate.{}.d /etc/sysupdate.d",
        ctx.target_dir(),
        ctx.name
    ))
    .map_err(h)?;
    vm.upload(image, &format!("{}/{}", ctx.target_dir(), ctx.file(first)))
        .map_err(h)?;
    vm.succeed(&format!(
        "ln -sfn {}/{} {}",
        ctx.target_dir(),
        ctx.file(first),
        ctx.link()
    ))
    .map_err(h)?;
    vm.write_file(
        &format!("/etc/sysupdate.{}.d/{}.conf", ctx.name, ctx.name),
        &conf,
    )
    .map_err(h)?;
    vm.write_file("/etc/sysupdate.d/noop.conf", &noop)
        .map_err(h)?;
    ctx.refresh()?;
    ctx.expect_live(first, "after installing the first release")?;
    if let Some(service) = &ctx.plan.service {
        vm.wait_for_unit(service, Duration::from_secs(30))
            .map_err(h)?;
    }
    let (current, _) = ctx.list()?;
    if current.as_deref() != Some(first.as_str()) {
        return Err(CaseError::from(format!(
            "after installing {first}, `systemd-sysupdate -C {} list` says the current version is {current:?}",
            ctx.name
        )));
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
