//! `sysext-test check`, the README's main command: fixtures built and linted, each judged
//! against the verdict it exists for, ending in the verdict table (exit 0 when all match).

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sysext-test"))
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/extensions")
        .join(format!("{name}.toml"))
}

#[test]
fn a_good_and_a_broken_fixture_both_get_their_verdict_and_the_table_is_green() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("check")
        .arg("-o")
        .arg(out_dir.path())
        .arg(fixture("busybox"))
        .arg(fixture("broken-usr-sbin"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
    assert!(stdout.contains("| busybox | - | all | ✅ 1 |"), "{stdout}");
    assert!(
        stdout.contains("| broken-usr-sbin | - | all | ✅ 1 |"),
        "{stdout}"
    );
    assert!(out_dir.path().join("busybox/arm64/SHA256SUMS").is_file());
}

#[test]
fn a_fixture_that_does_not_get_its_verdict_turns_the_table_red() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("claims-sbin.toml");
    std::fs::write(
        &spec,
        "name = \"claims\"\nversion = \"1.0\"\narch = \"x86-64\"\n\
         [[file]]\npath = \"/usr/share/claims/data\"\ntext = \"x\"\n\
         [expect]\nfindings = [\"content/usr-sbin\"]\n",
    )
    .unwrap();
    let out = bin()
        .arg("check")
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg(&spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: FAIL"), "{stdout}");
    assert!(
        stdout.contains("missing [\"content/usr-sbin\"]"),
        "{stdout}"
    );
}
