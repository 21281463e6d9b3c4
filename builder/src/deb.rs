//! Files taken out of Debian packages: fixture binaries (busybox-static, jq) and the guest
//! kernel.
//!
//! Packages are fetched from Debian's archive at build time and cached, never committed. We
//! drive the host's `apt-get` with a private state directory, so the host's own package
//! lists and architecture setup are left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::cache;
use crate::errors::BuildError;

/// The suite packages come from: trixie, the same generation as our guests.
pub const SUITE: &str = "trixie";

/// The suites a spec may take a package from: trixie, and bookworm for a program one
/// generation older (the stand-ins for Flatcar's built-in extensions, whose versions must
/// differ from the bakery-style images built from trixie's).
pub const SUITES: &[&str] = &["trixie", "bookworm"];

/// The Debian mirror; `SYSEXT_TEST_DEBIAN_MIRROR` overrides it.
pub fn mirror() -> String {
    std::env::var("SYSEXT_TEST_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// apt-get/apt-cache with a private state directory for one architecture.
struct Apt {
    arch: Arch,
    suite: &'static str,
    base: PathBuf,
}

impl Apt {
    fn new(arch: Arch, suite: &'static str) -> Apt {
        Apt {
            arch,
            suite,
            base: cache::root()
                .join("debs")
                .join(suite)
                .join(arch.debian_name()),
        }
    }

    fn state(&self) -> PathBuf {
        self.base.join("apt")
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let state = self.state();
        let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
        let mut c = Command::new(program);
        c.arg("-q")
            .arg("-o")
            .arg(opt("Dir::State", &state.join("state")))
            .arg("-o")
            .arg(opt("Dir::Cache", &state.join("cache")))
            .arg("-o")
            .arg(opt("Dir::Etc::SourceList", &state.join("etc/sources.list")))
            .arg("-o")
            .arg(opt(
                "Dir::Etc::SourceParts",
                &state.join("etc/sources.list.d"),
            ))
            .arg("-o")
            .arg(opt(
                "Dir::Etc::PreferencesParts",
                &state.join("etc/preferences.d"),
            ))
            .arg("-o")
            .arg(format!("APT::Architecture={}", self.arch.debian_name()))
            .arg("-o")
            .arg(format!("APT::Architectures={}", self.arch.debian_name()))
            .arg("-o")
            .arg("Debug::NoLocking=1")
            .args(args);
        c
    }

    /// Writes the private sources list and fetches package lists once.
    fn prepare(&self) -> Result<(), BuildError> {
        let state = self.state();
        for d in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/sources.list.d",
            "etc/preferences.d",
            "debs",
        ] {
            std::fs::create_dir_all(state.join(d)).map_err(|e| BuildError::io(&state, e))?;
        }
        let sources = state.join("etc/sources.list");
        std::fs::write(
            &sources,
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {} main\n",
                mirror(),
                self.suite
            ),
        )
        .map_err(|e| BuildError::io(&sources, e))?;
        let have_lists = std::fs::read_dir(state.join("state/lists"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(false);
        if !have_lists {
            run(
                &mut self.command("apt-get", &["update"]),
                "apt-get update",
                "apt",
            )?;
        }
        Ok(())
    }
}

/// Returns a directory holding the unpacked contents of `package` for `arch`, downloading
/// it on first use.
pub fn unpacked(package: &str, arch: Arch) -> Result<PathBuf, BuildError> {
    unpacked_from(package, arch, SUITE)
}

/// [`unpacked`] from another of [`SUITES`].
pub fn unpacked_from(package: &str, arch: Arch, suite: &str) -> Result<PathBuf, BuildError> {
    check_name(package)?;
    let suite = SUITES
        .iter()
        .copied()
        .find(|s| *s == suite)
        .ok_or_else(|| {
            BuildError::Spec(format!(
                "suite '{suite}' is not one packages come from: use one of {}",
                SUITES.join(", ")
            ))
        })?;
    let apt = Apt::new(arch, suite);
    let dest = apt.base.join(package);
    let _lock = cache::Lock::acquire(&apt.base).map_err(|e| BuildError::io(&apt.base, e))?;
    if dest.join(".complete").exists() {
        return Ok(dest);
    }
    apt.prepare()?;
    let debs = apt.state().join("debs");
    run(
        apt.command("apt-get", &["download", package])
            .current_dir(&debs),
        "apt-get download",
        "apt",
    )?;
    let prefix = format!("{package}_");
    let deb = std::fs::read_dir(&debs)
        .map_err(|e| BuildError::io(&debs, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".deb")
        })
        .ok_or_else(|| {
            BuildError::Fetch(format!(
                "apt-get download {package} produced no .deb in {}",
                debs.display()
            ))
        })?;
    let staging = apt.base.join(format!(".{package}.unpack"));
    let _ = std::fs::remove_dir_all(&staging);
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging),
        "dpkg-deb",
        "dpkg",
    )?;
    std::fs::write(
        staging.join(".complete"),
        deb.file_name().unwrap_or_default().as_encoded_bytes(),
    )
    .map_err(|e| BuildError::io(&staging, e))?;
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest).map_err(|e| BuildError::io(&dest, e))?;
    Ok(dest)
}

/// The real package a metapackage points at, e.g. `linux-image-amd64` →
/// `linux-image-6.12.48+deb13-amd64`: the first dependency starting with `prefix`.
pub fn resolve_dependency(meta: &str, arch: Arch, prefix: &str) -> Result<String, BuildError> {
    check_name(meta)?;
    let apt = Apt::new(arch, SUITE);
    let _lock = cache::Lock::acquire(&apt.base).map_err(|e| BuildError::io(&apt.base, e))?;
    apt.prepare()?;
    let out = apt
        .command("apt-cache", &["depends", meta])
        .output()
        .map_err(|e| BuildError::Fetch(format!("apt-cache depends {meta}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|d| d.starts_with(prefix))
        .map(str::to_string)
        .ok_or_else(|| {
            BuildError::Fetch(format!(
                "{meta} has no dependency starting with {prefix} in {SUITE}"
            ))
        })
}

fn check_name(package: &str) -> Result<(), BuildError> {
    if package.is_empty()
        || !package
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(BuildError::Spec(format!(
            "'{package}' is not a Debian package name"
        )));
    }
    Ok(())
}

/// Runs an apt/dpkg step; a failure says which step (the usual cause is the network).
fn run(cmd: &mut Command, what: &str, package: &str) -> Result<(), BuildError> {
    match crate::host_tool::output(cmd, package) {
        Ok(_) => Ok(()),
        Err(e @ crate::host_tool::ToolError::Missing { .. }) => Err(e.into()),
        Err(e) => Err(BuildError::Fetch(format!("{what}: {e}"))),
    }
}
