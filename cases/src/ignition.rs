//! `ignition::<arch>::<subject>`: the extension provisioned at first boot the way the
//! bakery's docs show, with the config `sysext-test ignition` prints, pointed at a local
//! mirror and handed to the flatcar-shaped guest through QEMU's fw_cfg (under both names:
//! upstream Ignition reads `opt/com.coreos/config`, Flatcar's `opt/org.flatcar-linux/config`).
//! No SSH step in between: Ignition fetches, verifies and writes the image before
//! `systemd-sysext.service` merges it.
//!
//! Passes when the mirror served the image whole, Ignition's unit succeeded, the image is
//! merged with its units up and nothing else broken (the boot case's checks), sysupdate is
//! configured for it and `systemd-sysupdate.timer` is enabled and active. With a wrong
//! `verification.hash` the provisioning must fail with Ignition's own words.

use std::path::Path;
use std::time::Instant;

use sysext_builder::Arch;
use sysext_builder::guest::{self, Profile};
use sysext_builder::ignition::{self as config, Request, UpdateDropIn};
use sysext_harness::vm::BootOptions;
use sysext_harness::{HarnessError, Mirror, Place, Vm};

use crate::vm::runner::{Outcome, judge};
use crate::vm::{Assertion, CaseError, CaseResult, Subject, Verdict};

/// fw_cfg names Ignition reads its config from (upstream, Flatcar).
const FW_CFG_NAMES: [&str; 2] = ["opt/com.coreos/config", "opt/org.flatcar-linux/config"];
const UNIT: &str = "sysext-test-ignition.service";

/// Which config the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The config as `sysext-test ignition` prints it.
    AsPrinted,
    /// The same with the image's `verification.hash` wrong: provisioning must fail.
    WrongHash,
}

/// Runs the case. `expected` (for [`Variant::WrongHash`]) names Ignition's words.
pub fn run(
    name: &str,
    subject: &Subject,
    arch: Arch,
    variant: Variant,
    expected: Option<&crate::manifest::ExpectedFailure>,
    place: &Place,
    progress: &dyn Fn(&str),
) -> Outcome {
    let start = Instant::now();
    let error = |stage: &str, message: String| Outcome {
        verdict: Verdict::Error {
            stage: stage.into(),
            message,
        },
        duration: start.elapsed(),
        merge_refused: false,
    };
    let recipe = guest::Recipe::new(Profile::FlatcarShaped, arch);
    let base = match guest::build_or_reuse(&recipe, progress) {
        Ok(g) => g,
        Err(e) => return error("guest image", format!("{arch} flatcar-shaped: {e}")),
    };
    let baseline = match crate::boot::baseline(&base, progress) {
        Ok(b) => b,
        Err(e) => return error(&format!("baseline boot: {}", e.stage()), e.to_string()),
    };
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return error("temp dir", e.to_string()),
    };
    let served = (|| -> Result<(Mirror, std::path::PathBuf), HarnessError> {
        let store = work.path().join("store");
        std::fs::create_dir_all(&store).map_err(|e| HarnessError::io(&store, e))?;
        let mirror = Mirror::serve(&store)?;
        mirror.publish(&subject.image)?;
        mirror.publish_transfer(
            &format!("{}.conf", subject.name),
            &sysext_builder::transfer::render_bakery(&subject.name, &mirror.guest_url()),
        )?;
        mirror.publish_transfer("noop.conf", sysext_builder::transfer::NOOP)?;
        let sha = sysext_builder::sha256sums::digest_file(&subject.image)
            .map_err(|e| HarnessError::io(&subject.image, e))?;
        let sha = match variant {
            Variant::AsPrinted => sha,
            // Same length and alphabet, another digest: only the verification can tell.
            Variant::WrongHash => sha.chars().rev().collect(),
        };
        let c = config::for_extension(&Request {
            name: &subject.name,
            file_name: &subject.file_name,
            sha256: &sha,
            base_url: &mirror.guest_url(),
            drop_in: UpdateDropIn::Reboot,
        });
        let path = work.path().join("config.ign");
        let json = serde_json::to_vec_pretty(&c).map_err(|e| HarnessError::Ssh(e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| HarnessError::io(&path, e))?;
        Ok((mirror, path))
    })();
    let (mirror, config_file) = match served {
        Ok(s) => s,
        Err(e) => return error("mirror and config", e.to_string()),
    };
    let options = BootOptions {
        give_up_on: crate::boot::GIVE_UP_ON,
        fw_cfg: FW_CFG_NAMES
            .iter()
            .map(|n| (n.to_string(), config_file.clone()))
            .collect(),
        kernel_args: guest::IGNITION_ARG.into(),
        payload_disk: false,
    };
    progress(&format!(
        "cold-booting the flatcar-shaped guest with an Ignition config for {} (mirror {})",
        subject.file_name,
        mirror.url()
    ));
    let artifacts = place.artifacts(name);
    let verdict = match crate::boot::cold_boot(&base, &options, progress) {
        Ok(vm) => {
            progress(&format!("login after {:.1}s", vm.startup.as_secs_f64()));
            let result = match variant {
                Variant::AsPrinted => provisioned(&vm, subject, &mirror)
                    .and_then(|()| crate::boot::checks(&vm, subject, &baseline))
                    .and_then(|()| sysupdate_configured(&vm, subject)),
                Variant::WrongHash => refused(&vm),
            };
            let verdict = judge(result, expected, Vec::new(), || {
                vm.save_artifacts(&artifacts)
            });
            if !verdict.is_pass() {
                write_mirror_log(&artifacts, &mirror);
            }
            verdict
        }
        Err(e) => Verdict::Error {
            stage: e.stage(),
            message: e.to_string(),
        },
    };
    Outcome {
        verdict,
        duration: start.elapsed(),
        merge_refused: false,
    }
}

/// Ignition's unit succeeded and the mirror served the image whole (Ignition fetched it;
/// nothing else in the guest knows the URL).
fn provisioned(vm: &Vm, s: &Subject, mirror: &Mirror) -> CaseResult {
    let out = vm.execute(&format!(
        "systemctl show -p Result,ActiveState -- {UNIT}; journalctl -b -o cat --no-pager -u {UNIT} | tail -n 30"
    ))?;
    if !out.stdout.contains("Result=success") || !out.stdout.contains("ActiveState=active") {
        return Err(Assertion::new(format!(
            "expected Ignition to provision {} at first boot; its unit did not succeed",
            s.file_name
        ))
        .with_evidence(&out.stdout)
        .into());
    }
    let size = std::fs::metadata(&s.image).map(|m| m.len()).unwrap_or(0);
    let path = format!("/extensions/{}", s.file_name);
    let whole = mirror
        .requests()
        .iter()
        .any(|r| r.path == path && r.status == 200 && r.bytes == size && r.method == "GET");
    if !whole {
        return Err(CaseError::from(format!(
            "expected Ignition to download {path} ({size} bytes) from the mirror; it never served it whole"
        )));
    }
    Ok(())
}

/// The sysupdate side of the config: NAME.conf and noop.conf in place, the drop-in loaded,
/// the timer enabled and running.
fn sysupdate_configured(vm: &Vm, s: &Subject) -> CaseResult {
    let name = &s.name;
    let outs = vm.batch(&[
        &format!(
            "test -s /etc/sysupdate.{name}.d/{name}.conf && test -s /etc/sysupdate.d/noop.conf"
        ),
        "systemctl is-enabled systemd-sysupdate.timer",
        "systemctl is-active systemd-sysupdate.timer",
        "systemctl cat systemd-sysupdate.service",
    ])?;
    let checks = [
        (
            outs[0].status == 0,
            "the transfer files in /etc/sysupdate.*",
        ),
        (
            outs[1].stdout.trim() == "enabled",
            "systemd-sysupdate.timer enabled",
        ),
        (
            outs[2].stdout.trim() == "active",
            "systemd-sysupdate.timer active",
        ),
        (
            outs[3]
                .stdout
                .contains(&format!("systemd-sysupdate -C {name} update")),
            "the systemd-sysupdate.service drop-in",
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| *w)
        .collect();
    if !missing.is_empty() {
        return Err(Assertion::new(format!(
            "expected Ignition's config to set up sysupdate for {name}; missing: {}",
            missing.join(", ")
        ))
        .with_evidence(&format!(
            "is-enabled: {}is-active: {}",
            outs[1].stdout, outs[2].stdout
        ))
        .into());
    }
    Ok(())
}

/// With a wrong hash: Ignition's unit failed, and its journal says why.
fn refused(vm: &Vm) -> CaseResult {
    let out = vm.execute(&format!(
        "systemctl show -p Result -- {UNIT}; journalctl -b -o cat --no-pager -u {UNIT} | grep -v '^DEBUG' | tail -n 40"
    ))?;
    if out.stdout.contains("Result=success") {
        return Ok(());
    }
    Err(
        Assertion::new("expected first-boot provisioning to succeed; Ignition failed")
            .with_evidence(&out.stdout)
            .into(),
    )
}

fn write_mirror_log(dir: &Path, mirror: &Mirror) {
    if std::fs::create_dir_all(dir).is_ok()
        && let Ok(json) = serde_json::to_string_pretty(&mirror.requests())
    {
        let _ =
            sysext_builder::atomic::write_bytes(&dir.join("mirror-requests.json"), json.as_bytes());
    }
}
