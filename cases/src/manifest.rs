//! An extension's test manifest (`[test]` in a spec, or `--manifest FILE`): what to run in
//! the guest and what the VM cases should expect beyond their defaults.

use serde::Deserialize;
use sysext_builder::guest::Profile;

use crate::outcome::{Case, ExpectedFailure};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Commands run after the merge; each must exit 0 and print `expect`.
    #[serde(default)]
    pub commands: Vec<CommandCheck>,
    /// Services that must be active after the merge (in addition to what the image enables).
    #[serde(default)]
    pub services: Vec<String>,
    /// Shipped services that need configuration before they can start; not started.
    #[serde(default)]
    pub needs_config: Vec<String>,
    /// ELF paths (in the image) not to prove loadable, e.g. helpers for another host.
    #[serde(default)]
    pub exclude_binaries: Vec<String>,
    /// For negative fixtures: the case that must fail and the words the guest must say.
    #[serde(default)]
    pub expect_failure: Vec<ExpectedFailure>,
    /// `[test.update]`: the subject takes part in the sysupdate cycles.
    pub update: Option<UpdatePlan>,
    /// Units the image enables that wait for configuration instead of running (kubelet
    /// restarts until kubeadm writes its config): they must be loaded and pulled in, not
    /// active.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// Ports something must listen on once the services are up.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Paths that must exist once the services are up (made by tmpfiles.d, an
    /// `ExecStartPre=`, or the daemon itself).
    #[serde(default)]
    pub creates: Vec<String>,
    /// The oldest systemd the extension supports (its major version); on an older guest
    /// its cases are skipped, and say so.
    pub min_systemd: Option<u32>,
    /// The oldest Flatcar release it supports (semver, e.g. "4152.0.0").
    pub min_flatcar: Option<String>,
    /// The guest its run-time cases run on: `flatcar` for an extension that needs what
    /// only a Flatcar host has (baselayout's accounts: docker.socket's `SocketGroup=docker`,
    /// a command run as `core`); the fast Debian guest when absent.
    pub guest: Option<String>,
    /// Regressions a release diff may show without failing (`diff/limit-lowered` with the
    /// subject `containerd.service:LimitNOFILE`, and why): a release that means to take
    /// something away says so here.
    #[serde(default)]
    pub accept_regressions: Vec<crate::release_diff::Acceptance>,
}

/// A port that must be listening: `{ port = 41641, proto = "udp" }` (tcp by default).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub port: u16,
    #[serde(default = "tcp")]
    pub proto: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// How to release a subject again and again for the sysupdate cycles: the spec is rebuilt at
/// each version, with `@VERSION@` in its texts replaced, so each release reports its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdatePlan {
    /// Versions released after the spec's own, oldest first; retention needs three.
    pub versions: Vec<String>,
    /// A guest command whose stdout contains the live version.
    pub version_command: String,
    /// A service that must run the new version once the update is active.
    #[serde(default)]
    pub service: Option<String>,
    /// A version sysupdate cannot parse (e.g. with `~`), released to show it stays invisible.
    #[serde(default)]
    pub unparsable_version: Option<String>,
}

impl UpdatePlan {
    /// The plan for releases that come without one (a store's images): the live version is
    /// the one in the file name of the image the kernel has attached for the merge, which
    /// needs nothing from the extension itself.
    pub fn by_attached_image(name: &str, arch: sysext_builder::Arch) -> UpdatePlan {
        UpdatePlan {
            versions: Vec::new(),
            version_command: format!(
                "cat /sys/block/loop*/loop/backing_file 2>/dev/null | sed -n 's|^.*/{name}-\\(.*\\)-{}\\.raw$|\\1|p'",
                arch.systemd_name()
            ),
            service: None,
            unparsable_version: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    pub run: String,
    /// A substring stdout must contain; `@VERSION@` stands for the image's version and
    /// `@SEMVER@` for it without a leading `v` (tailscale-v1.80.0 prints 1.80.0).
    #[serde(default)]
    pub expect: String,
    /// The arches the check applies to (default: all).
    #[serde(default)]
    pub arches: Vec<sysext_builder::Arch>,
    /// Run it as this account (with the groups the guest gives it) instead of root, as a
    /// user logged in as `core` types it on Flatcar.
    pub user: Option<String>,
}

impl CommandCheck {
    /// The guest command: in bash, as a user types it (the harness's own commands run in
    /// dash), through `runuser` for a [`CommandCheck::user`].
    pub fn guest_command(&self) -> String {
        let bash = format!("bash -c {}", crate::shell::quote(&self.run));
        match &self.user {
            Some(u) => format!("runuser -u {} -- {bash}", crate::shell::quote(u)),
            None => bash,
        }
    }
}

impl Manifest {
    pub fn from_table(t: &toml::Table) -> Result<Manifest, String> {
        let m: Manifest = t
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("[test]: {}", one_line(&e.to_string())))?;
        m.validate().map_err(|e| format!("[test]: {e}"))?;
        Ok(m)
    }

    /// The manifest with `@VERSION@` in the commands' expected output replaced.
    pub fn for_version(&self, version: &str) -> Manifest {
        let mut m = self.clone();
        let semver = version.strip_prefix('v').unwrap_or(version);
        for c in &mut m.commands {
            c.expect = c
                .expect
                .replace("@VERSION@", version)
                .replace("@SEMVER@", semver);
        }
        m
    }

    /// The manifest as it applies on `arch`: checks limited to other arches dropped.
    pub fn for_arch(&self, arch: sysext_builder::Arch) -> Manifest {
        let mut m = self.clone();
        m.commands
            .retain(|c| c.arches.is_empty() || c.arches.contains(&arch));
        m
    }

    /// Why the extension's cases cannot run on a guest with this systemd, if they cannot.
    pub fn unsupported_on(&self, guest_systemd: u32) -> Option<String> {
        self.min_systemd
            .filter(|&min| guest_systemd < min)
            .map(|min| format!("needs systemd >= {min}, the guest has {guest_systemd}"))
    }

    /// The guest profile the run-time cases restore ([`Manifest::guest`]).
    pub fn runtime_profile(&self) -> Profile {
        self.guest
            .as_deref()
            .and_then(|g| g.parse().ok())
            .unwrap_or(Profile::Debian)
    }

    pub fn load(path: &std::path::Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let m: Manifest = toml::from_str(&text)
            .map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))?;
        m.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(m)
    }

    /// What serde cannot check: an expected failure must pin at least one non-empty string
    /// (an empty list would accept any failure), once per case.
    fn validate(&self) -> Result<(), String> {
        if let Some(plan) = &self.update {
            // sysupdate offers the highest version in systemd's order (UAPI.10), so a plan
            // must release in that order or its cycles test something else.
            for pair in plan.versions.windows(2) {
                if sysext_builder::version::compare(&pair[0], &pair[1]) != std::cmp::Ordering::Less
                {
                    return Err(format!(
                        "[test.update] versions must increase in systemd's version order, but {} comes after {}: reorder them",
                        pair[0], pair[1]
                    ));
                }
            }
        }
        if let Some(v) = &self.min_flatcar
            && semver::Version::parse(v).is_err()
        {
            return Err(format!(
                "min-flatcar = \"{v}\" is not a Flatcar release number (MAJOR.MINOR.PATCH, e.g. \"4152.0.0\")"
            ));
        }
        if let Some(g) = &self.guest {
            g.parse::<Profile>()
                .map_err(|e| format!("guest = {g:?}: {e}"))?;
        }
        if let Some(c) = self.commands.iter().find(|c| {
            c.user
                .as_deref()
                .is_some_and(|u| u.is_empty() || u.contains(['/', ':', ' ']))
        }) {
            return Err(format!(
                "commands: {{ run = {:?}, user = {:?} }}: user must be an account name such as \"core\"",
                c.run,
                c.user.as_deref().unwrap_or_default()
            ));
        }
        for p in &self.ports {
            if p.port == 0 || !matches!(p.proto.as_str(), "tcp" | "udp") {
                return Err(format!(
                    "ports: {{ port = {}, proto = \"{}\" }}: the port must be 1-65535 and proto tcp or udp",
                    p.port, p.proto
                ));
            }
        }
        for u in self
            .services
            .iter()
            .chain(&self.waiting)
            .chain(&self.needs_config)
        {
            if !u.contains('.') {
                return Err(format!(
                    "'{u}' is not a unit name: write it with its suffix (e.g. {u}.service)"
                ));
            }
        }
        if let Some(c) = self.creates.iter().find(|c| !c.starts_with('/')) {
            return Err(format!("creates: '{c}' must be an absolute path"));
        }
        for (i, f) in self.expect_failure.iter().enumerate() {
            if f.systemd.is_empty() || f.systemd.iter().any(|s| s.trim().is_empty()) {
                return Err(format!(
                    "expect-failure for case '{}' needs systemd = [\"...\"]: the words the guest says for the failure it exists for (an empty list would accept any failure)",
                    f.case
                ));
            }
            if self.expect_failure[..i].iter().any(|g| g.case == f.case) {
                return Err(format!(
                    "expect-failure lists case '{}' twice: merge the two entries",
                    f.case
                ));
            }
        }
        Ok(())
    }

    /// The run-time cases a fixture runs: all of them, or only those it expects to fail
    /// (a broken image's other cases would fail for the same reason again). The boot and
    /// Ignition cases run either way.
    pub fn runtime_cases(&self) -> Vec<Case> {
        let listed: Vec<Case> = self
            .expect_failure
            .iter()
            .map(|f| f.case)
            .filter(|c| !matches!(c, Case::Boot | Case::Ignition))
            .collect();
        if listed.is_empty() {
            Case::RUNTIME.to_vec()
        } else {
            listed
        }
    }

    pub fn expected_failure(&self, case: Case) -> Option<&ExpectedFailure> {
        self.expect_failure.iter().find(|f| f.case == case)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_output_follows_the_image_version() {
        let m = Manifest::from_table(&table(
            "commands = [{ run = \"hello\", expect = \"hello @VERSION@\" }]",
        ))
        .unwrap();
        assert_eq!(m.for_version("2.0.0").commands[0].expect, "hello 2.0.0");
        assert_eq!(m.commands[0].expect, "hello @VERSION@");
    }

    #[rstest::rstest]
    #[case("ports = [{ port = 0 }]", "1-65535")]
    #[case("ports = [{ port = 80, proto = \"sctp\" }]", "tcp or udp")]
    #[case("creates = [\"run/x\"]", "absolute path")]
    #[case("min-flatcar = \"4152\"", "MAJOR.MINOR.PATCH")]
    #[case("waiting = [\"kubelet\"]", "kubelet.service")]
    #[case("colour = \"red\"", "unknown field")]
    fn a_bad_manifest_line_says_how_to_fix_it(#[case] text: &str, #[case] words: &str) {
        let e = Manifest::from_table(&table(text)).unwrap_err();
        assert!(e.contains(words), "{e}");
    }

    #[test]
    fn checks_for_one_arch_are_dropped_on_the_other_and_semver_drops_the_v() {
        let m = Manifest::from_table(&table(
            "commands = [{ run = \"a\", expect = \"a @SEMVER@\", arches = [\"arm64\"] }, { run = \"b\" }]\nmin-systemd = 258",
        ))
        .unwrap();
        assert_eq!(m.for_arch(sysext_builder::Arch::X86_64).commands.len(), 1);
        assert_eq!(m.for_arch(sysext_builder::Arch::Arm64).commands.len(), 2);
        assert_eq!(m.for_version("v1.80.0").commands[0].expect, "a 1.80.0");
        assert!(m.unsupported_on(257).unwrap().contains("258"));
        assert!(m.unsupported_on(258).is_none());
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn expected_failures_name_a_known_case_and_pin_words() {
        let ok = Manifest::from_table(&table(
            r#"expect-failure = [{ case = "services", systemd = ["status=203/EXEC"] }]"#,
        ))
        .unwrap();
        assert!(ok.expected_failure(Case::Services).is_some());
        let typo = Manifest::from_table(&table(
            r#"expect-failure = [{ case = "service", systemd = ["x"] }]"#,
        ))
        .unwrap_err();
        assert!(typo.contains("unknown variant `service`"), "{typo}");
        let empty = Manifest::from_table(&table(
            r#"expect-failure = [{ case = "merge", systemd = [] }]"#,
        ))
        .unwrap_err();
        assert!(empty.contains("needs systemd"), "{empty}");
        let old = Manifest::from_table(&table(
            r#"expect-failure = [{ case = "merge", contains = ["x"] }]"#,
        ))
        .unwrap_err();
        assert!(old.contains("contains"), "{old}");
    }

    #[test]
    fn update_plans_release_in_systemds_order() {
        let ok = table("[update]\nversions = [\"9.0\", \"10.0\"]\nversion-command = \"x\"\n");
        assert!(Manifest::from_table(&ok).is_ok());
        let bad = table("[update]\nversions = [\"10.0\", \"9.0\"]\nversion-command = \"x\"\n");
        let e = Manifest::from_table(&bad).unwrap_err();
        assert!(e.contains("10.0 comes after 9.0: reorder them"), "{e}");
    }
}
