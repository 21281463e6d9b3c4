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
