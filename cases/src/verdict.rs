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
}

/// The case families, the table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Store,
    Lint,
    Vm,
    Boot,
    Ignition,
    Update,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Store,
        Family::Lint,
        Family::Vm,
        Family::Boot,
        Family::Ignition,
        Family::Update,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Store => "store",
            Family::Lint => "lint",
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
    Skipped,
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
    pub skipped: usize,
    pub first_failure: Option<TestResult>,
}

impl Cell {
    pub fn is_green(&self) -> bool {
        self.failed == 0 && self.skipped == 0 && self.passed > 0
    }
}

/// The merged verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub green: bool,
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
}

/// Reads every input (JUnit XML or `run` JSON, told apart by content) and merges them.
pub fn from_files(files: &[PathBuf]) -> Result<Verdict, VerdictError> {
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
    let verdict = merge(files.to_vec(), results);
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

/// Merges results into rows and cells.
pub fn merge(inputs: Vec<PathBuf>, results: Vec<TestResult>) -> Verdict {
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
            Status::Skipped => cell.skipped += 1,
            Status::Fail => {
                cell.failed += 1;
                if cell.first_failure.is_none() {
                    cell.first_failure = Some(r);
                }
            }
        }
    }
    let duplicates: Vec<(String, Vec<PathBuf>)> =
        seen.into_iter().filter(|(_, v)| v.len() > 1).collect();
    let rows: Vec<Row> = rows
        .into_iter()
        .map(|(key, cells)| Row { key, cells })
        .collect();
    let green = duplicates.is_empty()
        && other.failed == 0
        && other.skipped == 0
        && rows.iter().all(|r| r.cells.values().all(Cell::is_green));
    Verdict {
        green,
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

/// `sysext-test run --format json`: one object per case with `image`, `arch`, `case`,
/// `via` and `result`.
fn run_json(text: &str, source: &Path) -> Result<Vec<TestResult>, String> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("neither JUnit XML nor run JSON: {e}"))?;
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let field = |k: &str| {
            r.get(k)
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("case {i} has no \"{k}\""))
        };
        let image = field("image")?;
        let file = Path::new(image)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| image.to_string());
        let family = match field("via")? {
            "baked" => "boot",
            "ignition" => "ignition",
            _ => "vm",
        };
        let name = format!(
            "{family}::{}::subject::{file}::{}",
            field("arch")?,
            field("case")?
        );
        let (status, first_line) = match field("result")? {
            "pass" => (Status::Pass, None),
            "not-run" => (
                Status::Skipped,
                r.get("reason").and_then(|v| v.as_str()).map(str::to_string),
            ),
            _ => {
                let line = r
                    .pointer("/assertion/explanation")
                    .or_else(|| r.get("message"))
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.lines().next())
                    .unwrap_or("failed")
                    .to_string();
                (Status::Fail, Some(line))
            }
        };
        let artifacts = r
            .get("notes")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .find_map(|n| n.strip_prefix("artifacts: ").map(str::to_string));
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

fn cell_text(cell: Option<&Cell>) -> String {
    match cell {
        None => "–".into(),
        Some(c) if c.failed > 0 => format!("❌ {}/{}", c.passed, c.passed + c.failed + c.skipped),
        Some(c) if c.skipped > 0 => format!("⏭ {} skipped", c.skipped),
        Some(c) => format!("✅ {}", c.passed),
    }
}

/// The verdict as GitHub-flavoured Markdown (a job summary or a PR comment).
pub fn markdown(v: &Verdict) -> String {
    let mut s = String::new();
    let word = if v.green { "PASS" } else { "FAIL" };
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
    if v.other.passed + v.other.failed + v.other.skipped > 0 {
        let _ = writeln!(
            s,
            "\nOther tests (unit, CLI, host): {} passed, {} failed, {} skipped.",
            v.other.passed, v.other.failed, v.other.skipped
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
        let one = from_files(&[whole]).unwrap();
        let split = from_files(&[a, b]).unwrap();
        assert!(one.green && split.green);
        // Same table once the header line (input count) is set aside.
        let body = |v: &Verdict| markdown(v).lines().skip(3).collect::<Vec<_>>().join("\n");
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
        let v = from_files(&[f]).unwrap();
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
        let v = from_files(&[a, b]).unwrap();
        assert!(!v.green);
        assert!(markdown(&v).contains("more than once"));
        let s = "<testcase name=\"lint::busybox\" classname=\"sysext-cases::conformance\"><skipped/></testcase>";
        let v = from_files(&[write_tmp(tmp.path(), "s.xml", &junit_doc(s))]).unwrap();
        assert!(!v.green);
        assert!(markdown(&v).contains("⏭ 1 skipped"));
    }

    #[test]
    fn run_json_rows_become_cells() {
        let tmp = tempfile::tempdir().unwrap();
        let json = r#"[{"image":"/x/hello-1.0-arm64.raw","arch":"arm64","case":"merge","via":"runtime","result":"pass","notes":[]},
                       {"image":"/x/hello-1.0-arm64.raw","arch":"arm64","case":"boot","via":"baked","result":"fail","assertion":{"explanation":"not merged at boot","evidence":[]},"notes":["artifacts: /a/b"]}]"#;
        let v = from_files(&[write_tmp(tmp.path(), "r.json", json)]).unwrap();
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
        let msg = from_files(std::slice::from_ref(&f))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&f.display().to_string()) && msg.contains("JUnit"),
            "{msg}"
        );
        let empty = write_tmp(tmp.path(), "e.xml", "<testsuites/>");
        assert!(
            from_files(&[empty])
                .unwrap_err()
                .to_string()
                .contains("no conformance results")
        );
    }
}
