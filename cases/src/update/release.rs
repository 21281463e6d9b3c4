//! The releases a cycle publishes: the subject's spec rebuilt at each version of its
//! `[test.update]` plan, plus the version sysupdate cannot parse.

use crate::outcome::CaseError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sysext_builder::Arch;
use sysext_builder::build;
use sysext_builder::spec::Spec;

use crate::manifest::UpdatePlan;

/// Builds every release of `spec` for `arch` into `out`: the spec's own version first, then
/// the plan's, then its unparsable version. Returns the images by version and the order.
pub fn build_all(
    spec: &Spec,
    spec_dir: &Path,
    plan: &UpdatePlan,
    arch: Arch,
    out: &Path,
) -> Result<(BTreeMap<String, PathBuf>, Vec<String>), CaseError> {
    let mut order = vec![spec.version.clone()];
    order.extend(plan.versions.iter().cloned());
    let mut all = order.clone();
    all.extend(plan.unparsable_version.iter().cloned());
    let mut images = BTreeMap::new();
    for version in &all {
        let mut s = spec.clone();
        s.version = version.clone();
        // Each release goes to its own directory: the mirror's store gets only what a
        // cycle publishes, with a SHA256SUMS the mirror writes itself.
        let dir = out.join(version);
        let built = build::build_spec(
            &s,
            spec_dir,
            &dir,
            &build::Options {
                arch: Some(arch),
                ..Default::default()
            },
        )
        .map_err(|e| format!("building {} {version} for {arch}: {e}", spec.name))?;
        images.insert(version.clone(), built.image);
    }
    Ok((images, order))
}
