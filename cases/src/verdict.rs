//! The pre-release verdict: results from any number of runs (nextest's JUnit files, one per
//! partition, or `sysext-test run --format json`) merged into one table, extension x
//! version x arch x case family, that a maintainer reads in a pull request.
//!
//! Green only when every cell is: a failed, errored or skipped test makes its cell red or
//! incomplete, and a test reported by two inputs (overlapping partitions) is itself a
//! failure of the run, since it means the split is not what the reader thinks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sysext_builder::{Arch, naming};

use crate::outcome::Verdict as CaseVerdict;

/// Why inputs could not be read. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{}: {message}; pass nextest's JUnit file (target/nextest/<profile>/junit.xml) or `sysext-test run --format json` output",
        path.display()
    )]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "no conformance results in {}; run the suite first (`cargo nextest run --profile ci`)",
        files
    )]
    Empty { files: String },
    #[error(
        "{}: {message}; pass what `cargo nextest list --message-format json` prints for the same filter",
        path.display()
    )]
    NotAList { path: PathBuf, message: String },
}

/// The case families, the table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Store,
    Lint,
    /// A release against the one before it (`release_diff`).
    Diff,
    Vm,
    Boot,
    Ignition,
    Update,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Store,
        Family::Lint,
        Family::Diff,
        Family::Vm,
        Family::Boot,
        Family::Ignition,
        Family::Update,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Store => "store",
            Family::Lint => "lint",
            Family::Diff => "diff",
            Family::Vm => "vm",
            Family::Boot => "boot",
            Family::Ignition => "ignition",
            Family::Update => "update",
        }
    }

    fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// Ignored (a min-systemd skip, `#[ignore]`): `n/a`, never evidence of green.
    Skipped,
    /// Expected to run (listed by `--expected`, or a case `run` did not get to) and no
    /// result says it did: red.
    NotRun,
}

/// One test's result as an input reported it.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub name: String,
    pub status: Status,
    /// The first line of the failure, for red cells.
    pub first_line: Option<String>,
    /// Where the failed case's artifacts (console, journal, sysext status) went.
    pub artifacts: Option<String>,
    /// The input file that reported it.
    pub source: PathBuf,
}

/// Which row a conformance test belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RowKey {
    pub extension: String,
    /// `-` for a fixture (its version lives in its spec) and for store-wide checks.
    pub version: String,
    /// `all` for checks that span arches (a fixture's lint builds both).
    pub arch: String,
}

/// Where a conformance test's name puts it: (row, column), or None for any other test.
///
/// Names: `lint::<fixture>`, `lint::<arch>::<name>@<version>`, `lint::subject::<file>`,
/// `vm::<arch>::<subject>::<case>`, `boot::<arch>::<subject>`,
/// `ignition::<arch>::<subject>[::wrong-hash]`, `update::<arch>::<subject>::<cycle>` and
/// `store::<check>`, where a subject is a fixture, `<name>@<version>` (a store's release)
/// or `subject::<file>`.
pub fn place(test: &str) -> Option<(RowKey, Family)> {
    let mut parts = test.split("::");
    let family = Family::parse(parts.next()?)?;
    let rest: Vec<&str> = parts.collect();
    if family == Family::Store {
        return Some((
            RowKey {
                extension: "(store)".into(),
                version: "-".into(),
                arch: "all".into(),
            },
            family,
        ));
    }
    let (arch, subject) = match rest.as_slice() {
        [a, rest @ ..] if a.parse::<Arch>().is_ok() => (a.to_string(), rest),
        rest => ("all".to_string(), rest),
    };
    let (extension, version, arch) = match subject {
        ["subject", file, ..] => match naming::triple(file, &[]) {
            Some(t) => (t.name, t.version, t.arch.systemd_name().to_string()),
            None => (file.to_string(), "-".into(), arch),
        },
        [s, ..] => match s.split_once('@') {
            Some((n, v)) => (n.to_string(), v.to_string(), arch),
            None => (s.to_string(), "-".into(), arch),
        },
        [] => return None,
    };
    Some((
        RowKey {
            extension,
            version,
            arch,
        },
        family,
    ))
}

/// One cell: how its tests went, and the first failure.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cell {
    pub passed: usize,
    pub failed: usize,
    /// Ignored trials: shown `n/a`, never counted as passing.
    pub skipped: usize,
    /// Trials that should have run and have no result.
    pub not_run: usize,
    pub first_failure: Option<TestResult>,
    /// Why its trials were skipped (the first reason given).
    pub skip_reason: Option<String>,
}

impl Cell {
    /// Something ran and nothing failed or went missing.
    pub fn is_green(&self) -> bool {
        self.failed == 0 && self.not_run == 0 && self.passed > 0
    }

    /// Nothing failed or went missing (a cell that was only skipped is not red, but it is
    /// not green either).
    pub fn is_red(&self) -> bool {
        self.failed > 0 || self.not_run > 0
    }

    /// Every trial of the cell was skipped.
    pub fn only_skipped(&self) -> bool {
        self.skipped > 0 && self.passed == 0 && !self.is_red()
    }
}

/// The merged verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub green: bool,
    /// Whether every trial that should exist was checked for a result (`--expected`).
    pub absence_checked: bool,
    pub inputs: Vec<PathBuf>,
    pub tests: usize,
    pub rows: Vec<Row>,
    /// Tests outside the conformance matrix (unit, CLI and host tests).
    pub other: Cell,
    /// Tests two inputs both reported, with the inputs.
    pub duplicates: Vec<(String, Vec<PathBuf>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub key: RowKey,
    pub cells: BTreeMap<Family, Cell>,
    /// Its guest families (vm, boot, ignition, update) were all skipped: nothing says
    /// the extension works, so the verdict is not green.
    pub not_tested: bool,
}

/// The families that run the image in a guest.
const GUEST_FAMILIES: [Family; 4] = [Family::Vm, Family::Boot, Family::Ignition, Family::Update];

impl Row {
    fn new(key: RowKey, cells: BTreeMap<Family, Cell>) -> Row {
        let guest: Vec<&Cell> = GUEST_FAMILIES.iter().filter_map(|f| cells.get(f)).collect();
        let not_tested = !guest.is_empty() && guest.iter().all(|c| c.only_skipped());
        Row {
            key,
            cells,
            not_tested,
        }
    }

    pub fn is_green(&self) -> bool {
        !self.not_tested
            && self.cells.values().all(|c| !c.is_red())
            && self.cells.values().any(Cell::is_green)
    }
}

/// The trials that should have run: what `cargo nextest list --message-format json` printed
/// for the same filter (and no partition), by the name the verdict gives them. JUnit drops
/// ignored tests, so this is also where they come from.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub source: PathBuf,
    /// Trial name → ignored (listed, but not run by default).
    pub trials: BTreeMap<String, bool>,
}

impl Expected {
    pub fn load(path: &Path) -> Result<Expected, VerdictError> {
        let text = std::fs::read_to_string(path).map_err(|error| VerdictError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Expected::parse(&text, path).map_err(|message| VerdictError::NotAList {
            path: path.to_path_buf(),
            message,
        })
    }

    /// nextest's list: `rust-suites` by binary id, each with `testcases` by name, each
    /// with `ignored` and `filter-match` (`{"status": "matches"}`, or `mismatch` with a
    /// `reason`: `ignored` for an ignored test, anything else for one the filter left out).
    pub fn parse(text: &str, path: &Path) -> Result<Expected, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let suites = v
            .get("rust-suites")
            .and_then(|s| s.as_object())
            .ok_or("no \"rust-suites\" object")?;
        let mut trials = BTreeMap::new();
        for (key, suite) in suites {
            let binary = suite
                .get("binary-id")
                .and_then(|b| b.as_str())
                .unwrap_or(key);
            let Some(cases) = suite.get("testcases").and_then(|c| c.as_object()) else {
                continue;
            };
            for (name, case) in cases {
                let matches = case
                    .pointer("/filter-match/status")
                    .and_then(|s| s.as_str());
                let reason = case
                    .pointer("/filter-match/reason")
                    .and_then(|s| s.as_str());
                let ignored = match (matches, reason) {
                    (Some("matches"), _) => false,
                    (Some("mismatch"), Some("ignored")) => true,
                    // Left out by the filter (or a partition): not expected here.
                    (Some("mismatch"), _) => continue,
                    _ => return Err(format!("test {name} has no filter-match status")),
                };
                trials.insert(result_name(binary, name), ignored);
            }
        }
        if trials.is_empty() {
            return Err("it lists no test the filter selects".into());
        }
        Ok(Expected {
            source: path.to_path_buf(),
            trials,
        })
    }
}

/// The name a result goes by: the conformance binary's trials by their own name (they are
/// the matrix), any other test prefixed with its binary.
fn result_name(binary: &str, test: &str) -> String {
    if binary.ends_with("::conformance") {
        test.to_string()
    } else {
        format!("{binary}: {test}")
    }
}

/// Reads every input (JUnit XML or `run` JSON, told apart by content) and merges them,
/// against `expected` when given.
pub fn from_files(files: &[PathBuf], expected: Option<&Expected>) -> Result<Verdict, VerdictError> {
    let mut results = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|error| VerdictError::Io {
            path: f.clone(),
            error,
        })?;
        let parsed = if text.trim_start().starts_with('<') {
            junit(&text, f)
        } else {
            run_json(&text, f)
        }
        .map_err(|message| VerdictError::Unreadable {
            path: f.clone(),
            message,
        })?;
        results.extend(parsed);
    }
    let verdict = merge(files.to_vec(), results, expected);
    if verdict.rows.is_empty() {
        return Err(VerdictError::Empty {
            files: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(verdict)
}

/// Merges results into rows and cells. With `expected`, a listed trial with no result is
/// a `not run` failure and an ignored one a skip; without it, absence is not checked.
pub fn merge(
    inputs: Vec<PathBuf>,
    mut results: Vec<TestResult>,
    expected: Option<&Expected>,
) -> Verdict {
    if let Some(exp) = expected {
        let have: std::collections::BTreeSet<String> =
            results.iter().map(|r| r.name.clone()).collect();
        for (name, &ignored) in &exp.trials {
            if have.contains(name) {
                continue;
            }
            results.push(TestResult {
                name: name.clone(),
                status: if ignored {
                    Status::Skipped
                } else {
                    Status::NotRun
                },
                first_line: Some(if ignored {
                    "ignored".into()
                } else {
                    "not run: listed by nextest for this filter, and no input has its result".into()
                }),
                artifacts: None,
                source: exp.source.clone(),
            });
        }
    }
    let mut seen: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut rows: BTreeMap<RowKey, BTreeMap<Family, Cell>> = BTreeMap::new();
    let mut other = Cell::default();
    let tests = results.len();
    for r in results {
        seen.entry(r.name.clone())
            .or_default()
            .push(r.source.clone());
        let cell = match place(&r.name) {
            Some((key, family)) => rows.entry(key).or_default().entry(family).or_default(),
            None => &mut other,
        };
        match r.status {
            Status::Pass => cell.passed += 1,
            Status::Skipped => {
                cell.skipped += 1;
                if cell.skip_reason.is_none() {
                    cell.skip_reason = r.first_line.clone();
                }
            }
            Status::Fail | Status::NotRun => {
                if r.status == Status::Fail {
                    cell.failed += 1;
                } else {
                    cell.not_run += 1;
                }
                if cell.first_failure.is_none() {
                    cell.first_failure = Some(r);
                }
            }
        }
    }
    // The same result in two inputs (overlapping partitions); a listed trial's synthetic
    // entry never counts, since it is only added when no input has the trial.
    let duplicates: Vec<(String, Vec<PathBuf>)> =
        seen.into_iter().filter(|(_, v)| v.len() > 1).collect();
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(key, cells)| Row::new(key, cells))
        .collect();
    let green = duplicates.is_empty() && !other.is_red() && rows.iter().all(Row::is_green);
    Verdict {
        green,
        absence_checked: expected.is_some(),
        inputs,
        tests,
        rows,
        other,
        duplicates,
    }
}

/// nextest's JUnit: `<testsuites><testsuite><testcase name classname>` with `<failure>`,
/// `<error>` or `<skipped>`, the test's output in `<system-out>`/`<system-err>`. Setup
/// scripts appear as suites named `@setup-script:…` and count as other tests.
fn junit(text: &str, source: &Path) -> Result<Vec<TestResult>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not valid XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "testsuites" && root.tag_name().name() != "testsuite" {
        return Err(format!(
            "the root element is <{}>, not JUnit's <testsuites>",
            root.tag_name().name()
        ));
    }
    let mut out = Vec::new();
    for case in root.descendants().filter(|n| n.has_tag_name("testcase")) {
        let name = case.attribute("name").unwrap_or_default().to_string();
        let classname = case.attribute("classname").unwrap_or_default();
        // Only the conformance binary's names are matrix cells; a unit test called
        // `lint::tests::…` is not a lint cell.
        let name = if classname.ends_with("::conformance") {
            name
        } else {
            format!("{classname}: {name}")
        };
        let child = |tag: &str| case.children().find(|c| c.has_tag_name(tag));
        let text_of = |tag: &str| child(tag).and_then(|c| c.text()).unwrap_or_default();
        let failure = child("failure").or_else(|| child("error"));
        let status = if failure.is_some() {
            Status::Fail
        } else if child("skipped").is_some() {
            Status::Skipped
        } else {
            Status::Pass
        };
        let (first_line, artifacts) = if status == Status::Fail {
            let output = format!(
                "{}\n{}\n{}",
                failure.and_then(|f| f.text()).unwrap_or_default(),
                text_of("system-out"),
                text_of("system-err")
            );
            let fallback = failure
                .and_then(|f| f.attribute("message"))
                .unwrap_or("failed");
            (
                Some(first_failure_line(&output, &name).unwrap_or_else(|| fallback.to_string())),
                artifacts_line(&output),
            )
        } else {
            (None, None)
        };
        out.push(TestResult {
            name,
            status,
            first_line,
            artifacts,
            source: source.to_path_buf(),
        });
    }
    Ok(out)
}

/// The first line of a failure: what libtest-mimic prints under `---- NAME ----`, else
/// the first line that says FAIL or ERROR.
fn first_failure_line(output: &str, name: &str) -> Option<String> {
    let short = name.rsplit(": ").next().unwrap_or(name);
    let marker = format!("---- {short} ----");
    let mut lines = output.lines();
    if lines.any(|l| l.trim() == marker)
        && let Some(l) = lines.find(|l| !l.trim().is_empty())
    {
        return Some(l.trim().to_string());
    }
    output
        .lines()
        .map(str::trim)
        .find(|l| l.contains("FAIL") || l.contains("ERROR") || l.starts_with("thread '"))
        .map(str::to_string)
}

fn artifacts_line(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        l.trim()
            .strip_prefix("artifacts: ")
            .map(|p| p.trim().to_string())
    })
}

/// `sysext-test run --format json`: the [`CaseRecord`]s `run` wrote.
fn run_json(text: &str, source: &Path) -> Result<Vec<TestResult>, String> {
    let records = crate::run_record::parse(text)
        .map_err(|e| format!("neither JUnit XML nor run JSON: {e}"))?;
    Ok(records
        .iter()
        .map(|r| {
            let file = Path::new(&r.image)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| r.image.clone());
            let (status, first_line) = match &r.verdict {
                CaseVerdict::Pass { .. } => (Status::Pass, None),
                CaseVerdict::NotRun { reason } => {
                    (Status::NotRun, Some(format!("not run: {reason}")))
                }
                CaseVerdict::Fail { assertion, .. } => (
                    Status::Fail,
                    Some(
                        assertion
                            .explanation
                            .lines()
                            .next()
                            .unwrap_or("failed")
                            .to_string(),
                    ),
                ),
                CaseVerdict::Error { stage, message } => (
                    Status::Fail,
                    Some(format!(
                        "harness error at {stage}: {}",
                        message.lines().next().unwrap_or_default()
                    )),
                ),
            };
            TestResult {
                name: format!(
                    "{}::{}::subject::{file}::{}",
                    r.via.family(),
                    r.arch,
                    r.case
                ),
                status,
                first_line,
                artifacts: r.verdict.artifacts().map(str::to_string),
                source: source.to_path_buf(),
            }
        })
        .collect())
}

fn cell_text(cell: Option<&Cell>) -> String {
    match cell {
        None => "–".into(),
        Some(c) if c.is_red() => {
            let mut t = format!(
                "❌ {}/{}",
                c.passed,
                c.passed + c.failed + c.not_run + c.skipped
            );
            if c.not_run > 0 {
                t.push_str(&format!(" ({} not run)", c.not_run));
            }
            t
        }
        Some(c) if c.passed == 0 => {
            format!("n/a ({})", c.skip_reason.as_deref().unwrap_or("skipped"))
        }
        Some(c) if c.skipped > 0 => format!("✅ {} (+{} n/a)", c.passed, c.skipped),
        Some(c) => format!("✅ {}", c.passed),
    }
}

/// The verdict as GitHub-flavoured Markdown (a job summary or a PR comment).
pub fn markdown(v: &Verdict) -> String {
    let mut s = String::new();
    let word = if v.green { "PASS" } else { "FAIL" };
    if !v.absence_checked {
        let _ = writeln!(
            s,
            "> Absence is not checked: a trial with no result is not seen. Pass `--expected LIST` (`cargo nextest list --message-format json`) to check it.\n"
        );
    }
    let _ = writeln!(
        s,
        "## sysext-test verdict: {word}\n\n{} tests from {} input(s); {} row(s).\n",
        v.tests,
        v.inputs.len(),
        v.rows.len()
    );
    let families: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| v.rows.iter().any(|r| r.cells.contains_key(f)))
        .collect();
    let _ = write!(s, "| extension | version | arch |");
    for f in &families {
        let _ = write!(s, " {} |", f.name());
    }
    let _ = write!(s, "\n|---|---|---|");
    for _ in &families {
        let _ = write!(s, "---|");
    }
    s.push('\n');
    for r in &v.rows {
        let _ = write!(
            s,
            "| {} | {} | {} |",
            r.key.extension, r.key.version, r.key.arch
        );
        for f in &families {
            let _ = write!(s, " {} |", cell_text(r.cells.get(f)));
        }
        if r.not_tested {
            s.push_str(" not tested |");
        }
        s.push('\n');
    }
    let red: Vec<(&Row, Family, &TestResult)> = v
        .rows
        .iter()
        .flat_map(|r| {
            r.cells
                .iter()
                .filter_map(move |(f, c)| c.first_failure.as_ref().map(|t| (r, *f, t)))
        })
        .collect();
    if !red.is_empty() || v.other.first_failure.is_some() {
        s.push_str("\n### Failures\n\n");
        for (_, _, t) in &red {
            failure_item(&mut s, t);
        }
        if let Some(t) = &v.other.first_failure {
            failure_item(&mut s, t);
        }
    }
    if !v.duplicates.is_empty() {
        s.push_str("\n### Tests reported more than once (overlapping partitions?)\n\n");
        for (name, files) in &v.duplicates {
            let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let _ = writeln!(s, "- `{name}`: {}", files.join(", "));
        }
    }
    if v.other.passed + v.other.failed + v.other.not_run + v.other.skipped > 0 {
        let _ = writeln!(
            s,
            "\nOther tests (unit, CLI, host): {} passed, {} failed, {} not run, {} skipped.",
            v.other.passed, v.other.failed, v.other.not_run, v.other.skipped
        );
    }
    s
}

fn failure_item(s: &mut String, t: &TestResult) {
    let _ = write!(
        s,
        "- `{}`: {}",
        t.name,
        t.first_line.as_deref().unwrap_or("failed")
    );
    if let Some(a) = &t.artifacts {
        let _ = write!(s, " (artifacts: `{a}`)");
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case("lint::busybox", "busybox", "-", "all", Family::Lint)]
    #[case(
        "lint::x86-64::docker@28.0.4",
        "docker",
        "28.0.4",
        "x86-64",
        Family::Lint
    )]
    #[case(
        "vm::arm64::hello-update::merge",
        "hello-update",
        "-",
        "arm64",
        Family::Vm
    )]
    #[case(
        "vm::x86-64::docker-compose@2.34.0::services",
        "docker-compose",
        "2.34.0",
        "x86-64",
        Family::Vm
    )]
    #[case(
        "vm::x86-64::subject::tailscale-v1.80.0-x86-64.raw::merge",
        "tailscale",
        "v1.80.0",
        "x86-64",
        Family::Vm
    )]
    #[case(
        "ignition::arm64::hello-update::wrong-hash",
        "hello-update",
        "-",
        "arm64",
        Family::Ignition
    )]
    #[case(
        "update::x86-64::hello@1.0.1::update",
        "hello",
        "1.0.1",
        "x86-64",
        Family::Update
    )]
    #[case("store::digests", "(store)", "-", "all", Family::Store)]
    #[case(
        "diff::arm64::containerd@1.7.29",
        "containerd",
        "1.7.29",
        "arm64",
        Family::Diff
    )]
    fn test_names_find_their_cell(
        #[case] name: &str,
        #[case] extension: &str,
        #[case] version: &str,
        #[case] arch: &str,
        #[case] family: Family,
    ) {
        let (key, f) = place(name).unwrap();
        assert_eq!(
            (
                key.extension.as_str(),
                key.version.as_str(),
                key.arch.as_str(),
                f
            ),
            (extension, version, arch, family)
        );
    }

    #[test]
    fn other_tests_are_not_cells() {
        assert!(place("sysext-cases: lint::tests::every_rule_has_a_good_and_a_bad_case").is_none());
        assert!(place("mirror_answers_byte_ranges").is_none());
    }

    fn junit_doc(cases: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?><testsuites name=\"nextest-run\"><testsuite name=\"sysext-cases::conformance\">{cases}</testsuite>\
             <testsuite name=\"sysext-cases\"><testcase name=\"lint::tests::x\" classname=\"sysext-cases\"/></testsuite></testsuites>"
        )
    }

    fn write_tmp(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn partitions_merge_into_the_unsplit_verdict() {
        let tmp = tempfile::tempdir().unwrap();
        let c =
            |n: &str| format!("<testcase name=\"{n}\" classname=\"sysext-cases::conformance\"/>");
        let all = [
            "lint::busybox",
            "vm::x86-64::busybox::merge",
            "vm::arm64::busybox::merge",
            "boot::x86-64::busybox",
        ];
        let whole = write_tmp(tmp.path(), "whole.xml", &junit_doc(&all.map(c).concat()));
        let a = write_tmp(tmp.path(), "a.xml", &junit_doc(&c(all[0])));
        let b = write_tmp(
            tmp.path(),
            "b.xml",
            &format!(
                "<testsuites><testsuite name=\"sysext-cases::conformance\">{}</testsuite></testsuites>",
                [c(all[1]), c(all[2]), c(all[3])].concat()
            ),
        );
        let one = from_files(&[whole], None).unwrap();
        let split = from_files(&[a, b], None).unwrap();
        assert!(one.green && split.green);
        // Same table once the header line (input count) is set aside.
        let body = |v: &Verdict| markdown(v).lines().skip(5).collect::<Vec<_>>().join("\n");
        assert_eq!(
            body(&one).replace("1 passed", "X"),
            body(&split).replace("1 passed", "X")
        );
        assert_eq!(one.rows.len(), 3);
    }

    #[test]
    fn a_red_cell_shows_the_first_failure_line_and_the_artifacts() {
        let tmp = tempfile::tempdir().unwrap();
        let failed = "<testcase name=\"vm::x86-64::docker@28.0.4::services\" classname=\"sysext-cases::conformance\">\
            <failure message=\"test failure\" type=\"test failure\"/>\
            <system-out>running 1 test\ntest vm::x86-64::docker@28.0.4::services ... FAILED\n\nfailures:\n\n---- vm::x86-64::docker@28.0.4::services ----\nFAIL docker.service is failed: Main process exited, code=exited\nartifacts: target/sysext-test/artifacts/vm--x86-64--docker@28.0.4--services\n</system-out></testcase>";
        let f = write_tmp(tmp.path(), "j.xml", &junit_doc(failed));
        let v = from_files(&[f], None).unwrap();
        assert!(!v.green);
        let md = markdown(&v);
        assert!(md.contains("verdict: FAIL"), "{md}");
        assert!(md.contains("| docker | 28.0.4 | x86-64 | ❌ 0/1 |"), "{md}");
        assert!(md.contains("FAIL docker.service is failed"), "{md}");
        assert!(
            md.contains(
                "artifacts: `target/sysext-test/artifacts/vm--x86-64--docker@28.0.4--services`"
            ),
            "{md}"
        );
    }

    #[test]
    fn a_test_in_two_partitions_and_a_skipped_test_are_not_green() {
        let tmp = tempfile::tempdir().unwrap();
        let c = "<testcase name=\"lint::busybox\" classname=\"sysext-cases::conformance\"/>";
        let a = write_tmp(tmp.path(), "a.xml", &junit_doc(c));
        let b = write_tmp(tmp.path(), "b.xml", &junit_doc(c));
        let v = from_files(&[a, b], None).unwrap();
        assert!(!v.green);
        assert!(markdown(&v).contains("more than once"));
        let s = "<testcase name=\"lint::busybox\" classname=\"sysext-cases::conformance\"><skipped/></testcase>";
        let v = from_files(&[write_tmp(tmp.path(), "s.xml", &junit_doc(s))], None).unwrap();
        assert!(!v.green);
        assert!(markdown(&v).contains("n/a (skipped)"), "{}", markdown(&v));
    }

    #[test]
    fn run_json_rows_become_cells() {
        let tmp = tempfile::tempdir().unwrap();
        let json = r#"[{"image":"/x/hello-1.0-arm64.raw","arch":"arm64","case":"merge","via":"runtime","seconds":3.1,"result":"pass","notes":[]},
                       {"image":"/x/hello-1.0-arm64.raw","arch":"arm64","case":"boot","via":"baked","seconds":20.0,"result":"fail","assertion":{"explanation":"not merged at boot","evidence":[]},"notes":["artifacts: /a/b"]}]"#;
        let v = from_files(&[write_tmp(tmp.path(), "r.json", json)], None).unwrap();
        assert!(!v.green);
        assert_eq!(v.rows.len(), 1);
        let md = markdown(&v);
        assert!(
            md.contains("| hello | 1.0 | arm64 | ✅ 1 | ❌ 0/1 |"),
            "{md}"
        );
    }

    #[test]
    fn input_that_is_neither_is_refused_with_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = write_tmp(tmp.path(), "x.txt", "hello");
        let msg = from_files(std::slice::from_ref(&f), None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&f.display().to_string()) && msg.contains("JUnit"),
            "{msg}"
        );
        let empty = write_tmp(tmp.path(), "e.xml", "<testsuites/>");
        assert!(
            from_files(&[empty], None)
                .unwrap_err()
                .to_string()
                .contains("no conformance results")
        );
    }

    /// What `cargo nextest list --message-format json` prints, for the trials given as
    /// (name, filter-match status, reason).
    fn list_doc(cases: &[(&str, &str, Option<&str>)]) -> String {
        let cases: Vec<String> = cases
            .iter()
            .map(|(name, status, reason)| {
                let reason = reason
                    .map(|r| format!(",\"reason\":\"{r}\""))
                    .unwrap_or_default();
                format!(
                    "\"{name}\":{{\"ignored\":{},\"filter-match\":{{\"status\":\"{status}\"{reason}}}}}",
                    reason == ",\"reason\":\"ignored\""
                )
            })
            .collect();
        format!(
            "{{\"test-count\":{},\"rust-suites\":{{\"sysext-cases::conformance\":{{\"binary-id\":\"sysext-cases::conformance\",\"testcases\":{{{}}}}}}}}}",
            cases.len(),
            cases.join(",")
        )
    }

    fn conformance_case(name: &str) -> String {
        format!("<testcase name=\"{name}\" classname=\"sysext-cases::conformance\"/>")
    }

    #[test]
    fn an_expected_trial_with_no_result_is_red_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let list = write_tmp(
            tmp.path(),
            "list.json",
            &list_doc(&[
                ("vm::x86-64::busybox::merge", "matches", None),
                ("vm::arm64::busybox::merge", "matches", None),
                ("vm::arm64::other::merge", "mismatch", Some("expression")),
            ]),
        );
        let expected = Expected::load(&list).unwrap();
        assert_eq!(
            expected.trials.len(),
            2,
            "a trial the filter left out is not expected"
        );
        let junit = write_tmp(
            tmp.path(),
            "j.xml",
            &junit_doc(&conformance_case("vm::x86-64::busybox::merge")),
        );
        let v = from_files(std::slice::from_ref(&junit), Some(&expected)).unwrap();
        assert!(!v.green);
        let md = markdown(&v);
        assert!(md.contains("`vm::arm64::busybox::merge`: not run"), "{md}");
        assert!(
            md.contains("| busybox | - | arm64 | ❌ 0/1 (1 not run) |"),
            "{md}"
        );
        assert!(!md.contains("Absence is not checked"), "{md}");
        // The same JUnit without --expected is green, and says what it did not check.
        let unchecked = from_files(&[junit], None).unwrap();
        assert!(unchecked.green);
        assert!(markdown(&unchecked).starts_with("> Absence is not checked"));
    }

    #[test]
    fn a_complete_result_set_is_green_against_its_list() {
        let tmp = tempfile::tempdir().unwrap();
        let names = ["lint::busybox", "vm::x86-64::busybox::merge"];
        let list = write_tmp(
            tmp.path(),
            "list.json",
            &list_doc(&names.map(|n| (n, "matches", None))),
        );
        let junit = write_tmp(
            tmp.path(),
            "j.xml",
            &junit_doc(&names.map(conformance_case).concat()),
        );
        let v = from_files(&[junit], Some(&Expected::load(&list).unwrap())).unwrap();
        assert!(v.green, "{}", markdown(&v));
    }

    #[test]
    fn a_row_whose_guest_trials_were_all_skipped_is_not_tested() {
        let tmp = tempfile::tempdir().unwrap();
        let list = write_tmp(
            tmp.path(),
            "list.json",
            &list_doc(&[
                ("lint::x86-64::k3s@1.31.0", "matches", None),
                ("vm::x86-64::k3s@1.31.0::merge", "mismatch", Some("ignored")),
                ("boot::x86-64::k3s@1.31.0", "mismatch", Some("ignored")),
            ]),
        );
        // nextest's JUnit leaves the ignored trials out.
        let junit = write_tmp(
            tmp.path(),
            "j.xml",
            &junit_doc(&conformance_case("lint::x86-64::k3s@1.31.0")),
        );
        let v = from_files(&[junit], Some(&Expected::load(&list).unwrap())).unwrap();
        assert!(!v.green, "skipped trials are never evidence of green");
        assert!(v.rows[0].not_tested);
        let md = markdown(&v);
        assert!(md.contains("n/a (ignored)"), "{md}");
        assert!(md.contains("not tested"), "{md}");
    }

    #[test]
    fn a_list_that_is_not_nextests_is_refused_with_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = write_tmp(tmp.path(), "list.json", "{\"tests\": []}");
        let e = Expected::load(&f).unwrap_err().to_string();
        assert!(e.contains("list.json") && e.contains("nextest list"), "{e}");
    }
}
