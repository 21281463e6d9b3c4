//! A bakery release store as a maintainer has one: built release by release with
//! `sysext-test build --store`, linted whole, listed as the conformance matrix, and refused
//! (exit 2, one line naming the file and both digests) once a byte of one image changes:
//! before any test, let alone a VM, starts. `report` turns results into the verdict.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sysext-test"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/extensions")
        .join(format!("{name}.toml"))
}

/// hello-update at two versions, both arches, laid out the bakery's way.
fn store(dir: &Path) -> PathBuf {
    let root = dir.join("store");
    for version in ["1.0.0", "2.0.0"] {
        let out = bin()
            .args(["build", "--arch", "all", "--version", version, "--store"])
            .arg(&root)
            .arg(fixture("hello-update"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    root
}

#[path = "support/output.rs"]
mod output;
use output::text;

/// The conformance binary nextest built beside this one (`target/<profile>/deps/`).
fn conformance_binary() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("conformance-") && !n.contains('.')
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("the conformance test binary next to this one")
}

fn listing(store: &Path) -> Output {
    Command::new(conformance_binary())
        .args(["--list", "--format", "terse"])
        .env("SYSEXT_TEST_SUBJECTS", store)
        .output()
        .unwrap()
}

/// `lint --format json` of `root`, which must pass (exit 0): its reports.
fn lint_json(root: &Path) -> Vec<serde_json::Value> {
    let out = bin()
        .args(["lint", "--format", "json"])
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["images"].as_array().cloned().unwrap_or_default()
}

/// A refusal before anything runs: exit 2 and one line, the digest mismatch of `file`.
fn refused_for_digest(out: &Output, file: &Path) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(&file.display().to_string()), "{err}");
    assert!(lines[0].contains("digest mismatch"), "{err}");
    lines[0].to_string()
}

#[test]
fn a_store_built_release_by_release_has_the_bakery_layout_and_lints_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let root = store(tmp.path());
    for f in [
        "hello-update-1.0.0/hello-update-1.0.0-x86-64.raw",
        "hello-update-1.0.0/hello-update-1.0.0-arm64.raw",
        "hello-update-1.0.0/SHA256SUMS",
        "hello-update-1.0.0/hello-update.conf",
        "hello-update-2.0.0/hello-update-2.0.0-arm64.raw",
        "hello-update/SHA256SUMS",
        "hello-update/hello-update.conf",
        "SHA256SUMS/SHA256SUMS",
    ] {
        assert!(root.join(f).is_file(), "missing {f}");
    }
    let global = std::fs::read_to_string(root.join("SHA256SUMS/SHA256SUMS")).unwrap();
    assert_eq!(global.lines().count(), 4, "{global}");

    let reports = lint_json(&root);
    let images = reports.iter().filter(|r| r["kind"] == "image").count();
    assert_eq!(images, 4, "{reports:#?}");
}

#[test]
fn a_store_lists_every_extension_version_arch_and_family() {
    let tmp = tempfile::tempdir().unwrap();
    let root = store(tmp.path());
    let out = listing(&root);
    assert!(out.status.success(), "{}", text(&out));
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "store::digests: test",
        "lint::x86-64::hello-update@1.0.0: test",
        "lint::arm64::hello-update@2.0.0: test",
        "vm::arm64::hello-update@1.0.0::merge: test",
        "vm::x86-64::hello-update@2.0.0::unmerge: test",
        "boot::arm64::hello-update@2.0.0: test",
        "ignition::x86-64::hello-update@1.0.0: test",
        "update::x86-64::hello-update@2.0.0::update-from-1.0.0: test",
        "update::arm64::hello-update@2.0.0::rollback-from-1.0.0: test",
    ] {
        assert!(names.lines().any(|l| l == want), "{want} not in\n{names}");
    }
}

#[test]
fn a_flipped_digest_stops_lint_run_and_the_listing_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = store(tmp.path());
    let victim = root.join("hello-update-2.0.0/hello-update-2.0.0-arm64.raw");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();

    for out in [
        bin().arg("lint").arg(&root).output().unwrap(),
        bin()
            .args(["run", "--case", "merge"])
            .arg(&root)
            .output()
            .unwrap(),
        listing(&root),
    ] {
        refused_for_digest(&out, &victim);
        assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("vm::"));
    }
}

/// The bakery's manifests list images only, so lint notes (info, exit 0) that the conf the
/// update cycles install is unverified; once a manifest lists it, its bytes are checked like
/// an image's, and a changed byte stops lint and the listing with one line.
#[test]
fn the_conf_the_cycles_use_is_noted_until_listed_then_checked_like_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = store(tmp.path());
    let conf = root.join("hello-update-2.0.0/hello-update.conf");

    let reports = lint_json(&root);
    let noted: Vec<&serde_json::Value> = reports
        .iter()
        .filter(|r| {
            r["findings"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["rule"] == "store/unlisted-transfer"))
        })
        .collect();
    assert_eq!(noted.len(), 1, "{reports:#?}");
    let path = noted[0]["path"].as_str().unwrap_or_default();
    assert!(path.ends_with("hello-update-2.0.0"), "{reports:#?}");

    // The global manifest vouches for it by name, as the metadata and global releases do.
    let digest = sysext_builder::sha256sums::digest_file(&conf).unwrap();
    sysext_builder::sha256sums::upsert(
        &root.join("SHA256SUMS/SHA256SUMS"),
        "hello-update.conf",
        &digest,
    )
    .unwrap();
    let out = bin().arg("lint").arg(&root).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("store/unlisted-transfer"),
        "{}",
        text(&out)
    );

    let mut bytes = std::fs::read(&conf).unwrap();
    bytes.extend_from_slice(b"# changed\n");
    std::fs::write(&conf, bytes).unwrap();
    for out in [
        bin().arg("lint").arg(&root).output().unwrap(),
        listing(&root),
    ] {
        let line = refused_for_digest(&out, &conf);
        assert!(line.contains(&digest), "{line}");
    }
}

#[test]
fn lint_of_a_folder_with_nothing_to_check_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("SHA256SUMS")).unwrap();
    std::fs::create_dir(tmp.path().join("docker")).unwrap();
    std::fs::write(tmp.path().join("docker/SHA256SUMS"), "").unwrap();
    let out = bin().arg("lint").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no extension images"),
        "{}",
        text(&out)
    );
}

#[test]
fn report_turns_junit_into_the_verdict_and_its_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = |cases: &str| {
        format!(
            "<testsuites><testsuite name=\"sysext-cases::conformance\">{cases}</testsuite></testsuites>"
        )
    };
    let ok = "<testcase name=\"vm::x86-64::hello-update@2.0.0::merge\" classname=\"sysext-cases::conformance\"/>";
    let bad = "<testcase name=\"boot::arm64::hello-update@2.0.0\" classname=\"sysext-cases::conformance\"><failure message=\"test failure\"/><system-out>---- boot::arm64::hello-update@2.0.0 ----\nFAIL not merged at boot\n</system-out></testcase>";
    let green = tmp.path().join("green.xml");
    let red = tmp.path().join("red.xml");
    std::fs::write(&green, junit(ok)).unwrap();
    std::fs::write(&red, junit(bad)).unwrap();
    let summary = tmp.path().join("summary.md");

    let out = bin()
        .arg("report")
        .arg("--summary")
        .arg(&summary)
        .arg(&green)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(md.contains("verdict: PASS"), "{md}");
    assert!(
        md.contains("| hello-update | 2.0.0 | x86-64 | ✅ 1 |"),
        "{md}"
    );
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), md);

    let out = bin().arg("report").arg(&green).arg(&red).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL not merged at boot"));

    let out = bin()
        .args(["report", "--format", "json"])
        .arg(&red)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["green"], false);

    let out = bin()
        .arg("report")
        .arg(tmp.path().join("missing.xml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
