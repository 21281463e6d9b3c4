//! What a cycle works with ([`Ctx`]): the guest, the mirror, the releases, and the few
//! reads every cycle makes (which file the symlink names, which version answers, what was
//! downloaded), each in one round trip.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sysext_builder::Arch;
use sysext_harness::{Mirror, Vm};

use crate::manifest::UpdatePlan;
use crate::outcome::{CaseError, CaseResult};

/// Where systemd-sysupdate lives on Debian (it is not on PATH).
pub(crate) const SYSUPDATE: &str = "/usr/lib/systemd/systemd-sysupdate";

/// What a cycle works with.
pub struct Ctx<'a> {
    /// Mutable only to reboot it ([`Vm::reboot`]).
    pub vm: &'a mut Vm,
    pub mirror: &'a Mirror,
    pub name: String,
    pub arch: Arch,
    pub plan: &'a UpdatePlan,
    /// Built images by version, the first release included.
    pub releases: &'a BTreeMap<String, PathBuf>,
    /// The versions in release order: the spec's own, then the plan's.
    pub versions: Vec<String>,
}

impl Ctx<'_> {
    pub(crate) fn file(&self, version: &str) -> String {
        format!("{}-{version}-{}.raw", self.name, self.arch.systemd_name())
    }

    pub(crate) fn target_dir(&self) -> String {
        format!("/opt/extensions/{}", self.name)
    }

    pub(crate) fn link(&self) -> String {
        format!("/etc/extensions/{}.raw", self.name)
    }

    /// `systemd-sysupdate -C NAME <args>` as a guest command line.
    pub(crate) fn sysupdate(&self, args: &str) -> String {
        format!("{SYSUPDATE} -C {} {args}", self.name)
    }

    pub(crate) fn publish(&self, version: &str) -> CaseResult {
        let image = self
            .releases
            .get(version)
            .ok_or_else(|| format!("no release {version} was built"))?;
        self.mirror.publish(image).map_err(h)
    }

    /// What a user looks at after each step, in one round trip: optionally a
    /// `systemd-sysext refresh` first (which must exit 0), then where the symlink points,
    /// what is in the target directory and what the extension's command reports.
    pub(crate) fn look_after(&self, refresh: bool) -> Result<Look, CaseError> {
        let readlink = format!("readlink -e {} || true", self.link());
        let ls = format!("ls -A {} 2>/dev/null || true", self.target_dir());
        let mut cmds: Vec<&str> = Vec::new();
        if refresh {
            cmds.push("systemd-sysext refresh 2>&1");
        }
        cmds.extend([readlink.as_str(), ls.as_str(), &self.plan.version_command]);
        let mut outs = self.vm.batch(&cmds).map_err(h)?.into_iter();
        // `batch` returns one output per command; the fallback only keeps this total.
        let mut next = || {
            outs.next().unwrap_or(sysext_harness::ssh::Output {
                status: -1,
                stdout: String::new(),
                stderr: String::new(),
            })
        };
        if refresh {
            let out = next();
            if out.status != 0 {
                return Err(CaseError::Harness(sysext_harness::HarnessError::Command {
                    cmd: "systemd-sysext refresh".into(),
                    what: format!("exited {}", out.status),
                    output: out.combined(),
                }));
            }
        }
        let linked = next()
            .stdout
            .trim()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let files = next().stdout.lines().map(str::to_string).collect();
        let live = next().combined();
        Ok(Look {
            linked,
            files,
            live,
            link: self.link(),
            target_dir: self.target_dir(),
            version_command: self.plan.version_command.clone(),
        })
    }

    /// [`Ctx::look_after`] without a refresh.
    pub(crate) fn look(&self) -> Result<Look, CaseError> {
        self.look_after(false)
    }

    /// The file the `CurrentSymlink` resolves to (empty when it dangles).
    pub(crate) fn linked_file(&self) -> Result<String, CaseError> {
        Ok(self.look()?.linked)
    }

    /// Files in the target directory, hidden ones (sysupdate's temp files) included.
    pub(crate) fn target_files(&self) -> Result<Vec<String>, CaseError> {
        Ok(self.look()?.files)
    }

    /// Checks the version the extension's command reports is `version`.
    pub(crate) fn expect_live(&self, version: &str, when: &str) -> CaseResult {
        self.look()?.expect_live(version, when)
    }

    /// Checks the symlink names `version`'s file.
    pub(crate) fn expect_linked(&self, version: &str, when: &str) -> CaseResult {
        self.look()?.expect_linked(&self.file(version), when)
    }

    /// `systemd-sysext refresh` (which must exit 0), then checks `version` is live.
    pub(crate) fn refresh_expect_live(&self, version: &str, when: &str) -> CaseResult {
        self.look_after(true)?.expect_live(version, when)
    }

    /// `systemd-sysext refresh`, which must exit 0.
    pub(crate) fn refresh(&self) -> CaseResult {
        self.look_after(true).map(|_| ())
    }

    /// The extension's service, if the plan names one, runs `version` once restarted.
    ///
    /// `systemd-sysext refresh` swaps the files and reloads units but restarts nothing: the
    /// old process keeps running from the unmerged image. Users must restart the service
    /// (or reboot); the case says so, restarts it as they would, and checks the new release
    /// is what runs and which unit file systemd loaded.
    pub(crate) fn expect_service_runs(&self, version: &str) -> CaseResult {
        let Some(service) = &self.plan.service else {
            return Ok(());
        };
        let running = self.service_version_line(service)?;
        if !running.split_whitespace().any(|w| w == version) {
            eprintln!(
                "note: after the refresh {service} still runs the old release ({}); restarting it as a user must",
                running.trim()
            );
            self.vm
                .succeed(&format!("systemctl restart {service}"))
                .map_err(h)?;
        }
        let running = self.service_version_line(service)?;
        let unit = self
            .vm
            .succeed(&format!("systemctl show -P Description {service}"))
            .map_err(h)?;
        if !running.split_whitespace().any(|w| w == version)
            || !unit.split_whitespace().any(|w| w == version)
        {
            return Err(CaseError::from(format!(
                "expected {service} to run {version} after a restart; its main process logged '{}' and its unit says '{}'",
                running.trim(),
                unit.trim()
            )));
        }
        Ok(())
    }

    /// What the service's current main process logged first (it announces its version).
    pub(crate) fn service_version_line(&self, service: &str) -> Result<String, CaseError> {
        self.vm
            .wait_for_unit(service, std::time::Duration::from_secs(30))
            .map_err(h)?;
        let cmd = format!(
            "pid=$(systemctl show -P MainPID {service}); for i in $(seq 50); do line=$(journalctl -b -o cat _PID=$pid | head -n 1); [ -n \"$line\" ] && break; sleep 0.2; done; echo \"$line\""
        );
        self.vm.succeed(&cmd).map_err(h)
    }

    /// Requests for `path` the mirror answered with `status`.
    pub(crate) fn served(&self, path: &str, status: u16) -> usize {
        self.mirror
            .requests()
            .iter()
            .filter(|r| r.path == path && r.status == status && r.method == "GET")
            .count()
    }

    pub(crate) fn image_path(&self, version: &str) -> String {
        format!("/extensions/{}/{}", self.name, self.file(version))
    }

    pub(crate) fn sums_path(&self) -> String {
        format!("/extensions/{}/SHA256SUMS", self.name)
    }

    /// Proves from the request log that `version`'s image was downloaded whole.
    pub(crate) fn expect_downloaded(&self, version: &str) -> CaseResult {
        let path = self.image_path(version);
        let size = self
            .releases
            .get(version)
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        let whole = self
            .mirror
            .requests()
            .iter()
            .any(|r| r.path == path && r.status == 200 && r.bytes == size);
        if !whole {
            return Err(CaseError::from(format!(
                "the mirror never served {path} whole ({size} bytes); log: {}",
                self.log()
            )));
        }
        Ok(())
    }

    /// The mirror's request log, one line per request, for failure messages.
    pub(crate) fn log(&self) -> String {
        let lines: Vec<String> = self
            .mirror
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "\n  {} {} -> {} ({} bytes{})",
                    r.method,
                    r.path,
                    r.status,
                    r.bytes,
                    r.fault.map(|f| format!(", fault {f}")).unwrap_or_default()
                )
            })
            .collect();
        lines.concat()
    }

    /// Runs `systemd-sysupdate update` (optionally for one version) and returns its output.
    pub(crate) fn update(&self, version: Option<&str>) -> Result<String, CaseError> {
        let cmd = self.sysupdate(&format!("update {} 2>&1", version.unwrap_or("")));
        let out = self.vm.execute(&cmd).map_err(h)?;
        if out.status != 0 {
            return Err(CaseError::from(format!(
                "`{cmd}` exited {}:\n{}\nmirror log:{}",
                out.status,
                out.combined().trim(),
                self.log()
            )));
        }
        Ok(out.combined())
    }

    /// `list --json=short`: (current, all versions).
    pub(crate) fn list(&self) -> Result<(Option<String>, Vec<String>), CaseError> {
        let out = self
            .vm
            .succeed(&self.sysupdate("list --json=short"))
            .map_err(h)?;
        parse_list(&out)
    }
}

/// `systemd-sysupdate list --json=short` output: (current, all versions).
pub(crate) fn parse_list(out: &str) -> Result<(Option<String>, Vec<String>), CaseError> {
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| format!("list --json: {e}: {out}"))?;
    let current = v.get("current").and_then(|c| c.as_str()).map(String::from);
    let all = v
        .get("all")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(String::from))
        .collect();
    Ok((current, all))
}

/// The guest as a user sees it after a step (see [`Ctx::look_after`]).
pub(crate) struct Look {
    /// The file the `CurrentSymlink` resolves to (empty when it dangles).
    pub(crate) linked: String,
    /// Files in the target directory, hidden ones (sysupdate's temp files) included.
    pub(crate) files: Vec<String>,
    /// What the extension's version command printed.
    pub(crate) live: String,
    pub(crate) link: String,
    pub(crate) target_dir: String,
    pub(crate) version_command: String,
}

impl Look {
    /// The version command reported `version`.
    pub(crate) fn expect_live(&self, version: &str, when: &str) -> CaseResult {
        if !self.live.split_whitespace().any(|w| w == version) {
            return Err(CaseError::from(format!(
                "{when}: expected `{}` to report {version}, it printed: {}",
                self.version_command,
                self.live.trim()
            )));
        }
        Ok(())
    }

    /// The symlink names `file`.
    pub(crate) fn expect_linked(&self, file: &str, when: &str) -> CaseResult {
        if self.linked != file {
            return Err(CaseError::from(format!(
                "{when}: expected {} -> {file}, it resolves to '{}'; files: {:?}",
                self.link, self.linked, self.files
            )));
        }
        Ok(())
    }

    /// No sysupdate temp file (`.#sysupdate…` in 257, `.sysupdate.partial.…` later) stays.
    pub(crate) fn expect_no_partial_files(&self, when: &str) -> CaseResult {
        let partial: Vec<&String> = self.files.iter().filter(|f| f.starts_with('.')).collect();
        if !partial.is_empty() {
            return Err(CaseError::from(format!(
                "{when}: partial files left in {}: {partial:?}",
                self.target_dir
            )));
        }
        Ok(())
    }
}

pub(crate) fn h(e: sysext_harness::HarnessError) -> CaseError {
    CaseError::Harness(e)
}
