//! Ignition v3 configs, the subset Flatcar's docs use to provision an extension at first
//! boot: `storage.files` (inline `data:` contents or `contents.source` URLs with
//! `verification.hash`, `mode`), `storage.links`, and `systemd.units` (`enabled`,
//! `dropins`). [`for_extension`] writes what the bakery's Butane example says for one
//! extension, pointed at any mirror (the local one in tests, the hub for users).

use serde::{Deserialize, Serialize};

/// The spec version Debian trixie's Ignition (2.14) and Flatcar's both accept.
pub const SPEC_VERSION: &str = "3.3.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ignition: Meta,
    #[serde(default, skip_serializing_if = "Storage::is_empty")]
    pub storage: Storage,
    #[serde(default, skip_serializing_if = "Systemd::is_empty")]
    pub systemd: Systemd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
}

impl Storage {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.links.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub path: String,
    /// Decimal in JSON (0644 is 420).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<bool>,
    pub contents: Contents,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    /// An `http(s)://` URL, or `data:,…` for inline text.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// `sha256-<hex>` or `sha512-<hex>`.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub path: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Systemd {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
}

impl Systemd {
    fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropins: Vec<Dropin>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropin {
    pub name: String,
    pub contents: String,
}

/// What happens once sysupdate has fetched a new release (the two drop-ins of the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateDropIn {
    /// Flag `/run/reboot-required` when the symlink moved (Flatcar's docs; a reboot
    /// manager such as kured or FLUO reboots the node).
    Reboot,
    /// `systemd-sysext refresh` right away (the wasmtime docs' variant), outside the unit's
    /// sandbox: the docs' line as written fails there (see [`UpdateDropIn::after_change`]).
    Refresh,
}

impl UpdateDropIn {
    /// The command run when the symlink moved, and whether it must run without
    /// systemd-sysupdate.service's sandbox (`+`).
    ///
    /// The refresh needs `+`: the `timer-refresh` update cycle showed the docs' sandboxed
    /// line failing ("Failed to read metadata for image NAME: Operation not permitted"; the
    /// update is staged, never merged) and the same line with `+` merging the new release.
    /// Flagging a reboot only touches a file in /run, which the sandbox allows.
    pub fn after_change(self) -> (&'static str, bool) {
        match self {
            UpdateDropIn::Reboot => ("touch /run/reboot-required", false),
            UpdateDropIn::Refresh => ("systemd-sysext refresh", true),
        }
    }
}

/// The `systemd-sysupdate.service` drop-in the bakery's docs give for extension `name`:
/// readlink of `/etc/extensions/NAME.raw` before and after `systemd-sysupdate -C NAME
/// update`, then `after_change` when the link moved, with `+` (no sandbox) when
/// `privileged`.
///
/// The one writer of that text: `sysext-test ignition` prints it and the update cycles
/// install it in guests, so the form a cycle proved is the form users are given.
pub fn sysupdate_dropin(name: &str, after_change: &str, privileged: bool) -> String {
    let plus = if privileged { "+" } else { "" };
    format!(
        "[Service]\n\
         ExecStartPre=/usr/bin/sh -c \"readlink --canonicalize /etc/extensions/{name}.raw > /tmp/{name}\"\n\
         ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C {name} update\n\
         ExecStartPost=/usr/bin/sh -c \"readlink --canonicalize /etc/extensions/{name}.raw > /tmp/{name}-new\"\n\
         ExecStartPost={plus}/usr/bin/sh -c \"if ! cmp --silent /tmp/{name} /tmp/{name}-new; then {after_change}; fi\"\n"
    )
}

impl std::str::FromStr for UpdateDropIn {
    type Err = String;
    fn from_str(s: &str) -> Result<UpdateDropIn, String> {
        match s {
            "reboot" => Ok(UpdateDropIn::Reboot),
            "refresh" => Ok(UpdateDropIn::Refresh),
            _ => Err(format!("unknown drop-in {s:?}: use reboot or refresh")),
        }
    }
}

/// One extension to provision.
pub struct Request<'a> {
    pub name: &'a str,
    /// `NAME-VERSION-ARCH.raw`.
    pub file_name: &'a str,
    /// The image's SHA-256 (hex), checked by Ignition before it writes the file.
    pub sha256: &'a str,
    /// Where `NAME-VERSION-ARCH.raw`, `NAME.conf` and `noop.conf` are served, without the
    /// trailing slash (the bakery hub: `https://extensions.flatcar.org/extensions`).
    pub base_url: &'a str,
    pub drop_in: UpdateDropIn,
    /// Flatcar built-ins the image replaces, masked with `/dev/null` links as the bakery's
    /// docs do ([`crate::guest::builtins::replaced_by`]).
    pub masks: &'a [&'a str],
}

/// The bakery's Butane example for one extension, as the Ignition JSON it transpiles to:
/// the image under `/opt/extensions/NAME/` (hash-checked), the `/etc/extensions/NAME.raw`
/// link, `NAME.conf` and `noop.conf`, `systemd-sysupdate.timer` enabled and the drop-in
/// that runs the update and then flags a reboot or refreshes.
pub fn for_extension(r: &Request) -> Config {
    let name = r.name;
    let installed = format!("/opt/extensions/{name}/{}", r.file_name);
    let (after_change, privileged) = r.drop_in.after_change();
    let dropin = sysupdate_dropin(name, after_change, privileged);
    let fetched = |path: String, url: String, hash: Option<String>| File {
        path,
        mode: Some(0o644),
        overwrite: Some(true),
        contents: Contents {
            source: url,
            verification: hash.map(|hash| Verification { hash }),
        },
    };
    Config {
        ignition: Meta {
            version: SPEC_VERSION.into(),
        },
        storage: Storage {
            files: vec![
                fetched(
                    installed.clone(),
                    format!("{}/{}", r.base_url, r.file_name),
                    Some(format!("sha256-{}", r.sha256)),
                ),
                fetched(
                    format!("/etc/sysupdate.{name}.d/{name}.conf"),
                    format!("{}/{name}.conf", r.base_url),
                    None,
                ),
                fetched(
                    "/etc/sysupdate.d/noop.conf".into(),
                    format!("{}/noop.conf", r.base_url),
                    None,
                ),
            ],
            links: std::iter::once(Link {
                path: format!("/etc/extensions/{name}.raw"),
                target: installed,
                hard: Some(false),
                overwrite: Some(true),
            })
            .chain(r.masks.iter().map(|b| Link {
                path: format!("/etc/extensions/{b}.raw"),
                target: "/dev/null".into(),
                hard: None,
                overwrite: Some(true),
            }))
            .collect(),
        },
        systemd: Systemd {
            units: vec![
                Unit {
                    name: "systemd-sysupdate.timer".into(),
                    enabled: Some(true),
                    contents: None,
                    dropins: Vec::new(),
                },
                Unit {
                    name: "systemd-sysupdate.service".into(),
                    enabled: None,
                    contents: None,
                    dropins: vec![Dropin {
                        name: format!("{name}.conf"),
                        contents: dropin,
                    }],
                },
            ],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(drop_in: UpdateDropIn) -> Config {
        for_extension(&Request {
            name: "docker",
            file_name: "docker-28.0.4-x86-64.raw",
            sha256: "ab12",
            base_url: "http://10.0.2.2:8080/extensions",
            drop_in,
            masks: &["docker-flatcar", "containerd-flatcar"],
        })
    }

    #[test]
    fn the_builtins_the_image_replaces_are_masked_as_the_bakery_docs_do() {
        let c = request(UpdateDropIn::Reboot);
        let masks: Vec<(&str, &str)> = c.storage.links[1..]
            .iter()
            .map(|l| (l.path.as_str(), l.target.as_str()))
            .collect();
        assert_eq!(
            masks,
            [
                ("/etc/extensions/docker-flatcar.raw", "/dev/null"),
                ("/etc/extensions/containerd-flatcar.raw", "/dev/null")
            ]
        );
        assert!(
            c.storage.links[1..]
                .iter()
                .all(|l| l.overwrite == Some(true))
        );
    }

    #[test]
    fn the_config_fetches_the_image_hash_checked_and_links_it() {
        let c = request(UpdateDropIn::Reboot);
        let image = &c.storage.files[0];
        assert_eq!(
            image.path,
            "/opt/extensions/docker/docker-28.0.4-x86-64.raw"
        );
        assert_eq!(
            image.contents.source,
            "http://10.0.2.2:8080/extensions/docker-28.0.4-x86-64.raw"
        );
        assert_eq!(
            image.contents.verification.as_ref().unwrap().hash,
            "sha256-ab12"
        );
        assert_eq!(image.mode, Some(420));
        assert_eq!(c.storage.links[0].path, "/etc/extensions/docker.raw");
        assert_eq!(c.storage.links[0].target, image.path);
        assert_eq!(
            c.storage.files[1].path,
            "/etc/sysupdate.docker.d/docker.conf"
        );
        assert_eq!(c.systemd.units[0].enabled, Some(true));
    }

    #[test]
    fn the_drop_in_flags_a_reboot_or_refreshes() {
        let reboot = &request(UpdateDropIn::Reboot).systemd.units[1].dropins[0].contents;
        assert!(reboot.contains("touch /run/reboot-required"), "{reboot}");
        assert!(reboot.contains("systemd-sysupdate -C docker update"));
        let refresh = &request(UpdateDropIn::Refresh).systemd.units[1].dropins[0].contents;
        assert!(refresh.contains("systemd-sysext refresh"), "{refresh}");
    }

    /// The `timer-refresh` update cycle proved the refresh works only with `+` before the
    /// command (no sandbox); the printed drop-in must be that form, not the docs' one.
    #[test]
    fn the_printed_refresh_drop_in_runs_the_refresh_outside_the_sandbox() {
        let refresh = &request(UpdateDropIn::Refresh).systemd.units[1].dropins[0].contents;
        let last = refresh.lines().last().unwrap_or_default();
        assert_eq!(
            last,
            "ExecStartPost=+/usr/bin/sh -c \"if ! cmp --silent /tmp/docker /tmp/docker-new; then systemd-sysext refresh; fi\"",
            "{refresh}"
        );
        let reboot = &request(UpdateDropIn::Reboot).systemd.units[1].dropins[0].contents;
        assert!(!reboot.contains("=+"), "{reboot}");
    }

    /// What the cycles install (`install_dropin` calls [`sysupdate_dropin`] with the command
    /// and the `+` each cycle tests) is byte for byte what users are given.
    #[test]
    fn the_printed_drop_ins_are_the_ones_the_cycles_install() {
        for (drop_in, command, privileged) in [
            (UpdateDropIn::Reboot, "touch /run/reboot-required", false),
            (UpdateDropIn::Refresh, "systemd-sysext refresh", true),
        ] {
            let printed = &request(drop_in).systemd.units[1].dropins[0].contents;
            assert_eq!(printed, &sysupdate_dropin("docker", command, privileged));
        }
    }

    #[test]
    fn json_round_trips_and_unknown_fields_are_refused() {
        let c = request(UpdateDropIn::Reboot);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"version\":\"3.3.0\""));
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
        let typo = json.replace("\"links\"", "\"link\"");
        assert!(serde_json::from_str::<Config>(&typo).is_err());
    }
}
