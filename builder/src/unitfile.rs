//! The INI dialect systemd uses for unit files and sysupdate transfer files.
//!
//! Lint needs line numbers for every key and every syntax problem, and must keep going after
//! the first problem, so this is a small tolerant reader rather than a strict deserializer.

/// One `Key=Value` assignment with the section it appeared in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A parsed file: every assignment in order, plus what could not be parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IniFile {
    pub assignments: Vec<Assignment>,
    pub sections: Vec<(String, usize)>,
    pub issues: Vec<(usize, String)>,
}

impl IniFile {
    pub fn parse(text: &str) -> IniFile {
        let mut out = IniFile::default();
        let mut section = String::new();
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            // Backslash continuation joins lines, as systemd's config parser does.
            let (start, mut line) = match pending.take() {
                Some((start, mut acc)) => {
                    acc.push(' ');
                    acc.push_str(raw.trim());
                    (start, acc)
                }
                None => (n, raw.trim().to_string()),
            };
            if !line.starts_with(['#', ';']) && line.ends_with('\\') {
                line.pop();
                pending = Some((start, line));
                continue;
            }
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                match rest.strip_suffix(']') {
                    Some(name) if !name.is_empty() => {
                        section = name.to_string();
                        out.sections.push((section.clone(), start));
                    }
                    _ => out
                        .issues
                        .push((start, format!("invalid section header '{line}'"))),
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                out.issues
                    .push((start, format!("line is not Key=Value: '{line}'")));
                continue;
            };
            let key = key.trim();
            if section.is_empty() {
                out.issues
                    .push((start, format!("assignment '{key}' outside of any section")));
                continue;
            }
            if key.is_empty() {
                out.issues
                    .push((start, "assignment with an empty key".to_string()));
                continue;
            }
            out.assignments.push(Assignment {
                section: section.clone(),
                key: key.to_string(),
                value: value.trim().to_string(),
                line: start,
            });
        }
        if let Some((start, _)) = pending {
            out.issues
                .push((start, "file ends inside a line continuation".to_string()));
        }
        out
    }

    /// The last value of `key` in `section`: later assignments override earlier ones.
    pub fn get(&self, section: &str, key: &str) -> Option<&Assignment> {
        self.assignments
            .iter()
            .rev()
            .find(|a| a.section == section && a.key == key)
    }

    /// Every value of a list-valued key (e.g. `Upholds=`, `ExecStartPre=`), in order.
    pub fn all<'a>(
        &'a self,
        section: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = &'a Assignment> {
        self.assignments
            .iter()
            .filter(move |a| a.section == section && a.key == key)
    }

    /// Whether systemd's config parser gives up on the whole file for this issue (an
    /// invalid section header: EBADMSG). Every other issue costs only its line ("Missing
    /// '=', ignoring line.", "Assignment outside of section. Ignoring.").
    pub fn issue_is_fatal(message: &str) -> bool {
        message.starts_with("invalid section header")
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|(s, _)| s == section)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sections_keys_and_line_numbers() {
        let f = IniFile::parse(
            "# c\n[Unit]\nDescription=x\n\n[Service]\nExecStart=/usr/bin/a \\\n  --flag\n",
        );
        assert!(f.issues.is_empty(), "{:?}", f.issues);
        let exec = f.get("Service", "ExecStart").unwrap();
        assert_eq!(exec.value, "/usr/bin/a  --flag");
        assert_eq!(exec.line, 6);
        assert_eq!(f.get("Unit", "Description").unwrap().line, 3);
    }

    #[test]
    fn later_assignment_wins() {
        let f = IniFile::parse("[A]\nK=1\nK=2\n");
        assert_eq!(f.get("A", "K").unwrap().value, "2");
        assert_eq!(f.all("A", "K").count(), 2);
    }

    #[test]
    fn reports_garbage_and_keeps_going() {
        let f = IniFile::parse("K=outside\n[A\n[B]\nnot an assignment\nX=1\n");
        assert_eq!(f.issues.len(), 3, "{:?}", f.issues);
        assert_eq!(f.issues[0].0, 1);
        assert_eq!(f.get("B", "X").unwrap().value, "1");
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::props::check;
    use proptest::prelude::*;

    /// Text that looks like unit files often enough to reach every branch: sections,
    /// assignments, comments, continuations, and garbage lines between them.
    fn ini_like() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            "\\[[A-Za-z ]{0,8}\\]?",
            "[A-Za-z]{0,6} ?= ?[ -~]{0,10}\\\\?",
            "[#;][ -~]{0,10}",
            "[ -~]{0,12}",
            "\\PC{0,6}",
        ];
        prop::collection::vec(line, 0..16).prop_map(|l| l.join("\n"))
    }

    /// Every key the parser reports can be looked up, and `get` returns the last of its
    /// assignments; line numbers point into the file; keys and values come trimmed.
    #[test]
    fn every_reported_key_is_found_by_get() {
        check(prop_oneof![ini_like(), "(?s).{0,300}"], |text| {
            let f = IniFile::parse(&text);
            let lines = text.lines().count();
            for a in &f.assignments {
                let got = f.get(&a.section, &a.key);
                let last = f.all(&a.section, &a.key).last();
                prop_assert_eq!(got, last);
                prop_assert!(got.is_some_and(|g| g.line >= a.line));
                prop_assert!(
                    !a.key.is_empty() && a.key == a.key.trim() && a.value == a.value.trim()
                );
                prop_assert!(a.line >= 1 && a.line <= lines);
                prop_assert!(f.has_section(&a.section));
            }
            for (line, _) in &f.issues {
                prop_assert!(
                    *line >= 1 && *line <= lines,
                    "issue on line {} of {}",
                    line,
                    lines
                );
            }
            Ok(())
        });
    }

    /// A file written from sections of `Key=Value` pairs parses back to exactly them.
    #[test]
    fn rendered_sections_parse_back_to_the_same_assignments() {
        let key = "[A-Za-z][A-Za-z0-9]{0,10}";
        // No surrounding blanks (the parser trims) and no trailing backslash (continuation).
        let value = "([!-\\[\\]-~]([ -~]{0,10}[!-\\[\\]-~])?)?";
        let section = ("[A-Z][a-z]{0,8}", prop::collection::vec((key, value), 0..5));
        check(prop::collection::vec(section, 0..4), |sections| {
            let mut text = String::new();
            let mut want = Vec::new();
            for (name, pairs) in &sections {
                text.push_str(&format!("[{name}]\n"));
                for (k, v) in pairs {
                    text.push_str(&format!("{k}={v}\n"));
                    want.push((name.clone(), k.clone(), v.clone()));
                }
            }
            let f = IniFile::parse(&text);
            prop_assert!(f.issues.is_empty(), "{:?}", f.issues);
            let got: Vec<(String, String, String)> = f
                .assignments
                .iter()
                .map(|a| (a.section.clone(), a.key.clone(), a.value.clone()))
                .collect();
            prop_assert_eq!(got, want);
            Ok(())
        });
    }
}
