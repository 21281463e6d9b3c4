//! `sysext-test mirror DIR` as a user runs it: it announces where it serves, answers a real
//! HTTP client with the release directory's files, logs each request, and refuses a
//! directory that is not there with a one-line error and exit code 2.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sysext-test"))
}

#[test]
fn mirror_serves_a_built_release_directory_and_logs_requests() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("x.toml");
    std::fs::write(
        &spec,
        "name = \"x\"\nversion = \"1.0\"\n[[file]]\npath = \"/usr/share/x/data\"\ntext = \"x\"\n",
    )
    .unwrap();
    let rel = dir.path().join("rel");
    let built = bin()
        .args(["build", "--arch", "x86-64", "-o"])
        .arg(&rel)
        .arg(&spec)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");

    let mut child = bin()
        .args(["mirror", "--format", "json", "--timeout", "60"])
        .arg(&rel)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let url = first["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        first["guest_url"]
            .as_str()
            .unwrap()
            .starts_with("http://10.0.2.2:")
    );

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let sums = client
        .get(format!("{url}/x/SHA256SUMS"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(sums.ends_with("  x-1.0-x86-64.raw\n"), "{sums}");
    let image = client
        .get(format!("{url}/x/x-1.0-x86-64.raw"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        image.len() as u64,
        std::fs::metadata(rel.join("x-1.0-x86-64.raw"))
            .unwrap()
            .len()
    );

    let logged: Vec<serde_json::Value> = (0..2)
        .map(|_| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(logged[0]["path"], "/extensions/x/SHA256SUMS");
    assert_eq!(logged[1]["path"], "/extensions/x/x-1.0-x86-64.raw");
    assert_eq!(logged[1]["status"], 200);
    assert_eq!(logged[1]["bytes"].as_u64(), Some(image.len() as u64));
}

#[test]
fn mirror_of_a_missing_directory_exits_2_with_one_line() {
    let out = bin()
        .args(["mirror", "/nonexistent/release"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/release") && err.contains("sysext-test build"),
        "{err}"
    );
}
