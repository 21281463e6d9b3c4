//! The Ignition way: the extension provisioned at first boot the way the bakery's docs
//! show, with the config `sysext-test ignition` prints, pointed at a local mirror and handed
//! to the Flatcar guest through QEMU's fw_cfg (under both names: upstream Ignition
//! reads `opt/com.coreos/config`, Flatcar's `opt/org.flatcar-linux/config`). No SSH step in
//! between: Ignition fetches, verifies and writes the image before `systemd-sysext.service`
//! merges it.

use std::path::{Path, PathBuf};

use sysext_builder::Arch;
use sysext_builder::flatcar_release::MergeModel;
use sysext_builder::ignition::{self as config, Request, UpdateDropIn};
use sysext_harness::vm::BootOptions;
use sysext_harness::{HarnessError, Mirror, Vm};

use crate::outcome::NotReached;
use crate::subject::Subject;
use crate::via::baked::flatcar_guest;
use crate::via::cold_boot::{self, Baseline, NoLogin};

/// fw_cfg names Ignition reads its config from (upstream, Flatcar).
const FW_CFG_NAMES: [&str; 2] = ["opt/com.coreos/config", "opt/org.flatcar-linux/config"];

/// Which config the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The config as `sysext-test ignition` prints it.
    AsPrinted,
    /// The same with the image's `verification.hash` wrong: provisioning must fail.
    WrongHash,
    /// The same without the `/dev/null` masks of the Flatcar built-ins the image replaces:
    /// the built-in stacks above the image and its programs are the ones that run.
    Unmasked,
}

/// A first-booted guest, the mirror Ignition fetched from, and the plain boot.
pub struct Provisioned {
    pub vm: Vm,
    /// The config the guest got.
    pub variant: Variant,
    pub mirror: Mirror,
    pub baseline: Baseline,
    /// Holds what the mirror serves and the config while the guest runs.
    _work: tempfile::TempDir,
}

/// Serves `subject` and its transfer files, writes the config (with a wrong digest for
/// [`Variant::WrongHash`]) and first-boots the Flatcar guest with it.
pub fn reach(
    subject: &Subject,
    arch: Arch,
    variant: Variant,
    model: MergeModel,
    progress: &dyn Fn(&str),
) -> Result<Provisioned, NotReached> {
    let (base, baseline) = flatcar_guest(arch, model, progress)?;
    let work = tempfile::tempdir().map_err(|e| NotReached::harness("temp dir", e))?;
    let (mirror, config_file) = serve(work.path(), subject, variant)
        .map_err(|e| NotReached::harness("mirror and config", e))?;
    let options = BootOptions {
        give_up_on: cold_boot::GIVE_UP_ON,
        fw_cfg: FW_CFG_NAMES
            .iter()
            .map(|n| (n.to_string(), config_file.clone()))
            .collect(),
        ..Default::default()
    };
    progress(&format!(
        "cold-booting the {} guest with an Ignition config for {} (mirror {})",
        base.profile,
        subject.file_name,
        mirror.url()
    ));
    match cold_boot::boot(&base, &options, Some(baseline.login_seconds), progress) {
        Ok(vm) => {
            progress(&format!("login after {:.1}s", vm.startup.as_secs_f64()));
            Ok(Provisioned {
                vm,
                variant,
                mirror,
                baseline,
                _work: work,
            })
        }
        Err(NoLogin::Harness(e)) => Err(NotReached::from(e)),
        Err(NoLogin::Image {
            mut assertion,
            console,
        }) => {
            assertion.explanation = format!(
                "expected the guest to boot after Ignition provisioned {}; {}",
                subject.file_name, assertion.explanation
            );
            Err(NotReached::BrokeBoot { assertion, console })
        }
    }
}

/// The mirror (image, `NAME.conf`, `noop.conf`) and the config file pointing at it.
fn serve(
    work: &Path,
    subject: &Subject,
    variant: Variant,
) -> Result<(Mirror, PathBuf), HarnessError> {
    let store = work.join("store");
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
        Variant::AsPrinted | Variant::Unmasked => sha,
        // Same length and alphabet, another digest: only the verification can tell.
        Variant::WrongHash => sha.chars().rev().collect(),
    };
    let masks = match variant {
        Variant::Unmasked => Vec::new(),
        _ => sysext_builder::guest::builtins::replaced_by_image(&subject.image)
            .map_err(|e| HarnessError::Ssh(e.to_string()))?,
    };
    let c = config::for_extension(&Request {
        name: &subject.name,
        file_name: &subject.file_name,
        sha256: &sha,
        base_url: &mirror.guest_url(),
        drop_in: UpdateDropIn::Reboot,
        masks: &masks,
    });
    let path = work.join("config.ign");
    let json = serde_json::to_vec_pretty(&c).map_err(|e| HarnessError::Ssh(e.to_string()))?;
    sysext_builder::atomic::write_bytes(&path, &json).map_err(|e| HarnessError::io(&path, e))?;
    Ok((mirror, path))
}
