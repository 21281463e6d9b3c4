//! What systemd does with the generated deployments, many per merge: one restored guest,
//! the pool unpacked once, then rounds of [`LANES`] merges at once, each in a mount
//! namespace of its own with its batch copied into empty search directories: one
//! `systemd-sysext merge` with the debug log, its status and the files a merged host shows.
//! The namespace ends with the lane, and the merge with it: no unmerge to wait for.
//!
//! A merge aborts as a whole when one image's metadata cannot be read (rule book E10): the
//! image it names is taken out and observed alone, and the rest merged again. A merge that
//! fails without naming an image has every deployment of its batch observed alone.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sysext_harness::{HarnessError, Vm};

use super::stage::GUEST_POOL;
use super::variant::token;
use crate::shell::quote;
use crate::sysext_status::merged_on;

/// How many deployments share one merge: the merge's fixed cost (forks, the overlay mount)
/// spread over many, while one abort re-runs few.
pub const BATCH: usize = 24;

/// How many merges run at once, each in its own mount namespace: a merge spends much of its
/// time waiting on forks and the kernel, which the others fill (a busy loop device's 6 s of
/// retries does not overlap: those take turns).
pub const LANES: usize = 4;

/// One lane's limit, in guest seconds: a batch merge takes 2-3 s under TCG, one that
/// refuses a mounted image 6 s more (systemd retries the busy loop device).
const LANE_SECONDS: u64 = 90;

/// What the guest needs to deploy one generated deployment.
#[derive(Debug, Clone)]
pub struct Item {
    pub index: u32,
    /// Pool paths of the entries in /run/extensions (`run/extensions/x.raw`, or a `.v`
    /// directory).
    pub entries: Vec<String>,
    /// Empty directories to create in /etc/extensions.
    pub masks: Vec<String>,
    /// It ships `usr/sbin`: one such item per merge.
    pub sbin: bool,
}

/// What systemd did with one deployment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observation {
    /// One of its images is listed on /usr after the merge.
    pub merged: bool,
    /// With it deployed, the merge failed as a whole.
    pub aborted: bool,
    /// systemd's lines about it (observed alone: the whole debug log of its merge).
    pub words: String,
    /// Probe files a merged host shows for it, path to content.
    pub probes: BTreeMap<String, String>,
    /// Files of its top-level etc/ or var/ that appeared on the host.
    pub outside_visible: Vec<String>,
    /// The host's `/usr/sbin` witness file was gone while it was merged.
    pub sbin_hidden: bool,
    /// Observed in a merge of its own.
    pub alone: bool,
}

/// Deployment indexes named in a line: `dt` and five digits.
pub fn tokens_in(line: &str) -> BTreeSet<u32> {
    let b = line.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i + 7 <= b.len() {
        if &b[i..i + 2] == b"dt" && b[i + 2..i + 7].iter().all(u8::is_ascii_digit) {
            if let Ok(n) = line[i + 2..i + 7].parse() {
                out.insert(n);
            }
            i += 7;
        } else {
            i += 1;
        }
    }
    out
}

/// One guest session of the images family.
pub struct Guest<'a> {
    pub vm: &'a Vm,
    /// A base file in /usr/sbin that a merge must leave visible (`None`: the guest has
    /// none, and the sbin check is not made).
    pub sbin_witness: Option<String>,
    /// Merges at once ([`LANES`], or 1 for the one-at-a-time baseline).
    pub lanes: usize,
}

/// The raw results of one merge.
struct Merge {
    status: i32,
    log: String,
    merged: Vec<String>,
    probes: Vec<(String, String)>,
    outside: Vec<String>,
    sbin_gone: bool,
}

fn command_error(what: &str, out: &sysext_harness::ssh::Output) -> HarnessError {
    HarnessError::Command {
        cmd: what.into(),
        what: format!("exited {}", out.status),
        output: out.combined(),
    }
}

impl Guest<'_> {
    /// Unpacks the pool (uploaded as a tar) and picks the sbin witness.
    pub fn prepare<'v>(
        vm: &'v Vm,
        pool_tar: &std::path::Path,
        lanes: usize,
    ) -> Result<Guest<'v>, HarnessError> {
        let remote = "/run/dt/pool.tar";
        let out = vm.upload_and_batch(
            pool_tar,
            remote,
            &[
                &format!("rm -rf {GUEST_POOL} && mkdir -p {GUEST_POOL} /run/extensions /etc/extensions && tar -xmf {remote} -C {GUEST_POOL} && rm -f {remote}"),
                "for f in /usr/sbin/*; do [ -f \"$f\" ] && { echo \"$f\"; break; }; done",
            ],
        )?;
        if out[0].status != 0 {
            return Err(command_error("unpacking the generated images", &out[0]));
        }
        let sbin_witness = out[1]
            .stdout
            .lines()
            .next()
            .map(str::trim)
            .filter(|l| l.starts_with("/usr/sbin/"))
            .map(str::to_string);
        Ok(Guest {
            vm,
            sbin_witness,
            lanes: lanes.max(1),
        })
    }

    /// The script of one lane: its own mount namespace with empty search directories, the
    /// items deployed there, a debug merge, its status and the probes. The namespace ends
    /// with the lane, and with it the merge. It is made private (nothing reaches the other
    /// lanes or the guest), then shared again in peer groups of its own: systemd-sysext's
    /// merge child mounts the overlay on /usr in a namespace of its own, and the mount
    /// reaches the lane only through propagation.
    fn lane_script(&self, items: &[&Item]) -> String {
        let mut top: Vec<String> = items
            .iter()
            .flat_map(|i| i.entries.iter())
            .filter_map(|e| {
                let rest = e.strip_prefix("run/extensions/")?;
                let first = rest.split('/').next()?;
                Some(quote(&format!("run/extensions/{first}")))
            })
            .collect();
        top.sort();
        top.dedup();
        let masks: Vec<String> = items
            .iter()
            .flat_map(|i| i.masks.iter())
            .map(|m| quote(&format!("/etc/extensions/{m}")))
            .collect();
        let mut deploy = format!(
            "mount --make-rshared / && mount -t tmpfs tmpfs /run/extensions && mount -t tmpfs tmpfs /etc/extensions && cd {GUEST_POOL}"
        );
        if !top.is_empty() {
            deploy.push_str(&format!(" && cp -a {} /run/extensions/", top.join(" ")));
        }
        if !masks.is_empty() {
            deploy.push_str(&format!(" && mkdir -p {}", masks.join(" ")));
        }
        let witness = self
            .sbin_witness
            .as_deref()
            .map(|w| format!("[ -e {} ] || echo S;", quote(w)))
            .unwrap_or_default();
        let probes = format!(
            "for f in /usr/share/dt[0-9]*/probe /opt/dt[0-9]*/probe /usr/share/dtstack/*/winner; do [ -f \"$f\" ] && printf 'P %s %s\\n' \"$f\" \"$(cat \"$f\")\"; done; for f in /etc/dt[0-9]*-probe /var/lib/dt[0-9]*-probe; do [ -e \"$f\" ] && echo \"O $f\"; done; {witness} true"
        );
        format!(
            "{deploy} || {{ echo '@@deploy-failed'; exit 90; }}\necho '@@merge'\nSYSTEMD_LOG_LEVEL=debug systemd-sysext merge --no-reload 2>&1\necho \"@@rc $?\"\necho '@@status'\nsystemd-sysext status --json=short\necho '@@probes'\n{probes}\n"
        )
    }

    /// Runs one merge per unit, all at once (callers pass at most [`LANES`]), each in its
    /// own mount namespace, in one round trip. Lanes start and end together: letting a new
    /// merge start while another lane's loop devices are still being torn down hung a
    /// merge for minutes (seed 5, 200 images, `xargs -P 4`); rounds never did.
    fn merges(&self, units: &[Vec<&Item>]) -> Result<Vec<Merge>, HarnessError> {
        let mut script = String::from("rm -f /run/dt/lane.*\n");
        for (n, u) in units.iter().enumerate() {
            script.push_str(&format!(
                "timeout -k 5 {LANE_SECONDS} unshare -m --propagation private sh -c {} > /run/dt/lane.{n} 2>&1 &\n",
                quote(&self.lane_script(u))
            ));
        }
        script.push_str("wait\n");
        for n in 0..units.len() {
            script.push_str(&format!("echo '@@lane {n}'; cat /run/dt/lane.{n}\n"));
        }
        let out = self
            .vm
            .execute_for(&script, std::time::Duration::from_secs(LANE_SECONDS + 15))?;
        let mut lanes: Vec<&str> = Vec::new();
        let mut rest = out.stdout.as_str();
        for n in 0..units.len() {
            let mark = format!("@@lane {n}\n");
            let at = rest.find(&mark).ok_or_else(|| HarnessError::Command {
                cmd: format!("{} parallel merges", units.len()),
                what: format!("printed no result for lane {n}"),
                output: out.combined(),
            })?;
            if n > 0 {
                lanes.push(&rest[..at]);
            }
            rest = &rest[at + mark.len()..];
        }
        lanes.push(rest);
        lanes.into_iter().map(|l| parse_lane(l, &out)).collect()
    }

    /// What one merge says about each of `items`.
    fn attribute(m: &Merge, items: &[&Item], alone: bool) -> BTreeMap<u32, Observation> {
        let mut obs = BTreeMap::new();
        for it in items {
            let t = token(it.index);
            let words = if alone {
                m.log.clone()
            } else {
                m.log
                    .lines()
                    .filter(|l| {
                        tokens_in(l).contains(&it.index) && !l.starts_with("Using extensions")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            obs.insert(
                it.index,
                Observation {
                    merged: m.merged.iter().any(|n| n.starts_with(&t)),
                    aborted: alone && m.status != 0,
                    words,
                    probes: m
                        .probes
                        .iter()
                        .filter(|(p, _)| tokens_in(p).contains(&it.index))
                        .cloned()
                        .collect(),
                    outside_visible: m
                        .outside
                        .iter()
                        .filter(|p| tokens_in(p).contains(&it.index))
                        .cloned()
                        .collect(),
                    sbin_hidden: it.sbin && m.sbin_gone,
                    alone,
                },
            );
        }
        obs
    }

    /// Observes `item` in a merge of its own.
    pub fn alone(&self, item: &Item) -> Result<Observation, HarnessError> {
        let m = self.merges(&[vec![item]])?.remove(0);
        Ok(Self::attribute(&m, &[item], true)
            .remove(&item.index)
            .unwrap_or_default())
    }

    /// Observes `batches` (each with at most one item shipping usr/sbin) in rounds of
    /// [`LANES`] merges, in the order given (callers put merges that will stall first, so
    /// their stalls overlap); a merge that fails as a whole has the items it names
    /// observed alone and the rest merged again later.
    pub fn observe(
        &self,
        batches: Vec<Vec<&Item>>,
        progress: &dyn Fn(usize, usize),
    ) -> Result<BTreeMap<u32, Observation>, HarnessError> {
        let total: usize = batches.iter().map(Vec::len).sum();
        let mut out = BTreeMap::new();
        let mut queue: std::collections::VecDeque<Vec<&Item>> = batches.into();
        while !queue.is_empty() {
            let take = queue.len().min(self.lanes);
            let units: Vec<Vec<&Item>> = queue.drain(..take).collect();
            let merges = self.merges(&units)?;
            for (unit, m) in units.into_iter().zip(merges) {
                if m.status == 0 || unit.len() == 1 {
                    out.extend(Self::attribute(&m, &unit, unit.len() == 1));
                    continue;
                }
                let named: BTreeSet<u32> = m
                    .log
                    .lines()
                    .filter(|l| l.contains("Failed to"))
                    .flat_map(tokens_in)
                    .filter(|i| unit.iter().any(|it| it.index == *i))
                    .collect();
                if named.is_empty() {
                    queue.extend(unit.into_iter().map(|it| vec![it]));
                    continue;
                }
                let (alone, rest): (Vec<&Item>, Vec<&Item>) =
                    unit.into_iter().partition(|it| named.contains(&it.index));
                queue.extend(alone.into_iter().map(|it| vec![it]));
                if !rest.is_empty() {
                    queue.push_back(rest);
                }
            }
            progress(out.len(), total);
        }
        Ok(out)
    }
}

/// Reads one lane's output: its merge log and status, the probes.
fn parse_lane(text: &str, whole: &sysext_harness::ssh::Output) -> Result<Merge, HarnessError> {
    let broken = |what: &str| HarnessError::Command {
        cmd: "a merge lane".into(),
        what: what.into(),
        output: format!("{text}\n--- whole output ---\n{}", whole.combined()),
    };
    if text.contains("@@deploy-failed") {
        return Err(broken("could not deploy the generated images"));
    }
    let section = |from: &str, to: &str| -> Option<&str> {
        let a = text.find(from)? + from.len();
        let b = text[a..].find(to).map_or(text.len(), |b| a + b);
        Some(&text[a..b])
    };
    let log = section("@@merge\n", "@@rc ").ok_or_else(|| broken("printed no merge"))?;
    let rc = section("@@rc ", "\n")
        .and_then(|r| r.trim().parse::<i32>().ok())
        .ok_or_else(|| broken("printed no merge exit status"))?;
    let status = section("@@status\n", "@@probes").ok_or_else(|| broken("printed no status"))?;
    let probes_text = section("@@probes\n", "\u{0}").unwrap_or_default();
    let merged = merged_on(status.trim(), "/usr").map_err(|a| broken(&a.to_string()))?;
    let mut probes = Vec::new();
    let mut outside = Vec::new();
    let mut sbin_gone = false;
    for l in probes_text.lines() {
        if let Some(rest) = l.strip_prefix("P ") {
            if let Some((path, content)) = rest.split_once(' ') {
                probes.push((path.to_string(), content.to_string()));
            }
        } else if let Some(path) = l.strip_prefix("O ") {
            outside.push(path.to_string());
        } else if l == "S" {
            sbin_gone = true;
        }
    }
    Ok(Merge {
        status: rc,
        log: log.to_string(),
        merged,
        probes,
        outside,
        sbin_gone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_anywhere_in_a_line() {
        assert_eq!(
            tokens_in("Failed to read metadata for image dt00012_1.2: No medium found"),
            BTreeSet::from([12])
        );
        assert_eq!(
            tokens_in("Using extensions 'dt00001.raw', 'dt00002-1.2.3-x86-64.raw'."),
            BTreeSet::from([1, 2])
        );
        assert!(tokens_in("dt0001 is too short").is_empty());
    }
}
