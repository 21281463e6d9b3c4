//! Root's view of a file tree, for a user who is not root.
//!
//! A guest's root tree has files of many owners. Unpacking it with those owners, running a
//! program of it (`chroot`), and making a filesystem that records them (`mke2fs -d`,
//! `mkfs.btrfs --rootdir`) are root's jobs. A normal user gets the same view in a user
//! namespace (`unshare --map-root-user --map-auto`): the user's own uid is 0 there and the
//! subordinate ids of `/etc/subuid` (mapped by `newuidmap`, package `uidmap`) are 1 to
//! 65535. So every file root owns in the guest stays the user's own on the host, and the
//! build's own file writes between those programs keep working; only the few files of other
//! owners are the subordinate ids' on the host.
//!
//! As root nothing changes: the programs run as they are.

use std::path::Path;
use std::process::Command;

use crate::errors::BuildError;
use crate::host_tool;

/// The arguments that put a program in the namespace, before `--` and the program.
const ENTER: &[&str] = &["--user", "--map-root-user", "--map-auto", "--"];

/// True when the build runs as root and needs no namespace.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when programs see files as root would: as root, or in a namespace that works.
pub fn sees_owners() -> bool {
    is_root() || namespace().is_ok()
}

/// Whether this user can have the namespace, tried once per process; the error is
/// `unshare`'s own words.
fn namespace() -> Result<(), &'static str> {
    static TRIED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    TRIED
        .get_or_init(|| {
            let out = Command::new("unshare")
                .args(ENTER)
                .arg("true")
                .output()
                .map_err(|e| format!("unshare: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " / "))
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(String::as_str)
}

/// `program` as a command that sees the guest's tree as root: itself as root, inside the
/// namespace for a user who can have one, and as the plain user otherwise (owners other
/// than the user's are lost then; [`check`] refuses that where it matters).
pub fn command(program: &str) -> Command {
    if is_root() || namespace().is_err() {
        return Command::new(program);
    }
    let mut c = Command::new("unshare");
    c.args(ENTER).arg(program);
    c
}

/// `chroot root` as a command: the program named next runs in the guest's tree. In the
/// namespace the host's `/dev` is bound over the tree's (which has no device nodes there),
/// in a mount namespace of its own, so nothing a program writes to `/dev/urandom` lands in
/// the tree as a file.
pub fn chroot(root: &Path) -> Command {
    if is_root() || namespace().is_err() {
        let mut c = Command::new("chroot");
        c.arg(root);
        return c;
    }
    let mut c = Command::new("unshare");
    c.args(&ENTER[..ENTER.len() - 1])
        .args(["--mount", "--", "sh", "-c"])
        .arg(r#"mount --rbind /dev "$0/dev" && exec chroot "$0" "$@""#)
        .arg(root);
    c
}

/// Fails early, with the fix, when a normal user cannot have the namespace: no `unshare`
/// or `newuidmap`, no subordinate ids, or user namespaces switched off.
pub fn check() -> Result<(), BuildError> {
    if is_root() {
        return Ok(());
    }
    namespace().map_err(|why| {
        let user = std::env::var("USER").unwrap_or_else(|_| "$USER".into());
        BuildError::Spec(format!(
            "building a guest as a normal user needs a user namespace with subordinate ids, and \
             `unshare --user --map-root-user --map-auto true` failed ({why}); install uidmap \
             (apt-get install uidmap, or run .ci/setup) and give {user} a range \
             (sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}), or build as root"
        ))
    })
}

/// Removes `tree` and everything under it, including what belongs to subordinate ids
/// (which the user cannot remove outside the namespace). A missing tree is no error.
pub fn remove_tree(tree: &Path) -> Result<(), BuildError> {
    if !tree.exists() {
        return Ok(());
    }
    if is_root() || namespace().is_err() {
        return std::fs::remove_dir_all(tree).map_err(|e| BuildError::io(tree, e));
    }
    host_tool::output(command("rm").arg("-rf").arg(tree), "coreutils")?;
    Ok(())
}

/// Gives `path` to `uid`:`gid` as the guest sees them (in the namespace for a user).
pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    if is_root() || namespace().is_err() {
        return std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| BuildError::io(path, e));
    }
    host_tool::output(
        command("chown").arg(format!("{uid}:{gid}")).arg(path),
        "coreutils",
    )?;
    Ok(())
}

/// The program a command runs, looking through the namespace's `unshare` (errors name the
/// program that failed, not the wrapper).
pub(crate) fn program_of(cmd: &Command) -> String {
    let program = cmd.get_program().to_string_lossy().into_owned();
    if program != "unshare" {
        return program;
    }
    let mut args = cmd.get_args().skip_while(|a| *a != "--");
    args.next();
    match args.next().map(|a| a.to_string_lossy().into_owned()) {
        // [`chroot`]'s shell, which binds /dev and runs chroot.
        Some(sh) if sh == "sh" => "chroot".into(),
        Some(p) => p,
        None => program,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_program_inside_the_namespace() {
        let mut c = Command::new("unshare");
        c.args(ENTER).arg("mke2fs").arg("-q");
        assert_eq!(program_of(&c), "mke2fs");
        assert_eq!(program_of(&Command::new("tar")), "tar");
        if !is_root() && namespace().is_ok() {
            assert_eq!(program_of(&chroot(Path::new("/r"))), "chroot");
        }
        if !is_root() && namespace().is_ok() {
            assert_eq!(program_of(&chroot(Path::new("/r"))), "chroot");
        }
    }
}
