//! An extension's test manifest (`[test]` in a spec, or `--manifest FILE`): what to run in
//! the guest and what the VM cases should expect beyond their defaults.

use serde::Deserialize;

use crate::vm::Case;

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
    /// A substring stdout must contain; `@VERSION@` stands for the image's version.
    #[serde(default)]
    pub expect: String,
}

/// A negative test: `case` must fail an assertion, and the guest's own words (systemd's
/// journal lines and properties, a command's stderr; never our explanation) must contain
/// every string of `systemd`. A harness error never satisfies it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFailure {
    pub case: Case,
    pub systemd: Vec<String>,
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
        for c in &mut m.commands {
            c.expect = c.expect.replace("@VERSION@", version);
        }
        m
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
            Case::ALL.to_vec()
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
