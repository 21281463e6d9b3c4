//! The journal and the console as Flatcar's kola reads them: a case passes only if nothing
//! in them says a unit failed to start, a dependency failed, an ordering cycle was broken, a
//! process crashed or dumped core, or SELinux denied something, beyond what the same
//! guest says without the image.
//!
//! A unit that crashes and is restarted ends up active, so "no failed unit" alone misses
//! it; its crash is in the journal at notice or info level (systemd's `code=dumped`, the
//! kernel's `segfault at`), below the error level the boot check also compares. So the
//! scan reads every priority, for these words only.

use sysext_harness::Vm;

use crate::outcome::{Assertion, CaseError};

/// Error lines with digits folded to `#`, so PIDs, addresses and timings do not make the
/// same message differ between boots.
pub fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// The words, systemd's and the kernel's, with what each means.
pub const BADNESS: &[(&str, &str)] = &[
    ("Failed to start ", "a unit failed to start"),
    ("Dependency failed for ", "a unit's dependency failed"),
    ("ordering cycle", "systemd broke an ordering cycle"),
    ("code=dumped", "a unit's process dumped core"),
    ("dumped core", "a process dumped core"),
    (" segfault at ", "a process segfaulted"),
    (
        "general protection fault",
        "a process hit a general protection fault",
    ),
    ("Kernel panic", "the kernel panicked"),
    ("avc:  denied", "SELinux denied an access"),
];

/// The journal's lines with any of [`BADNESS`]' words, since `cursor` (this boot when
/// None). `grep` exits 1 when nothing matches: that is the good case.
pub fn scan_command(cursor: Option<&str>) -> String {
    let after = cursor
        .map(|c| format!(" --after-cursor={}", crate::shell::quote(c)))
        .unwrap_or_default();
    let words: String = BADNESS
        .iter()
        .map(|(w, _)| format!(" -e {}", crate::shell::quote(w)))
        .collect();
    format!("journalctl -b -o cat --no-pager{after} | grep -F{words} || [ $? -eq 1 ]")
}

/// The journal's position now, so a later scan reads only what came after.
pub const CURSOR: &str = "journalctl -b -n 0 --show-cursor --no-pager";

/// The cursor [`CURSOR`] printed (`-- cursor: s=…`).
pub fn parse_cursor(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("-- cursor: "))
        .map(|c| c.trim().to_string())
}

/// The lines of `text` with a word of [`BADNESS`], each once, in order.
pub fn bad_lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in text.lines().map(str::trim) {
        if BADNESS.iter().any(|(w, _)| l.contains(w)) && !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    out
}

/// What a bad line means, for the assertion.
fn meaning(line: &str) -> &'static str {
    BADNESS
        .iter()
        .find(|(w, _)| line.contains(w))
        .map_or("a bad line", |(_, m)| m)
}

/// Fails with the lines of `found` that `baseline` (folded, see [`fold`]) lacks; the first
/// line's meaning says what went wrong.
pub fn judge(found: &[String], baseline: &[String], what: &str) -> Result<(), CaseError> {
    let new: Vec<&String> = found
        .iter()
        .filter(|l| !baseline.contains(&fold(l)))
        .collect();
    let Some(first) = new.first() else {
        return Ok(());
    };
    Err(Assertion::new(format!(
        "expected {what} to log nothing kola fails a boot on; {} ({} line(s))",
        meaning(first),
        new.len()
    ))
    .with_evidence(
        &new.iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .into())
}

/// Reads the journal since `cursor` and the console, and fails on a bad line the baseline
/// lacks. Console lines that repeat a journal line are not counted twice.
pub fn check(
    vm: &Vm,
    cursor: Option<&str>,
    baseline: &[String],
    what: &str,
) -> Result<(), CaseError> {
    let out = vm.batch(&[scan_command(cursor).as_str()])?;
    let journal = out.first().map(|o| o.stdout.as_str()).unwrap_or_default();
    if let Some(o) = out.first()
        && o.status != 0
    {
        return Err(Assertion::new(format!(
            "expected the journal scan to read the guest's journal; it exited {}",
            o.status
        ))
        .with_evidence(&o.stderr)
        .into());
    }
    let mut found = bad_lines(journal);
    for l in bad_lines(&vm.console()) {
        if !found
            .iter()
            .any(|f| l.contains(f.as_str()) || f.contains(l.as_str()))
        {
            found.push(l);
        }
    }
    judge(&found, baseline, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_is_found_even_when_the_unit_came_back() {
        let journal = "Started crashy.service - Crashy.\n\
            crashy.service: Main process exited, code=dumped, status=11/SEGV\n\
            crashy.service: Failed with result 'core-dump'.\n\
            crashy.service: Scheduled restart job, restart counter is at 1.\n\
            Started crashy.service - Crashy.\n";
        let found = bad_lines(journal);
        assert_eq!(found.len(), 1, "{found:?}");
        let e = judge(&found, &[], "the merge").unwrap_err();
        let text = format!("{e:?}");
        assert!(text.contains("code=dumped"), "{text}");
        assert!(text.contains("dumped core"), "{text}");
    }

    #[test]
    fn lines_the_baseline_has_are_not_new() {
        let found = bad_lines("Dependency failed for foo.service - Foo 12.\n");
        let baseline: Vec<String> = found.iter().map(|l| fold(l)).collect();
        assert!(judge(&found, &baseline, "the boot").is_ok());
        assert!(judge(&found, &[], "the boot").is_err());
    }

    #[test]
    fn the_cursor_is_read_from_journalctl() {
        assert_eq!(
            parse_cursor("-- cursor: s=abc;i=1f;b=d\n").as_deref(),
            Some("s=abc;i=1f;b=d")
        );
        assert_eq!(parse_cursor("-- No entries --\n"), None);
    }
}
