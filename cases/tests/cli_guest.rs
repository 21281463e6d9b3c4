//! The `guest` verb without a VM. The guest cache as it looks after a few weeks of use:
//! guests every older recipe built, their keys and saved states, an interrupted build, an
//! old root tarball. `guest status` tells what the next run uses from what it never will,
//! and `guest clean --stale` frees the latter, keeping what is in use, what a running build
//! holds, and files it does not know. And `guest exec --guest` refusing what is no guest
//! before anything boots.

use std::path::Path;
use std::process::{Command, Output};

use sysext_builder::Arch;
use sysext_builder::guest::{Profile, Recipe};

fn bin(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysext-test"));
    // No KVM probe boot for a cache this test made up.
    c.env("SYSEXT_TEST_CACHE", cache)
        .env("SYSEXT_TEST_ACCEL", "tcg");
    c
}

#[path = "support/output.rs"]
mod output;
use output::text;

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// A complete guest directory the way a build leaves it.
fn guest(guests: &Path, name: &str) {
    let dir = guests.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("root.img"), vec![7u8; 64 * 1024]).unwrap();
    std::fs::write(dir.join("kernel-version"), "6.12.0-1-cloud-amd64\n").unwrap();
    std::fs::write(dir.join(".complete"), b"").unwrap();
    let key = guests.join(format!("{name}.ssh"));
    std::fs::create_dir_all(&key).unwrap();
    std::fs::write(key.join("id_ed25519.pub"), "ssh-ed25519 AAAA test\n").unwrap();
}

/// A saved state whose record names `guest`.
fn state(snapshots: &Path, name: &str, guest: &str) {
    let dir = snapshots.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let record = serde_json::json!({
        "arch": "x86-64", "guest": guest, "recipe_hash": "0123456789abcdef",
        "qemu": "QEMU emulator version 0.0", "accel": "tcg", "machine": "qemu-system-x86_64",
        "kernel_cmdline": "console=ttyS0", "key": "SHA256:x", "saved_at": 1,
        "cold_boot_seconds": 9.5, "beacon_seconds": null, "initrd_hold": false,
    });
    std::fs::write(dir.join("record.json"), record.to_string()).unwrap();
    std::fs::write(dir.join("state"), vec![1u8; 32 * 1024]).unwrap();
    std::fs::write(dir.join(".complete"), b"").unwrap();
}

fn name_of(p: impl AsRef<Path>) -> String {
    p.as_ref()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

const OLD_X86: &str = "flatcar-trixie-x86-64-0123456789abcdef";
const OLD_ARM: &str = "flatcar-trixie-arm64-0123456789abcdef";

#[test]
fn clean_stale_removes_what_older_recipes_made_and_keeps_what_the_next_run_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let guests = cache.join("guests");
    let snapshots = cache.join("snapshots");
    let current = name_of(Recipe::new(Profile::Flatcar, Arch::X86_64).cache_dir());
    let current_tarball = name_of(Recipe::new(Profile::Flatcar, Arch::X86_64).root_tarball());
    guest(&guests, &current);
    guest(&guests, OLD_X86);
    guest(&guests, OLD_ARM);
    std::fs::create_dir_all(guests.join(".debian-trixie-arm64-00000000000000aa.build/root"))
        .unwrap();
    std::fs::write(guests.join(&current_tarball), b"tar").unwrap();
    std::fs::write(
        guests.join("root-trixie-x86-64-00000000000000bb.tar"),
        b"tar",
    )
    .unwrap();
    std::fs::write(guests.join("notes.txt"), b"mine").unwrap();
    state(&snapshots, &format!("{OLD_X86}-aaaaaaaaaaaaaaaa"), OLD_X86);
    state(
        &snapshots,
        "debian-trixie-x86-64-00000000000000cc-bbbbbbbbbbbbbbbb",
        "debian-trixie-x86-64-00000000000000cc",
    );

    let status = json(
        &bin(cache)
            .args(["guest", "status", "--format", "json"])
            .output()
            .unwrap(),
    );
    let used = |name: &str| {
        status["guests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["dir"].as_str().is_some_and(|d| d.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} not listed: {status:#}"))["used"]
            .clone()
    };
    assert_eq!(used(&current), true, "{status:#}");
    assert_eq!(used(&format!("{current}.ssh")), true, "{status:#}");
    assert_eq!(used(&current_tarball), true, "{status:#}");
    assert_eq!(used(OLD_X86), false, "{status:#}");
    assert_eq!(used(&format!("{OLD_X86}.ssh")), false, "{status:#}");
    assert_eq!(used("root-trixie-x86-64-00000000000000bb.tar"), false);
    assert_eq!(used(".debian-trixie-arm64-00000000000000aa.build"), false);
    let states = status["states"].as_array().unwrap();
    assert_eq!(states.len(), 2, "{status:#}");
    assert!(states.iter().all(|s| s["valid"] == false), "{status:#}");
    assert!(
        states.iter().any(|s| s["reason"]
            .as_str()
            .is_some_and(|r| r.contains(OLD_X86) && r.contains("older recipe"))),
        "{status:#}"
    );
    assert!(
        states.iter().any(|s| s["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no longer cached"))),
        "{status:#}"
    );
    assert!(status["stale_bytes"].as_u64().unwrap() > 64 * 1024);

    // A build of the old arm64 recipe is running (its lock is held): that guest stays.
    let lock = sysext_builder::cache::Lock::acquire(&guests.join(".locks").join(OLD_ARM)).unwrap();
    let cleaned = json(
        &bin(cache)
            .args(["guest", "clean", "--stale", "--format", "json"])
            .output()
            .unwrap(),
    );
    drop(lock);
    let removed: Vec<String> = cleaned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| name_of(d.as_str().unwrap()))
        .collect();
    for gone in [
        OLD_X86.to_string(),
        format!("{OLD_X86}.ssh"),
        ".debian-trixie-arm64-00000000000000aa.build".into(),
        "root-trixie-x86-64-00000000000000bb.tar".into(),
        format!("{OLD_X86}-aaaaaaaaaaaaaaaa"),
        "debian-trixie-x86-64-00000000000000cc-bbbbbbbbbbbbbbbb".into(),
    ] {
        assert!(removed.contains(&gone), "{gone} not removed: {cleaned:#}");
        assert!(
            !guests.join(&gone).exists() && !snapshots.join(&gone).exists(),
            "{gone} still there"
        );
    }
    assert!(
        cleaned["busy"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().is_some_and(|d| d.ends_with(OLD_ARM))),
        "{cleaned:#}"
    );
    for kept in [
        current.clone(),
        format!("{current}.ssh"),
        current_tarball,
        OLD_ARM.into(),
        "notes.txt".into(),
    ] {
        assert!(
            guests.join(&kept).exists(),
            "{kept} was removed: {cleaned:#}"
        );
    }
    assert!(
        cleaned["bytes"].as_u64().unwrap() >= 64 * 1024,
        "{cleaned:#}"
    );
}

#[test]
fn clean_without_stale_forgets_every_saved_state_and_keeps_every_guest() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let guests = cache.join("guests");
    let snapshots = cache.join("snapshots");
    guest(&guests, OLD_X86);
    state(&snapshots, &format!("{OLD_X86}-aaaaaaaaaaaaaaaa"), OLD_X86);
    let out = bin(cache).args(["guest", "clean"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("saved guest states removed: 1"), "{said}");
    assert!(
        !snapshots
            .join(format!("{OLD_X86}-aaaaaaaaaaaaaaaa"))
            .exists()
    );
    assert!(guests.join(OLD_X86).join("root.img").exists());
}

#[test]
fn exec_on_a_guest_that_is_no_disk_or_release_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    for (guest, says) in [
        ("/nonexistent/flatcar.img", "no such disk image"),
        ("flatcar:nightly", "channel one of stable, beta, alpha, lts"),
    ] {
        let out = bin(tmp.path())
            .args(["guest", "exec", "--guest", guest, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(guest) && err.contains(says), "{err}");
    }
    // Nothing was fetched, read or saved for it.
    assert!(!tmp.path().join("snapshots").exists());
    assert!(!tmp.path().join("guests").exists());
}
