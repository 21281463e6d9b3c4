//! services: units the image enables become active after the merge, as they would at boot,
//! and stay up; the other shipped services start once without failing; nothing failed, and
//! no unit of the extension logged an error. Each step is one round trip for all units, and
//! every wait is a poll that ends as soon as systemd has decided.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sysext_harness::Vm;

use crate::manifest::Manifest;
use crate::outcome::{Assertion, CaseError, CaseResult};
use crate::subject::Subject;

/// Properties that say whether a unit runs, why not, and what would start it.
const PROPS: &str = "Id,LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,InvocationID,Job,UpheldBy,WantedBy,RequiredBy,TriggeredBy";

/// How long an inactive unit that something pulls in may sit without a job before we
/// conclude nothing will start it (systemd enforces `Upholds=` from its event loop).
const GRACE: Duration = Duration::from_secs(3);

/// The checks once the image is merged at run time.
pub fn check(vm: &Vm, s: &Subject) -> CaseResult {
    start_as_boot_does(vm, s)?;
    let invocations = wait_active(vm, &s.enabled_services)?;
    stay_up(vm, &invocations)?;
    start_others(vm, &s.other_services)?;
    waiting_set_up(vm, &s.manifest.waiting)?;
    listening_and_created(vm, &s.manifest)?;
    let mut cmds = vec!["systemctl --failed --no-legend --plain".to_string()];
    cmds.extend(
        s.units
            .iter()
            .map(|u| format!("journalctl -b --no-pager -o cat -p err -u {u}")),
    );
    let outs = vm.batch(&cmds.iter().map(String::as_str).collect::<Vec<_>>())?;
    if !outs[0].stdout.trim().is_empty() {
        return Err(Assertion::new("expected `systemctl --failed` to be empty")
            .with_evidence(&outs[0].stdout)
            .into());
    }
    for (unit, out) in s.units.iter().zip(&outs[1..]) {
        let errors = out.stdout.trim();
        if !errors.is_empty() && !errors.contains("-- No entries --") {
            return Err(
                Assertion::new(format!("expected no errors logged by {unit}"))
                    .with_evidence(errors)
                    .into(),
            );
        }
    }
    Ok(())
}

/// `systemctl show -p PROPS` of several units: one map per unit, by `Id`.
fn show(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let props: BTreeMap<String, String> = block
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(id) = props.get("Id").cloned() {
            out.insert(id, props);
        }
    }
    out
}

fn show_cmd(units: &[&String]) -> String {
    let names: Vec<&str> = units.iter().map(|u| u.as_str()).collect();
    format!("systemctl show -p {PROPS} -- {}", names.join(" "))
}

/// systemd's own account of a unit that is not running: its properties and journal. A
/// unit systemd cannot find gets only its words for that (`LoadState=not-found`, "could not
/// be found"): the inactive, dead, upheld-by-nothing properties it also shows describe a
/// unit that exists, and must never satisfy the pins of one.
pub fn evidence(vm: &Vm, unit: &str) -> Result<String, CaseError> {
    let outs = vm.batch(&[
        &format!("systemctl show -p LoadState,ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,UpheldBy,WantedBy,RequiredBy,TriggeredBy -- {unit}"),
        // Each distinct line once, oldest first: a unit that Upholds= restarts floods its
        // journal with the same few lines, and the first ones say why it failed.
        &format!("journalctl -b --no-pager -o cat -u {unit} | awk '!seen[$0]++' | head -n 40"),
        &format!("systemctl status --no-pager -- {unit} 2>&1 | head -n 3"),
    ])?;
    if outs[0]
        .stdout
        .lines()
        .any(|l| l.trim() == "LoadState=not-found")
    {
        return Ok(format!("LoadState=not-found\n{}", outs[2].stdout));
    }
    Ok(format!("{}\n{}", outs[0].stdout, outs[1].stdout))
}

/// Fails on the first unit `systemctl --failed --no-legend --plain` listed (`listed`), with
/// its state and journal as evidence; `after` says when ("after booting with X").
pub fn none_failed(vm: &Vm, listed: &str, after: &str) -> CaseResult {
    let failed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    match failed.first() {
        Some(unit) => Err(Assertion::new(format!(
            "expected no failed unit {after}; failed: {failed:?}"
        ))
        .with_evidence(&evidence(vm, unit)?)
        .into()),
        None => Ok(()),
    }
}

/// After a run-time merge, what a boot would do for the image's units: a `daemon-reload`
/// when the image ships units without `EXTENSION_RELOAD_MANAGER=1`, then the boot targets
/// started (what `.wants` links pull in; `Upholds=` needs nothing).
pub fn start_as_boot_does(vm: &Vm, s: &Subject) -> CaseResult {
    if s.units.is_empty() && s.enabled_services.is_empty() {
        return Ok(());
    }
    let mut setup = Vec::new();
    if !s.reload_manager && !s.units.is_empty() {
        setup.push("systemctl daemon-reload");
    }
    // A failing wanted unit does not fail the target's job.
    setup.push("systemctl start multi-user.target sockets.target timers.target");
    for out in vm.batch(&setup)? {
        if out.status != 0 {
            return Err(
                Assertion::new("expected the boot targets to start after the merge")
                    .with_evidence(&out.combined())
                    .into(),
            );
        }
    }
    Ok(())
}

/// Polls until every unit is active; returns each one's `InvocationID`. Fails as soon as
/// one has failed, or is inactive with no job queued and nothing that would start it.
pub fn wait_active(vm: &Vm, units: &[String]) -> Result<BTreeMap<String, String>, CaseError> {
    let mut active = BTreeMap::new();
    if units.is_empty() {
        return Ok(active);
    }
    let timeout = Duration::from_secs(15) * vm.accel.slowdown(vm.arch);
    let start = Instant::now();
    let mut idle_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let pending: Vec<&String> = units.iter().filter(|u| !active.contains_key(*u)).collect();
        // One systemctl per poll (each costs ~0.5 s under TCG); `Job` is empty unless a job
        // is queued for the unit.
        let shown = vm.execute(&show_cmd(&pending))?;
        let props = show(&shown.stdout);
        for unit in &pending {
            let p = props.get(unit.as_str());
            let get = |k: &str| p.and_then(|p| p.get(k)).map(String::as_str).unwrap_or("");
            let queued = !get("Job").trim().is_empty();
            // A unit systemd cannot find is not a unit that nothing starts: it gets its
            // own words (`LoadState=not-found`), never a stopped unit's.
            if get("LoadState") == "not-found" {
                return Err(Assertion::new(format!(
                    "expected {unit} to be a unit the image ships or enables; systemd has no such unit"
                ))
                .with_evidence(&evidence(vm, unit)?)
                .into());
            }
            match get("ActiveState") {
                "active" => {
                    active.insert(unit.to_string(), get("InvocationID").to_string());
                }
                "failed" => {
                    return Err(Assertion::new(format!(
                        "expected {unit} (enabled by the image) to be active after the merge; it failed"
                    ))
                    .with_evidence(&evidence(vm, unit)?)
                    .into());
                }
                "inactive" if !queued => {
                    let pulled = ["UpheldBy", "WantedBy", "RequiredBy", "TriggeredBy"]
                        .iter()
                        .any(|k| !get(k).trim().is_empty());
                    let since = *idle_since
                        .entry(unit.to_string())
                        .or_insert_with(Instant::now);
                    if !pulled || since.elapsed() > GRACE {
                        return Err(Assertion::new(format!(
                            "expected {unit} (enabled by the image) to be active after the merge; it is inactive and nothing is starting it"
                        ))
                        .with_evidence(&evidence(vm, unit)?)
                        .into());
                    }
                }
                _ => {
                    idle_since.remove(unit.as_str());
                }
            }
        }
        if active.len() == units.len() {
            return Ok(active);
        }
        if start.elapsed() > timeout {
            let still: Vec<&String> = units.iter().filter(|u| !active.contains_key(*u)).collect();
            return Err(Assertion::new(format!(
                "expected {still:?} active within {timeout:?} of the merge"
            ))
            .with_evidence(&shown.stdout)
            .into());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A `Type=simple` service is "active" the moment its process is forked, so one look can
/// catch a daemon that is about to exit 1. Up means still active, in the same activation
/// (`InvocationID`), two seconds later: one look for all units.
pub fn stay_up(vm: &Vm, invocations: &BTreeMap<String, String>) -> CaseResult {
    if invocations.is_empty() {
        return Ok(());
    }
    let units: Vec<&String> = invocations.keys().collect();
    let out = vm.execute(&format!("sleep 2; {}", show_cmd(&units)))?;
    let props = show(&out.stdout);
    for (unit, id) in invocations {
        let p = props.get(unit.as_str());
        let get = |k: &str| p.and_then(|p| p.get(k)).map(String::as_str).unwrap_or("");
        if get("ActiveState") != "active" || get("InvocationID") != id {
            return Err(Assertion::new(format!(
                "expected {unit} (enabled by the image) to stay up after the merge; it failed or was restarted within 2 s"
            ))
            .with_evidence(&evidence(vm, unit)?)
            .into());
        }
    }
    Ok(())
}

/// Units that wait for configuration (kubelet before kubeadm) must be loaded and pulled in
/// by something, so they start once configured; running is not required, and a restart
/// loop is what they are expected to show.
pub fn waiting_set_up(vm: &Vm, units: &[String]) -> CaseResult {
    if units.is_empty() {
        return Ok(());
    }
    let out = vm.execute(&format!(
        "systemctl show -p Id,LoadState,ActiveState,SubState,UpheldBy,WantedBy,RequiredBy,TriggeredBy -- {}",
        units.join(" ")
    ))?;
    let props = show(&out.stdout);
    for unit in units {
        let p = props.get(unit);
        let get = |k: &str| p.and_then(|p| p.get(k)).map(String::as_str).unwrap_or("");
        let pulled = ["UpheldBy", "WantedBy", "RequiredBy", "TriggeredBy"]
            .iter()
            .any(|k| !get(k).trim().is_empty());
        if get("LoadState") != "loaded" || !pulled {
            return Err(Assertion::new(format!(
                "expected {unit} (waits for configuration per the manifest) to be loaded and pulled in by a target, so it starts once configured"
            ))
            .with_evidence(&evidence(vm, unit)?)
            .into());
        }
    }
    Ok(())
}

/// The manifest's ports listen and its paths exist, polled for a few seconds (a daemon
/// binds and writes its socket a moment after systemd calls it started). Ports are read
/// from /proc/net, which every guest has.
pub fn listening_and_created(vm: &Vm, m: &Manifest) -> CaseResult {
    if m.ports.is_empty() && m.creates.is_empty() {
        return Ok(());
    }
    let mut checks: Vec<(String, String)> = Vec::new();
    for p in &m.ports {
        // TCP sockets listen in state 0A; a bound UDP socket shows state 07.
        let (files, state) = match p.proto.as_str() {
            "udp" => ("/proc/net/udp /proc/net/udp6", "07"),
            _ => ("/proc/net/tcp /proc/net/tcp6", "0A"),
        };
        checks.push((
            format!("{}/{} listening", p.port, p.proto),
            format!(
                "awk '$2 ~ /:{:04X}$/ && $4 == \"{state}\" {{ f = 1 }} END {{ exit !f }}' {files}",
                p.port
            ),
        ));
    }
    for path in &m.creates {
        checks.push((
            format!("{path} exists"),
            format!("test -e {}", crate::shell::quote(path)),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10) * vm.accel.slowdown(vm.arch);
    loop {
        let cmds: Vec<&str> = checks.iter().map(|(_, c)| c.as_str()).collect();
        let outs = vm.batch(&cmds)?;
        let missing: Vec<&str> = checks
            .iter()
            .zip(&outs)
            .filter(|(_, o)| o.status != 0)
            .map(|((what, _), _)| what.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let state = vm.execute("cat /proc/net/tcp /proc/net/udp; systemctl --no-pager --no-legend list-units --state=failed,activating")?;
            return Err(Assertion::new(format!(
                "expected, once the services are up: {}",
                missing.join(", ")
            ))
            .with_evidence(&state.stdout)
            .into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Services the image ships but does not enable must start once without failing.
fn start_others(vm: &Vm, units: &[String]) -> CaseResult {
    if units.is_empty() {
        return Ok(());
    }
    let names = units.join(" ");
    let outs = vm.batch(&[
        &format!("systemctl start -- {names}"),
        &format!("sleep 1; systemctl show -p Id,ActiveState -- {names}"),
    ])?;
    let props = show(&outs[1].stdout);
    for unit in units {
        let state = props
            .get(unit)
            .and_then(|p| p.get("ActiveState"))
            .map(String::as_str);
        if state == Some("failed") {
            return Err(Assertion::new(format!(
                "expected {unit} to start (it needs no configuration per the manifest); it failed"
            ))
            .with_evidence(&evidence(vm, unit)?)
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_splits_units_by_id() {
        let text =
            "Id=a.service\nActiveState=active\nUpheldBy=\n\nId=b.service\nActiveState=failed\n";
        let m = show(text);
        assert_eq!(m["a.service"]["ActiveState"], "active");
        assert_eq!(m["a.service"]["UpheldBy"], "");
        assert_eq!(m["b.service"]["ActiveState"], "failed");
    }
}
