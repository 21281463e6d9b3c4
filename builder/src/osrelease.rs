//! os-release(5) / extension-release parsing for a linter.
//!
//! systemd reads these files with `parse_env_file()`, which is forgiving: it
//! silently skips lines it cannot use and concatenates shell-style quoted
//! fragments. A linter needs the opposite temperament, so this parser keeps
//! systemd's *values* (what `get()` returns is what systemd would see) while
//! recording every deviation from os-release(5) as a [`SyntaxIssue`] with its
//! line number, instead of stopping at the first one.
//!
//! It is deliberately line-based: os-release(5) is a newline-separated format
//! and files are also `source`d by shell scripts, so a quote or backslash that
//! runs past the end of a line is reported rather than followed onto the next
//! line, which would also hide the following assignments from the report.

use std::collections::HashSet;

/// One problem found while parsing, tied to the line a user has to edit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxIssue {
    /// 1-based, as editors and compilers count.
    pub line: usize,
    pub message: String,
}

/// The issue kinds, kept typed so the wording stays consistent; callers get
/// the rendered text in [`SyntaxIssue::message`].
#[derive(Debug, PartialEq, thiserror::Error)]
enum Problem {
    #[error("line is not KEY=VALUE")]
    NotAssignment,
    #[error("invalid variable name {0:?}")]
    InvalidName(String),
    #[error("unterminated {0} quote")]
    UnterminatedQuote(&'static str),
    #[error("trailing text after closing quote: {0:?} (quoted strings are not concatenated)")]
    TrailingText(String),
    #[error("value must be quoted: it contains whitespace")]
    UnquotedWhitespace,
    #[error("value must be quoted: unescaped {0:?}")]
    UnquotedMetachar(char),
    #[error("{0:?} must be escaped inside double quotes, or a shell would expand it")]
    UnescapedInDoubleQuotes(char),
    #[error("trailing backslash: line continuation is not supported")]
    TrailingBackslash,
}

impl Problem {
    fn at(self, line: usize) -> SyntaxIssue {
        SyntaxIssue {
            line,
            message: self.to_string(),
        }
    }
}

/// Parsed assignments in file order.
///
/// Every assignment is kept, duplicates included, because a linter wants to
/// point at a shadowed one; lookups follow systemd and let the last one win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    entries: Vec<(String, String)>,
}

impl OsRelease {
    /// Parses `text`, never failing: lines with problems are reported and,
    /// where systemd would still have produced a value, kept.
    pub fn parse(text: &str) -> (OsRelease, Vec<SyntaxIssue>) {
        let mut entries = Vec::new();
        let mut issues = Vec::new();

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
                continue;
            }

            let Some((key, rest)) = trimmed.split_once('=') else {
                issues.push(Problem::NotAssignment.at(line));
                continue;
            };

            let key = key.trim_end();
            if !is_valid_name(key) {
                issues.push(Problem::InvalidName(key.to_owned()).at(line));
                continue;
            }

            let (value, problems) = parse_value(rest);
            issues.extend(problems.into_iter().map(|p| p.at(line)));
            entries.push((key.to_owned(), value));
        }

        (OsRelease { entries }, issues)
    }

    /// Last assignment wins, as in systemd's `parse_env_file()`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Each key once, in order of first appearance, so "unknown key" style
    /// checks do not fire twice for a duplicated key; use [`Self::entries`] to
    /// see duplicates.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(move |k| seen.insert(*k))
    }

    /// All assignments in file order, duplicates included.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds a release file without going through the syntax, for tests and
    /// for built-in target descriptions; values are taken verbatim.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> OsRelease {
        OsRelease {
            entries: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// Why a pair cannot be written as an os-release(5) line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "invalid variable name {0:?}: use letters, digits and '_', not starting with a digit, so shell scripts can read it"
    )]
    InvalidName(String),
    #[error(
        "{key}: the value contains the control character {ch:?}; os-release(5) is one assignment per line and cannot hold it"
    )]
    ControlChar { key: String, ch: char },
}

impl OsRelease {
    /// The file text, one [`render_assignment`] line per entry, in order.
    pub fn render(&self) -> Result<String, RenderError> {
        self.entries
            .iter()
            .map(|(k, v)| render_assignment(k, v))
            .collect()
    }
}

/// One `KEY=value` line with its newline, parsing back to exactly `value` with no
/// [`SyntaxIssue`]: bare when every character is safe in a shell word, else in double
/// quotes with `"`, `\`, `$` and `` ` `` escaped. Values with a control character (a
/// newline above all) cannot be written on one line and are refused.
pub fn render_assignment(key: &str, value: &str) -> Result<String, RenderError> {
    if !is_valid_name(key) {
        return Err(RenderError::InvalidName(key.to_owned()));
    }
    if let Some(ch) = value.chars().find(|c| c.is_control()) {
        return Err(RenderError::ControlChar {
            key: key.to_owned(),
            ch,
        });
    }
    let bare = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-+,:/@%=".contains(c));
    if bare {
        return Ok(format!("{key}={value}\n"));
    }
    let mut out = format!("{key}=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"\n");
    Ok(out)
}

/// Shell variable names; systemd itself accepts any key, but one that is not a
/// valid shell name can never be read by the scripts that `source` the file.
fn is_valid_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Characters a shell would interpret in an unquoted word.
fn is_shell_metachar(c: char) -> bool {
    matches!(
        c,
        '$' | '`' | '"' | '\'' | ';' | '&' | '|' | '<' | '>' | '(' | ')'
    )
}

#[derive(Clone, Copy)]
enum State {
    /// Before a value fragment; whitespace is skipped, as in systemd.
    Pre,
    Unquoted,
    Single,
    Double,
}

/// Mirrors the value states of systemd's `parse_env_file_internal()`,
/// including concatenation after a closing quote, so the stored value is what
/// systemd would use; the deviations os-release(5) forbids are collected
/// alongside.
fn parse_value(rest: &str) -> (String, Vec<Problem>) {
    let mut value = String::new();
    let mut problems = Vec::new();
    let mut state = State::Pre;
    // Unescaped trailing whitespace of an unquoted fragment is dropped; this
    // is where it starts, if the fragment currently ends in some.
    let mut trailing_ws_at: Option<usize> = None;
    let mut saw_closing_quote = false;
    let mut reported_quoting = false;
    let mut chars = rest.char_indices();

    while let Some((pos, c)) = chars.next() {
        match state {
            State::Pre => {
                if c.is_whitespace() {
                    continue;
                }
                if saw_closing_quote && !reported_quoting {
                    problems.push(Problem::TrailingText(rest[pos..].trim_end().to_owned()));
                    reported_quoting = true;
                }
                match c {
                    '\'' => state = State::Single,
                    '"' => state = State::Double,
                    _ => {
                        state = State::Unquoted;
                        trailing_ws_at = None;
                        if c == '\\' {
                            push_escaped(&mut chars, &mut value, &mut problems);
                        } else {
                            if is_shell_metachar(c) && !reported_quoting {
                                problems.push(Problem::UnquotedMetachar(c));
                                reported_quoting = true;
                            }
                            value.push(c);
                        }
                    }
                }
            }
            State::Unquoted => match c {
                '\\' => {
                    trailing_ws_at = None;
                    push_escaped(&mut chars, &mut value, &mut problems);
                }
                c if c.is_whitespace() => {
                    trailing_ws_at.get_or_insert(value.len());
                    value.push(c);
                }
                c => {
                    // Whitespace followed by more text is inside the value,
                    // which a shell would split into separate words.
                    if trailing_ws_at.take().is_some() && !reported_quoting {
                        problems.push(Problem::UnquotedWhitespace);
                        reported_quoting = true;
                    }
                    if is_shell_metachar(c) && !reported_quoting {
                        problems.push(Problem::UnquotedMetachar(c));
                        reported_quoting = true;
                    }
                    value.push(c);
                }
            },
            State::Single => {
                if c == '\'' {
                    state = State::Pre;
                    saw_closing_quote = true;
                } else {
                    value.push(c);
                }
            }
            State::Double => match c {
                '"' => {
                    state = State::Pre;
                    saw_closing_quote = true;
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\' | '$' | '`'))) => value.push(e),
                    // Like a shell, other escapes keep their backslash.
                    Some((_, e)) => {
                        value.push('\\');
                        value.push(e);
                    }
                    // The line ends inside the quotes; reported below.
                    None => value.push('\\'),
                },
                c @ ('$' | '`') => {
                    // `$a$b` is one mistake, not two.
                    let problem = Problem::UnescapedInDoubleQuotes(c);
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                    value.push(c);
                }
                c => value.push(c),
            },
        }
    }

    match state {
        State::Single => problems.push(Problem::UnterminatedQuote("single")),
        State::Double => problems.push(Problem::UnterminatedQuote("double")),
        State::Unquoted => {
            if let Some(at) = trailing_ws_at {
                value.truncate(at);
            }
        }
        State::Pre => {}
    }

    (value, problems)
}

/// An unquoted backslash takes the next character literally; at the end of
/// the line systemd would join the next line, which we refuse to emulate.
fn push_escaped(
    chars: &mut std::str::CharIndices<'_>,
    value: &mut String,
    problems: &mut Vec<Problem>,
) {
    match chars.next() {
        Some((_, e)) => value.push(e),
        None => problems.push(Problem::TrailingBackslash),
    }
}

/// systemd's `parse_boolean()`, which is how it reads boolean fields such as
/// `EXTENSION_RELOAD_MANAGER=`; the linter must accept exactly the spellings
/// systemd does, and `None` lets it flag anything else instead of guessing.
pub fn parse_bool(v: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["1", "yes", "y", "true", "t", "on"];
    const FALSE: [&str; 6] = ["0", "no", "n", "false", "f", "off"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn single_value(text: &str) -> (Option<String>, Vec<SyntaxIssue>) {
        let (release, issues) = OsRelease::parse(text);
        (release.get("K").map(str::to_owned), issues)
    }

    #[rstest]
    #[case::unquoted("K=fedora", "fedora")]
    #[case::double_quoted(r#"K="Fedora Linux""#, "Fedora Linux")]
    #[case::single_quoted("K='Fedora Linux'", "Fedora Linux")]
    #[case::empty_unquoted("K=", "")]
    #[case::empty_double_quoted(r#"K="""#, "")]
    #[case::empty_single_quoted("K=''", "")]
    #[case::whitespace_around_key_and_value("  K \t=  fedora  ", "fedora")]
    #[case::whitespace_kept_inside_quotes(r#"K="  spaced  ""#, "  spaced  ")]
    #[case::equals_sign_in_value("K=a=b", "a=b")]
    #[case::crlf_line_ending("K=fedora\r\n", "fedora")]
    #[case::utf8_value(r#"K="Debian GNU/Linux – ✓""#, "Debian GNU/Linux – ✓")]
    #[case::double_escaped_quote(r#"K="say \"hi\"""#, r#"say "hi""#)]
    #[case::double_escaped_backslash(r#"K="a\\b""#, r"a\b")]
    #[case::double_escaped_dollar(r#"K="\$HOME""#, "$HOME")]
    #[case::double_escaped_backtick(r#"K="\`x\`""#, "`x`")]
    #[case::double_other_escape_keeps_backslash(r#"K="a\nb""#, r"a\nb")]
    #[case::single_quotes_have_no_escapes(r"K='a\b'", r"a\b")]
    #[case::single_quote_inside_double(r#"K="it's""#, "it's")]
    #[case::double_quote_inside_single(r#"K='say "hi"'"#, r#"say "hi""#)]
    #[case::unquoted_backslash_escapes_next(r"K=a\ b", "a b")]
    #[case::unquoted_escaped_metachar(r"K=a\$b", "a$b")]
    #[case::unquoted_escaped_trailing_space_is_kept(r"K=a\ ", "a ")]
    fn values_parse_without_issues(#[case] text: &str, #[case] expected: &str) {
        let (value, issues) = single_value(text);
        assert_eq!(issues, []);
        assert_eq!(value.as_deref(), Some(expected));
    }

    #[rstest]
    #[case::hash_comment("# NAME=ignored\n")]
    #[case::semicolon_comment("; NAME=ignored\n")]
    #[case::indented_comment("   # NAME=ignored\n")]
    #[case::tab_indented_semicolon("\t; NAME=ignored\n")]
    #[case::blank_lines("\n\n   \n\t\n")]
    #[case::empty_file("")]
    fn comments_and_blank_lines_are_ignored(#[case] text: &str) {
        let (release, issues) = OsRelease::parse(text);
        assert!(release.is_empty());
        assert_eq!(issues, []);
    }

    #[test]
    fn comments_between_assignments_keep_line_numbers_right() {
        let text = "# header\nID=fedora\n\n; note\nVERSION_ID 40\n";
        let (release, issues) = OsRelease::parse(text);
        assert_eq!(release.get("ID"), Some("fedora"));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].line, 5);
    }

    #[test]
    fn duplicate_keys_last_assignment_wins() {
        let (release, issues) = OsRelease::parse("ID=first\nNAME=x\nID=second\n");
        assert_eq!(issues, []);
        assert_eq!(release.get("ID"), Some("second"));
        assert_eq!(release.keys().collect::<Vec<_>>(), ["ID", "NAME"]);
        assert_eq!(
            release.entries(),
            [
                ("ID".to_owned(), "first".to_owned()),
                ("NAME".to_owned(), "x".to_owned()),
                ("ID".to_owned(), "second".to_owned()),
            ]
        );
    }

    #[test]
    fn missing_key_is_none() {
        let (release, _) = OsRelease::parse("ID=fedora\n");
        assert_eq!(release.get("VERSION_ID"), None);
        assert_eq!(release.get("id"), None, "keys are case-sensitive");
    }

    #[test]
    fn entries_keep_file_order() {
        let (release, _) = OsRelease::parse("B=2\nA=1\nC=3\n");
        assert_eq!(release.keys().collect::<Vec<_>>(), ["B", "A", "C"]);
    }

    #[test]
    fn from_pairs_round_trips_through_get() {
        let release = OsRelease::from_pairs(&[("ID", "_any"), ("SYSEXT_LEVEL", "1.0")]);
        assert!(!release.is_empty());
        assert_eq!(release.get("ID"), Some("_any"));
        assert_eq!(release.get("SYSEXT_LEVEL"), Some("1.0"));
        assert_eq!(release.keys().collect::<Vec<_>>(), ["ID", "SYSEXT_LEVEL"]);
    }

    #[test]
    fn default_is_empty() {
        assert!(OsRelease::default().is_empty());
        assert!(OsRelease::from_pairs(&[]).is_empty());
    }

    /// `stored` is what systemd would still read from the line, `None` when
    /// the line is dropped entirely.
    #[rstest]
    #[case::not_an_assignment("ID=ok\nJUST TEXT\n", 2, "line is not KEY=VALUE", None)]
    #[case::name_starts_with_digit("1K=v\n", 1, "invalid variable name \"1K\"", None)]
    #[case::name_with_dash("\nMY-KEY=v\n", 2, "invalid variable name \"MY-KEY\"", None)]
    #[case::name_with_inner_space("MY KEY=v\n", 1, "invalid variable name \"MY KEY\"", None)]
    #[case::empty_name("=v\n", 1, "invalid variable name \"\"", None)]
    #[case::export_prefix("export K=v\n", 1, "invalid variable name \"export K\"", None)]
    #[case::unterminated_double("A=1\n\nK=\"abc\n", 3, "unterminated double quote", Some("abc"))]
    #[case::unterminated_single("K='abc\n", 1, "unterminated single quote", Some("abc"))]
    #[case::escaped_closing_quote("K=\"abc\\\"\n", 1, "unterminated double quote", Some("abc\""))]
    #[case::text_after_double_quote(
        "K=\"abc\"def\n",
        1,
        "trailing text after closing quote",
        Some("abcdef")
    )]
    #[case::comment_after_quote(
        "K=\"abc\" # note\n",
        1,
        "trailing text after closing quote",
        Some("abc# note")
    )]
    #[case::concatenated_quotes("K='a'\"b\"\n", 1, "trailing text after closing quote", Some("ab"))]
    #[case::unquoted_whitespace(
        "A=1\nK=Fedora Linux\n",
        2,
        "value must be quoted",
        Some("Fedora Linux")
    )]
    #[case::unquoted_dollar("K=$HOME\n", 1, "value must be quoted", Some("$HOME"))]
    #[case::unquoted_backtick("K=a`b`\n", 1, "value must be quoted", Some("a`b`"))]
    #[case::unquoted_semicolon("K=a;b\n", 1, "value must be quoted", Some("a;b"))]
    #[case::unquoted_ampersand("K=a&b\n", 1, "value must be quoted", Some("a&b"))]
    #[case::unquoted_pipe("K=a|b\n", 1, "value must be quoted", Some("a|b"))]
    #[case::unquoted_redirect("K=a<b>c\n", 1, "value must be quoted", Some("a<b>c"))]
    #[case::unquoted_parens("K=(a)\n", 1, "value must be quoted", Some("(a)"))]
    #[case::quote_inside_unquoted("K=a\"b\"\n", 1, "value must be quoted", Some("a\"b\""))]
    #[case::unescaped_dollar_in_double("K=\"$HOME\"\n", 1, "'$' must be escaped", Some("$HOME"))]
    #[case::unescaped_backtick_in_double("K=\"`id`\"\n", 1, "'`' must be escaped", Some("`id`"))]
    #[case::trailing_backslash("K=abc\\\n", 1, "trailing backslash", Some("abc"))]
    fn each_problem_is_reported_on_its_line(
        #[case] text: &str,
        #[case] line: usize,
        #[case] message_start: &str,
        #[case] stored: Option<&str>,
    ) {
        let (value, issues) = single_value(text);
        let [issue] = issues.as_slice() else {
            panic!("expected exactly one issue, got {issues:?}");
        };
        assert_eq!(issue.line, line);
        assert!(
            issue.message.starts_with(message_start),
            "message {:?} should start with {message_start:?}",
            issue.message
        );
        assert_eq!(value.as_deref(), stored);
    }

    #[test]
    fn every_bad_line_is_reported_not_just_the_first() {
        let text = "NAME=\"Fedora\nbogus\nID=fedora\n9X=1\nPRETTY_NAME=Fedora Linux\n";
        let (release, issues) = OsRelease::parse(text);
        let lines: Vec<usize> = issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, [1, 2, 4, 5]);
        assert_eq!(release.get("ID"), Some("fedora"));
        assert_eq!(release.get("PRETTY_NAME"), Some("Fedora Linux"));
    }

    #[test]
    fn issue_displays_with_line_number() {
        let (_, issues) = OsRelease::parse("\n\nnonsense\n");
        assert_eq!(issues[0].to_string(), "line 3: line is not KEY=VALUE");
    }

    #[rstest]
    #[case::one("1", Some(true))]
    #[case::yes("yes", Some(true))]
    #[case::y("y", Some(true))]
    #[case::true_("true", Some(true))]
    #[case::t("t", Some(true))]
    #[case::on("on", Some(true))]
    #[case::upper_yes("YES", Some(true))]
    #[case::mixed_true("TrUe", Some(true))]
    #[case::zero("0", Some(false))]
    #[case::no("no", Some(false))]
    #[case::n("n", Some(false))]
    #[case::false_("false", Some(false))]
    #[case::f("f", Some(false))]
    #[case::off("off", Some(false))]
    #[case::upper_off("OFF", Some(false))]
    #[case::empty("", None)]
    #[case::two("2", None)]
    #[case::padded(" yes", None)]
    #[case::enabled("enabled", None)]
    #[case::yess("yess", None)]
    fn parse_bool_follows_systemd(#[case] input: &str, #[case] expected: Option<bool>) {
        assert_eq!(parse_bool(input), expected);
    }
}

#[cfg(test)]
pub(crate) mod proptests {
    use super::*;
    use crate::props::check;
    use proptest::prelude::*;

    /// Shell variable names, the only keys a clean file has.
    pub(crate) fn key() -> impl Strategy<Value = String> {
        "[A-Za-z_][A-Za-z0-9_]{0,12}"
    }

    /// Any text a value can hold: everything but control characters, with the characters
    /// that need quoting or escaping made common.
    pub(crate) fn value() -> impl Strategy<Value = String> {
        let tricky = prop::sample::select(vec![
            " ", "\"", "'", "\\", "$", "`", ";", "&", "|", "<", ">", "(", ")", "#", "=", "~", "*",
            "a", "Z", "0", ".", "-", "_", "é", "✓",
        ]);
        prop_oneof![
            prop::collection::vec(tricky, 0..10).prop_map(|v| v.concat()),
            "\\PC*",
        ]
    }

    #[test]
    fn parse_never_panics_and_reports_lines_that_exist() {
        check("(?s).{0,400}", |text| {
            let (release, issues) = OsRelease::parse(&text);
            let lines = text.lines().count();
            for i in &issues {
                prop_assert!(i.line >= 1 && i.line <= lines, "{:?} of {} lines", i, lines);
            }
            for k in release.keys() {
                prop_assert!(is_valid_name(k), "kept invalid key {:?}", k);
                prop_assert!(release.get(k).is_some());
            }
            Ok(())
        });
    }

    /// Rendering then parsing gives back exactly the pairs, with no issue: what the builder
    /// writes is what systemd reads, and clean by os-release(5).
    #[test]
    fn render_then_parse_round_trips() {
        check(prop::collection::vec((key(), value()), 0..8), |pairs| {
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let release = OsRelease::from_pairs(&pairs);
            let text = release
                .render()
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (parsed, issues) = OsRelease::parse(&text);
            prop_assert_eq!(issues, Vec::<SyntaxIssue>::new(), "{}", text);
            prop_assert_eq!(parsed, release, "{}", text);
            Ok(())
        });
    }

    #[test]
    fn values_with_a_newline_or_control_character_are_refused() {
        check(
            (key(), value(), "[\\x00-\\x1f\\x7f]", value()),
            |(k, a, c, b)| {
                let v = format!("{a}{c}{b}");
                prop_assert!(render_assignment(&k, &v).is_err());
                Ok(())
            },
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        check(("\\PC{0,8}", value()), |(k, v)| {
            prop_assert_eq!(
                render_assignment(&k, &v).is_ok(),
                is_valid_name(&k) && !v.chars().any(char::is_control)
            );
            Ok(())
        });
    }
}
