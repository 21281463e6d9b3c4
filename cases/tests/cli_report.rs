//! `sysext-test report --expected`: absence is red. A trial nextest lists for the filter
//! that no input has a result for makes the verdict exit 1 and is named; a complete set
//! exits 0; an unreadable list is exit 2 in one line.

use std::path::Path;
use std::process::{Command, Output};

/// nextest's list for these conformance trials, all selected by the filter.
fn list(names: &[&str]) -> String {
    let cases: Vec<String> = names
        .iter()
        .map(|n| {
            format!("\"{n}\":{{\"ignored\":false,\"filter-match\":{{\"status\":\"matches\"}}}}")
        })
        .collect();
    format!(
        "{{\"test-count\":{},\"rust-suites\":{{\"sysext-cases::conformance\":{{\"binary-id\":\"sysext-cases::conformance\",\"testcases\":{{{}}}}}}}}}",
        names.len(),
        cases.join(",")
    )
}

/// nextest's JUnit with these conformance trials passed.
fn junit(names: &[&str]) -> String {
    let cases: String = names
        .iter()
        .map(|n| format!("<testcase name=\"{n}\" classname=\"sysext-cases::conformance\"/>"))
        .collect();
    format!(
        "<?xml version=\"1.0\"?><testsuites name=\"nextest-run\"><testsuite name=\"sysext-cases::conformance\">{cases}</testsuite></testsuites>"
    )
}

fn report(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sysext-test"))
        .current_dir(dir)
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

const TRIALS: [&str; 3] = [
    "lint::hello-update",
    "vm::x86-64::hello-update::merge",
    "vm::arm64::hello-update::merge",
];

#[test]
fn a_listed_trial_with_no_result_makes_the_verdict_red_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("expected.json"), list(&TRIALS)).unwrap();
    // A partition died: the arm64 trial never wrote its result.
    std::fs::write(tmp.path().join("junit.xml"), junit(&TRIALS[..2])).unwrap();
    let out = report(tmp.path(), &["--expected", "expected.json", "junit.xml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("verdict: FAIL"), "{stdout}");
    assert!(
        stdout.contains("`vm::arm64::hello-update::merge`: not run"),
        "{stdout}"
    );
    // The same results without the list: green, and it says absence was not checked.
    let out = report(tmp.path(), &["junit.xml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("> Absence is not checked"), "{stdout}");
}

#[test]
fn a_complete_set_of_results_is_green_against_its_list() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("expected.json"), list(&TRIALS)).unwrap();
    std::fs::write(tmp.path().join("junit.xml"), junit(&TRIALS)).unwrap();
    let out = report(tmp.path(), &["--expected", "expected.json", "junit.xml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
}

#[test]
fn a_list_that_is_not_nextests_is_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("expected.json"), "[]").unwrap();
    std::fs::write(tmp.path().join("junit.xml"), junit(&TRIALS)).unwrap();
    let out = report(tmp.path(), &["--expected", "expected.json", "junit.xml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("expected.json"), "{stderr}");
}
