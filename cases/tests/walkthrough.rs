//! The README's walk-through, run as written: every command line of the block between the
//! `walkthrough` markers, in a scratch directory, `sysext-test` being the binary under test
//! and `fixtures/` the repository's. A README that stops working fails here.
//!
//! Named `vm::…`: step 3 boots guests, so nextest gives it the machine to itself.

use std::path::Path;
use std::process::Command;

fn walkthrough_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme.find("<!-- walkthrough -->").expect("start marker");
    let end = readme.find("<!-- /walkthrough -->").expect("end marker");
    readme[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("```") && !l.starts_with("<!--")
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_walkthrough_is_four_steps_that_end_in_the_verdict() {
    let lines = walkthrough_lines();
    assert!(
        lines.iter().all(|l| l.starts_with("sysext-test ")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains(" lint ")));
    assert!(lines.iter().any(|l| l.contains(" run --via all ")));
    assert!(lines.last().unwrap().starts_with("sysext-test report "));
}

mod vm {
    use super::*;

    #[test]
    fn the_readme_walkthrough_runs_as_written() {
        let scratch = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()
            .unwrap();
        std::os::unix::fs::symlink(repo.join("fixtures"), scratch.path().join("fixtures")).unwrap();
        let bin = env!("CARGO_BIN_EXE_sysext-test");
        for line in walkthrough_lines() {
            let cmd = line.replacen("sysext-test", bin, 1);
            let started = std::time::Instant::now();
            let out = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &cmd])
                .current_dir(scratch.path())
                .output()
                .unwrap();
            eprintln!(
                "{line}: exit {:?} in {:.1}s",
                out.status.code(),
                started.elapsed().as_secs_f64()
            );
            assert!(
                out.status.success(),
                "`{line}` exited {:?}\nstdout:\n{}\nstderr:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let verdict = std::fs::read_to_string(scratch.path().join("run.json")).unwrap();
        assert!(verdict.contains("\"case\": \"ignition\""), "{verdict}");
    }
}
