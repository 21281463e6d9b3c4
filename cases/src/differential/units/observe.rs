//! The guest side of the units family: a batch of images merged for real (the service
//! manager must see them, so no private namespace), their units started the three ways,
//! every job waited for, and each unit's state read back, then everything undone.

use std::collections::BTreeMap;
use std::time::Duration;

use sysext_harness::{HarnessError, Vm};

use super::judge::Observed;
use crate::differential::stage::GUEST_POOL;
use crate::lint::effects::Fate;

/// Images merged at once. A batch costs a merge, a reload and an unmerge whatever its size.
pub const BATCH: usize = 32;

/// Everything one batch starts and reads.
pub struct Batch {
    /// `dtNNNNN.raw` files or `dtNNNNN` directories under the pool's run/extensions.
    pub images: Vec<String>,
    /// Units started with `systemctl start`.
    pub direct: Vec<String>,
    /// Whether `multi-user.target` is started after the merge (for `.wants` links).
    pub start_target: bool,
    /// Every unit whose state is read.
    pub read: Vec<String>,
    /// Sockets, whose failure status is in the journal, not in `ExecMainStatus`.
    pub sockets: Vec<String>,
    /// The batch's images set `EXTENSION_RELOAD_MANAGER=1`, so merge and unmerge reload.
    pub reloads: bool,
}

/// Waits (bounded) until the manager has no jobs.
const SETTLE: &str = "i=0; while [ $i -lt 300 ] && [ -n \"$(systemctl list-jobs --no-legend 2>/dev/null)\" ]; do sleep 0.2; i=$((i+1)); done";

fn script(b: &Batch) -> String {
    let mut s = format!(
        "cd {GUEST_POOL} && cp -a {} /run/extensions/ && {{ systemd-sysext merge >/run/dt/merge.log 2>&1; echo \"MERGE $?\"; }}; ",
        b.images
            .iter()
            .map(|i| format!("run/extensions/{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !b.direct.is_empty() {
        s.push_str(&format!(
            "systemctl start --no-block {} 2>&1 | sed 's/^/START /'; ",
            b.direct.join(" ")
        ));
    }
    if b.start_target {
        s.push_str("systemctl start --no-block multi-user.target; ");
    }
    s.push_str(SETTLE);
    // No job left is not yet every unit settled: a unit an `Upholds=` keeps starting can be
    // read between its manager's jobs, `activating` with nothing to say about its fate
    // (seen on a loaded arm64 guest). Such states are read again, for up to 10 s.
    s.push_str(&format!(
        "; i=0; while [ $i -lt 50 ] && systemctl show -p ActiveState --value {} | grep -qE '^(activating|deactivating)$'; do sleep 0.2; i=$((i+1)); done",
        b.read.join(" ")
    ));
    s.push_str(&format!(
        "; echo; systemctl show -p Id -p LoadState -p ActiveState -p Result -p ExecMainStatus -p ExecMainStartTimestampMonotonic {}; journalctl --sync 2>/dev/null; ",
        b.read.join(" ")
    ));
    for sock in &b.sockets {
        s.push_str(&format!(
            "echo \"SOCKET {sock} $(journalctl -b -o cat UNIT={sock} | grep -o 'status=[0-9]*' | tail -n 1)\"; "
        ));
    }
    s
}

/// Stops what the batch started and unmerges it. An image with
/// `EXTENSION_RELOAD_MANAGER=1` makes the unmerge reload the manager; without one the
/// reload is ours, so `multi-user.target` forgets the batch's `.wants` links.
fn cleanup(b: &Batch) -> String {
    format!(
        "systemctl stop --no-block {} 2>/dev/null; {SETTLE}; systemd-sysext unmerge >/dev/null 2>&1; rm -rf {}; {}systemctl reset-failed 2>/dev/null; true",
        b.read.join(" "),
        b.images
            .iter()
            .map(|i| format!("/run/extensions/{i}"))
            .collect::<Vec<_>>()
            .join(" "),
        if b.reloads {
            ""
        } else {
            "systemctl daemon-reload; "
        }
    )
}

/// The fate `systemctl show`'s block for one unit describes (and the socket status).
fn fate(props: &BTreeMap<String, String>, socket_status: Option<i32>) -> Observed {
    let get = |k: &str| props.get(k).map(String::as_str).unwrap_or("");
    let words = format!(
        "LoadState={} ActiveState={} Result={} ExecMainStatus={}{}",
        get("LoadState"),
        get("ActiveState"),
        get("Result"),
        get("ExecMainStatus"),
        socket_status
            .map(|s| format!(" (control process status={s})"))
            .unwrap_or_default()
    );
    let status = socket_status.or_else(|| get("ExecMainStatus").parse().ok());
    let started = get("ExecMainStartTimestampMonotonic")
        .parse::<u64>()
        .is_ok_and(|t| t > 0);
    let fate = match (get("LoadState"), get("ActiveState")) {
        ("not-found", _) => Some(Fate::NotFound),
        ("bad-setting" | "error", _) => Some(Fate::BadSetting),
        (_, "active" | "reloading") => Some(Fate::Ran),
        (_, "failed") => match status {
            Some(203) => Some(Fate::Exec),
            Some(216) => Some(Fate::Group),
            Some(217) => Some(Fate::User),
            _ => None,
        },
        (_, "inactive") if get("Result") == "success" && started => Some(Fate::Ran),
        (_, "inactive") if get("Result") == "success" => Some(Fate::NotStarted),
        _ => None,
    };
    Observed { fate, words }
}

/// Parses the `systemctl show` blocks and socket lines of one batch's output.
fn parse(out: &str) -> BTreeMap<String, Observed> {
    let mut sockets: BTreeMap<String, i32> = BTreeMap::new();
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix("SOCKET ") {
            let mut f = rest.split_whitespace();
            if let (Some(u), Some(st)) = (f.next(), f.next())
                && let Some(n) = st.strip_prefix("status=").and_then(|n| n.parse().ok())
            {
                sockets.insert(u.to_string(), n);
            }
        }
    }
    let mut found = BTreeMap::new();
    let mut props: BTreeMap<String, String> = BTreeMap::new();
    let mut flush = |props: &mut BTreeMap<String, String>| {
        if let Some(id) = props.get("Id").cloned() {
            found.insert(id.clone(), fate(props, sockets.get(&id).copied()));
        }
        props.clear();
    };
    for l in out.lines() {
        if l.trim().is_empty() {
            flush(&mut props);
        } else if let Some((k, v)) = l.split_once('=')
            && [
                "Id",
                "LoadState",
                "ActiveState",
                "Result",
                "ExecMainStatus",
                "ExecMainStartTimestampMonotonic",
            ]
            .contains(&k)
        {
            props.insert(k.to_string(), v.to_string());
        }
    }
    flush(&mut props);
    found
}

/// Runs one batch and returns what became of each unit it reads. A merge that fails is a
/// harness error: every image in the family is one systemd takes.
pub fn run(vm: &Vm, b: &Batch) -> Result<BTreeMap<String, Observed>, HarnessError> {
    let out = vm.execute_for(&script(b), Duration::from_secs(240))?;
    let text = out.combined();
    let undo = vm.execute_for(&cleanup(b), Duration::from_secs(240))?;
    if !text.contains("MERGE 0") {
        let log = vm
            .execute("cat /run/dt/merge.log")
            .map(|o| o.combined())
            .unwrap_or_default();
        return Err(HarnessError::Command {
            cmd: "systemd-sysext merge".into(),
            what: "the merge of a units batch failed".into(),
            output: format!("{text}\n{log}"),
        });
    }
    if undo.status != 0 {
        return Err(HarnessError::Command {
            cmd: "undoing a units batch".into(),
            what: format!("exited {}", undo.status),
            output: undo.combined(),
        });
    }
    let mut found = parse(&text);
    for u in &b.read {
        found.entry(u.clone()).or_insert_with(|| Observed {
            fate: None,
            words: format!("systemctl show printed nothing for {u}"),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_blocks_and_socket_lines_become_fates() {
        let out = "MERGE 0\n\nId=dt00001.service\nLoadState=loaded\nActiveState=failed\nResult=exit-code\nExecMainStatus=217\nExecMainStartTimestampMonotonic=5\n\nId=dt00001.socket\nLoadState=loaded\nActiveState=failed\nResult=exit-code\nExecMainStatus=0\n\nId=dt00002.service\nLoadState=bad-setting\nActiveState=inactive\nResult=success\nExecMainStatus=0\nExecMainStartTimestampMonotonic=0\n\nId=dt00003.service\nLoadState=loaded\nActiveState=inactive\nResult=success\nExecMainStatus=0\nExecMainStartTimestampMonotonic=0\nSOCKET dt00001.socket status=216\n";
        let f = parse(out);
        assert_eq!(f["dt00001.service"].fate, Some(Fate::User));
        assert_eq!(f["dt00001.socket"].fate, Some(Fate::Group));
        assert_eq!(f["dt00002.service"].fate, Some(Fate::BadSetting));
        assert_eq!(f["dt00003.service"].fate, Some(Fate::NotStarted));
    }
}
