//! The guest side of the transfers family: each case's transfer file in a definitions
//! directory of its own, `systemd-sysupdate --definitions=DIR list` and `check-new`
//! against the mirror, several cases at once.

use std::collections::BTreeMap;
use std::time::Duration;

use sysext_harness::{HarnessError, Vm};

use super::judge::Observed;
use super::stage::{GUEST_DEFINITIONS, GUEST_TARGETS};
use crate::differential::stage::GUEST_POOL;

/// Cases run at once (each is two sysupdate processes, one after the other).
pub const LANES: usize = 6;
/// Cases per guest command.
pub const BATCH: usize = 12;

const SYSUPDATE: &str = "/usr/lib/systemd/systemd-sysupdate";

/// The script for `cases` (`(case dir, transfer file name)`), run `lanes` at a time.
fn script(cases: &[(String, String)], lanes: usize) -> String {
    // Each lane runs in the background of a shell that has the SSH session's terminal:
    // sysupdate must not touch it (a background read stops the whole lane with SIGTTIN),
    // so its stdin is /dev/null and it is told the terminal is dumb.
    let mut s =
        String::from("mkdir -p /run/dt/out; export TERM=dumb SYSTEMD_COLORS=0 NO_COLOR=1; ");
    for chunk in cases.chunks(lanes.max(1)) {
        for (dir, file) in chunk {
            let defs = format!("{GUEST_DEFINITIONS}/{dir}");
            let out = format!("/run/dt/out/{dir}");
            s.push_str(&format!(
                "( mkdir -p {defs} {GUEST_TARGETS}/{dir} && cp {GUEST_POOL}/{dir}/{file} {defs}/ ; \
                 timeout -k 5 120 {SYSUPDATE} --definitions={defs} list --json=short </dev/null >{out}.list 2>{out}.list.err; echo $? >{out}.list.rc; \
                 timeout -k 5 120 {SYSUPDATE} --definitions={defs} check-new --json=short </dev/null >{out}.new 2>{out}.new.err; echo $? >{out}.new.rc ) & "
            ));
        }
        s.push_str("wait; ");
    }
    for (dir, _) in cases {
        let out = format!("/run/dt/out/{dir}");
        for part in ["list.rc", "list", "list.err", "new.rc", "new", "new.err"] {
            s.push_str(&format!(
                "echo '@@ {dir} {part}'; cat {out}.{part} 2>/dev/null; "
            ));
        }
    }
    s
}

/// The versions of `list --json=short`'s `all`, and `check-new`'s `available`.
fn parse_case(parts: &BTreeMap<&str, String>) -> Observed {
    let get = |k: &str| parts.get(k).map(String::as_str).unwrap_or("").trim();
    let list_rc: i32 = get("list.rc").parse().unwrap_or(-1);
    let list: serde_json::Value = serde_json::from_str(get("list")).unwrap_or_default();
    let versions: Vec<String> = list
        .get("all")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let new: serde_json::Value = serde_json::from_str(get("new")).unwrap_or_default();
    let available = new
        .get("available")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let words = if list_rc != 0 {
        format!("list exited {list_rc}: {}", last_lines(get("list.err"), 4))
    } else {
        format!(
            "list: {}; check-new: {}{}",
            get("list"),
            get("new"),
            if get("new.rc") != "0" {
                format!(
                    " (exit {}: {})",
                    get("new.rc"),
                    last_lines(get("new.err"), 3)
                )
            } else {
                String::new()
            }
        )
    };
    Observed {
        fails: list_rc != 0,
        versions,
        available,
        words,
    }
}

/// Whether either sysupdate call of a case ran into its `timeout`.
fn timed_out(parts: &BTreeMap<&str, String>) -> bool {
    ["list.rc", "new.rc"]
        .iter()
        .any(|k| matches!(parts.get(k).map(|v| v.trim()), Some("124" | "137")))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Runs `cases` in the guest; every case gets an observation (an unparsable one says so).
pub fn run(
    vm: &Vm,
    cases: &[(String, String)],
    lanes: usize,
) -> Result<BTreeMap<String, Observed>, HarnessError> {
    let out = vm.execute_for(&script(cases, lanes), Duration::from_secs(600))?;
    let text = out.stdout;
    let mut sections: BTreeMap<String, BTreeMap<&str, String>> = BTreeMap::new();
    let mut current: Option<(String, &str)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("@@ ")
            && let Some((dir, part)) = rest.split_once(' ')
            && let Some(p) = ["list.rc", "list", "list.err", "new.rc", "new", "new.err"]
                .into_iter()
                .find(|p| *p == part)
        {
            current = Some((dir.to_string(), p));
            sections
                .entry(dir.to_string())
                .or_default()
                .insert(p, String::new());
            continue;
        }
        if let Some((dir, p)) = &current
            && let Some(s) = sections.get_mut(dir).and_then(|m| m.get_mut(p))
        {
            s.push_str(line);
            s.push('\n');
        }
    }
    let mut found = BTreeMap::new();
    for (dir, _) in cases {
        let o = match sections.get(dir) {
            // `timeout` gave up (124) or killed it (137): no verdict on lint, never a
            // failure that could agree with one lint predicts.
            Some(parts) if timed_out(parts) => {
                return Err(HarnessError::Command {
                    cmd: "systemd-sysupdate list/check-new".into(),
                    what: format!("timed out for {dir}"),
                    output: parts.get("list.err").cloned().unwrap_or_default(),
                });
            }
            Some(parts) if parts.contains_key("list.rc") => parse_case(parts),
            _ => {
                return Err(HarnessError::Command {
                    cmd: "systemd-sysupdate list/check-new".into(),
                    what: format!("no output for {dir}"),
                    output: out.stderr.clone(),
                });
            }
        };
        found.insert(dir.clone(), o);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_reads_from_its_sections() {
        let mut parts = BTreeMap::new();
        parts.insert("list.rc", "0\n".to_string());
        parts.insert(
            "list",
            "{\"current\":null,\"all\":[\"1.10.0\",\"1.2.3\"],\"appstreamUrls\":[]}\n".to_string(),
        );
        parts.insert("new.rc", "0\n".to_string());
        parts.insert("new", "{\"available\":\"1.10.0\"}\n".to_string());
        let o = parse_case(&parts);
        assert!(!o.fails);
        assert_eq!(o.versions, vec!["1.10.0", "1.2.3"]);
        assert_eq!(o.available.as_deref(), Some("1.10.0"));
        parts.insert("list.rc", "1\n".to_string());
        parts.insert("list.err", "Failed to parse manifest\n".to_string());
        let failed = parse_case(&parts);
        assert!(failed.fails);
        assert!(failed.words.contains("Failed to parse manifest"));
        assert!(!timed_out(&parts));
        parts.insert("list.rc", "124\n".to_string());
        assert!(
            timed_out(&parts),
            "a timeout is the harness's, not sysupdate's"
        );
    }
}
