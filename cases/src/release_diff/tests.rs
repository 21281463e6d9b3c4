//! Release diffs over real images: squashfs built by the builder from spec text, read back.

use std::path::{Path, PathBuf};

use sysext_builder::Arch;
use sysext_builder::build::{Options, build_spec};
use sysext_builder::spec::Spec;

use super::*;

/// A containerd-like release: a daemon binary, a service with `limits`, upheld at boot.
fn spec(version: &str, limits: &str, extra: &str) -> String {
    format!(
        r##"name = "svc"
version = "{version}"
reload-manager = true

[[file]]
path = "/usr/bin/svcd"
mode = 0o755
text = "#!/bin/sh\nexec sleep infinity\n"

[[unit]]
name = "svc.service"
upheld-by = ["multi-user.target"]
text = """[Unit]
Description=svc

[Service]
ExecStart=/usr/bin/svcd
{limits}
"""
{extra}
"##
    )
}

fn build(dir: &Path, text: &str) -> PathBuf {
    let spec = Spec::parse(text, &dir.join("spec.toml")).unwrap();
    let out = dir.join(&spec.version);
    let opts = Options {
        arch: Some(Arch::X86_64),
        ..Default::default()
    };
    build_spec(&spec, dir, &out, &opts).unwrap().image
}

fn diff(old: &str, new: &str) -> Vec<Change> {
    let dir = tempfile::tempdir().unwrap();
    let (o, n) = (build(dir.path(), old), build(dir.path(), new));
    images(&o, &n).unwrap()
}

fn rules(changes: &[Change]) -> Vec<&str> {
    changes.iter().map(|c| c.rule).collect()
}

#[test]
fn an_unchanged_pair_has_no_change() {
    let changes = diff(
        &spec("1.0", "LimitNOFILE=infinity", ""),
        &spec("1.1", "LimitNOFILE=infinity", ""),
    );
    // The version differs only in the release file, which names no VERSION_ID here.
    assert!(changes.iter().all(|c| !c.is_regression()), "{changes:#?}");
}

#[test]
fn a_dropped_limit_nofile_is_a_regression_naming_the_unit_and_both_values() {
    let changes = diff(
        &spec("1.7.28", "LimitNOFILE=infinity", ""),
        &spec("1.7.29", "", ""),
    );
    let c = changes
        .iter()
        .find(|c| c.rule == LIMIT_LOWERED.id)
        .unwrap_or_else(|| panic!("{changes:#?}"));
    assert_eq!(c.subject, "svc.service:LimitNOFILE");
    assert!(c.message.contains("LimitNOFILE=infinity"), "{}", c.message);
    assert!(c.message.contains("1024:524288"), "{}", c.message);
    assert!(c.is_regression());
}

#[test]
fn a_raised_limit_is_shown_not_a_regression() {
    let changes = diff(
        &spec("1.0", "LimitNOFILE=1024", ""),
        &spec("1.1", "LimitNOFILE=1048576", ""),
    );
    assert_eq!(rules(&changes), vec![UNIT_PROPERTY.id], "{changes:#?}");
    assert!(!changes[0].is_regression());
}

#[test]
fn a_lost_binary_and_a_lost_boot_start_are_regressions() {
    let old = spec(
        "1.0",
        "",
        "[[file]]\npath = \"/usr/bin/svcctl\"\nmode = 0o755\ntext = \"#!/bin/sh\\n\"\n",
    );
    let new = spec("1.1", "", "").replace("upheld-by = [\"multi-user.target\"]\n", "");
    let changes = diff(&old, &new);
    let got = rules(&changes);
    assert!(got.contains(&BINARY_LOST.id), "{changes:#?}");
    assert!(got.contains(&NO_LONGER_STARTED.id), "{changes:#?}");
    let lost = changes.iter().find(|c| c.rule == BINARY_LOST.id).unwrap();
    assert_eq!(lost.subject, "/usr/bin/svcctl");
}

#[test]
fn an_acceptance_by_name_turns_the_regression_into_a_shown_change() {
    let dir = tempfile::tempdir().unwrap();
    let o = build(dir.path(), &spec("1.0", "LimitNOFILE=infinity", ""));
    let n = build(dir.path(), &spec("1.1", "LimitNOFILE=4096", ""));
    let (a, b) = (Side::read(&o).unwrap(), Side::read(&n).unwrap());
    let mut reports = releases(&a, &b).unwrap();
    assert_eq!(reports[0].regressions().count(), 1);
    let accept: Acceptance = "diff/limit-lowered:svc.service:LimitNOFILE"
        .parse()
        .unwrap();
    reports[0].accept(&[accept]);
    assert_eq!(reports[0].regressions().count(), 0);
    let other: Acceptance = "diff/limit-lowered:other.service:LimitNOFILE"
        .parse()
        .unwrap();
    let mut again = releases(&a, &b).unwrap();
    again[0].accept(&[other]);
    assert_eq!(again[0].regressions().count(), 1);
    assert!("diff/no-such-rule".parse::<Acceptance>().is_err());
}

#[test]
fn an_arch_missing_from_the_newer_release_is_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let text = spec("1.0", "", "");
    let spec = Spec::parse(&text, &dir.path().join("s.toml")).unwrap();
    let old_dir = dir.path().join("old");
    for arch in Arch::ALL {
        let opts = Options {
            arch: Some(arch),
            ..Default::default()
        };
        build_spec(&spec, dir.path(), &old_dir, &opts).unwrap();
    }
    let new_spec = Spec::parse(&text.replace("1.0", "1.1"), &dir.path().join("s.toml")).unwrap();
    let new_dir = dir.path().join("new");
    let opts = Options {
        arch: Some(Arch::X86_64),
        ..Default::default()
    };
    build_spec(&new_spec, dir.path(), &new_dir, &opts).unwrap();
    let reports = releases(
        &Side::read(&old_dir).unwrap(),
        &Side::read(&new_dir).unwrap(),
    )
    .unwrap();
    let lost: Vec<&Change> = reports.iter().flat_map(|r| r.regressions()).collect();
    assert_eq!(lost.len(), 1, "{reports:#?}");
    assert_eq!(lost[0].rule, ARCH_LOST.id);
    assert_eq!(lost[0].subject, "arm64");
}

#[test]
fn a_current_symlink_the_next_release_moves_is_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |file: &str, link: &str| {
        let p = dir.path().join(file);
        std::fs::write(
            &p,
            format!("[Target]\nPath=/opt/extensions/k3s\nCurrentSymlink={link}\n"),
        )
        .unwrap();
        p
    };
    let (a, b) = (
        conf("a.conf", "/etc/extensions/k3s.raw"),
        conf("b.conf", "/etc/extensions/k3s-v1.32.raw"),
    );
    let changes = transfer("k3s.conf", &a, &b).unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].rule, CURRENT_SYMLINK_MOVED.id);
    assert!(changes[0].is_regression());
    assert!(transfer("k3s.conf", &a, &a).unwrap().is_empty());
}

#[test]
fn a_live_limit_that_drops_after_the_update_is_named_with_both_values() {
    let before = "LimitNOFILE=1048576\nLimitNOFILESoft=1048576\nLimitNPROC=infinity\nLimitNPROCSoft=infinity\n";
    let after =
        "LimitNOFILE=524288\nLimitNOFILESoft=1024\nLimitNPROC=infinity\nLimitNPROCSoft=infinity\n";
    let c = live_limits("containerd.service", before, after);
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(c[0].subject, "containerd.service:LimitNOFILE");
    assert!(c[0].message.contains("1024:524288"), "{}", c[0].message);
    assert!(c[0].message.contains("1048576:1048576"), "{}", c[0].message);
    assert!(live_limits("x.service", before, before).is_empty());
}
