//! An extension's test manifest (`[test]` in a spec, or `--manifest FILE`): what to run in
//! the guest and what the VM cases should expect beyond their defaults.

use serde::Deserialize;

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
    /// For negative fixtures: the case that must fail and what its message must contain.
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    pub run: String,
    /// A substring stdout must contain.
    #[serde(default)]
    pub expect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFailure {
    pub case: String,
    /// Substrings the failure message must contain (the cause, in systemd's words).
    pub contains: Vec<String>,
}

impl Manifest {
    pub fn from_table(t: &toml::Table) -> Result<Manifest, String> {
        t.clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("[test]: {e}"))
    }

    pub fn load(path: &std::path::Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            format!(
                "{}: {}",
                path.display(),
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
    }

    pub fn expected_failure(&self, case: &str) -> Option<&ExpectedFailure> {
        self.expect_failure.iter().find(|f| f.case == case)
    }
}
