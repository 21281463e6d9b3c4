//! Rendering lint results for people (aligned text) and machines (JSON).

use std::io::{self, Write};

use serde::Serialize;

use crate::lint::{ImageReport, ReportKind, Severity};

#[derive(Serialize)]
struct JsonReport<'a> {
    /// What the images were judged against (`flatcar 4230.2.0 (systemd >= 255, ...)`).
    target: &'a str,
    images: &'a [ImageReport],
    summary: Summary,
}

#[derive(Serialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Summary {
    pub images: usize,
    pub errors: usize,
    pub warnings: usize,
    pub info: usize,
}

pub fn summarize(reports: &[ImageReport]) -> Summary {
    let mut s = Summary {
        images: reports
            .iter()
            .filter(|r| r.kind == ReportKind::Image)
            .count(),
        ..Default::default()
    };
    for r in reports {
        s.errors += r.count(Severity::Error);
        s.warnings += r.count(Severity::Warning);
        s.info += r.count(Severity::Info);
    }
    s
}

pub fn json(out: &mut dyn Write, reports: &[ImageReport], target: &str) -> io::Result<()> {
    let r = JsonReport {
        target,
        images: reports,
        summary: summarize(reports),
    };
    serde_json::to_writer_pretty(&mut *out, &r)?;
    writeln!(out)
}

pub fn human(
    out: &mut dyn Write,
    reports: &[ImageReport],
    target: &str,
    color: bool,
) -> io::Result<()> {
    let paint = |s: Severity, text: &str| -> String {
        if !color {
            return text.to_string();
        }
        let code = match s {
            Severity::Error => "31;1",
            Severity::Warning => "33",
            Severity::Info => "36",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    };
    for r in reports {
        let what = match (r.kind, &r.name, r.format) {
            (ReportKind::ReleaseDir, _, _) => "release directory".to_string(),
            (ReportKind::Together, _, _) => "merged together".to_string(),
            (_, Some(n), Some(f)) => format!("{f} image '{n}'"),
            _ => "image".to_string(),
        };
        writeln!(out, "{} ({what})", r.path)?;
        if r.findings.is_empty() {
            writeln!(out, "  ok: no findings")?;
        }
        let width = r.findings.iter().map(|f| f.rule.len()).max().unwrap_or(0);
        for f in &r.findings {
            let sev = paint(f.severity, &format!("{:<7}", f.severity.as_str()));
            let at = if f.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", f.path)
            };
            writeln!(out, "  {sev} {:<width$}  {at}{}", f.rule, f.message)?;
        }
    }
    let s = summarize(reports);
    writeln!(
        out,
        "{} image(s) checked against {target}: {} error(s), {} warning(s), {} info",
        s.images, s.errors, s.warnings, s.info
    )
}

/// `sysext-test run` for machines: one object per case ([`crate::run_record`]); a failed
/// case's `assertion` keeps our `explanation` apart from the guest's `evidence`.
pub fn vm_json(out: &mut dyn Write, rows: &[crate::runner::Row]) -> io::Result<()> {
    writeln!(out, "{}", crate::run_record::to_json(rows)?)
}

/// `sysext-test run` for people: a table, then each case that did not pass, once.
pub fn vm_human(out: &mut dyn Write, rows: &[crate::runner::Row]) -> io::Result<()> {
    use crate::outcome::Verdict;
    writeln!(
        out,
        "{:<10} {:<8} {:<7} {:<8} {:>7}  IMAGE",
        "CASE", "VIA", "ARCH", "RESULT", "TIME"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<10} {:<8} {:<7} {:<8} {:>6.1}s  {}",
            r.case.name(),
            r.case.via(),
            r.arch.systemd_name(),
            r.outcome.verdict.word(),
            r.outcome.duration.as_secs_f64(),
            r.image
        )?;
    }
    for r in rows {
        let head = format!("{} on {} for {}", r.case, r.arch, r.image);
        match &r.outcome.verdict {
            Verdict::Pass {
                expected_failure: Some(a),
                ..
            } => writeln!(out, "\n{head} failed as expected:\n{a}")?,
            Verdict::Pass { .. } => {}
            Verdict::Fail { assertion, notes } => {
                writeln!(out, "\n{head} failed:\n{assertion}")?;
                for n in notes {
                    writeln!(out, "{n}")?;
                }
            }
            Verdict::Error { stage, message } => writeln!(
                out,
                "\n{head}: harness error at {stage} (not a verdict on the image):\n{message}"
            )?,
            Verdict::NotRun { reason } => writeln!(out, "\n{head}: not run: {reason}")?,
        }
    }
    let passed = rows.iter().filter(|r| r.outcome.verdict.is_pass()).count();
    let count = |w: &str| {
        rows.iter()
            .filter(|r| r.outcome.verdict.word() == w)
            .count()
    };
    writeln!(
        out,
        "{} case(s): {passed} passed, {} failed, {} not run, {} harness errors",
        rows.len(),
        count("FAIL"),
        count("not run"),
        count("ERROR")
    )
}

/// `sysext-test diff` for people: each pair of releases, regressions first, accepted ones
/// with the manifest's reason.
pub fn diff_human(
    out: &mut dyn Write,
    reports: &[crate::release_diff::DiffReport],
    color: bool,
) -> io::Result<()> {
    let red = |t: &str| {
        if color {
            format!("\x1b[31;1m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    for r in reports {
        writeln!(out, "{} {} -> {} ({})", r.extension, r.old, r.new, r.arch)?;
        if r.changes.is_empty() {
            writeln!(out, "  ok: no change")?;
        }
        let mut changes: Vec<&crate::release_diff::Change> = r.changes.iter().collect();
        changes.sort_by_key(|c| (!c.is_regression(), std::cmp::Reverse(c.severity)));
        let width = changes.iter().map(|c| c.rule.len()).max().unwrap_or(0);
        for c in changes {
            let word = match (&c.accepted, c.severity) {
                (Some(_), _) => "accepted".to_string(),
                (None, Severity::Error) => red("REGRESSION"),
                (None, s) => s.as_str().to_string(),
            };
            let why = c
                .accepted
                .as_ref()
                .map(|w| format!(" (accepted: {w})"))
                .unwrap_or_default();
            writeln!(out, "  {word:<10} {:<width$}  {}{why}", c.rule, c.message)?;
        }
    }
    let regressions: usize = reports.iter().map(|r| r.regressions().count()).sum();
    let shown: usize = reports.iter().map(|r| r.changes.len()).sum();
    writeln!(
        out,
        "{} comparison(s): {regressions} regression(s), {shown} change(s) in all",
        reports.len()
    )
}

/// `sysext-test diff` for machines.
pub fn diff_json(
    out: &mut dyn Write,
    reports: &[crate::release_diff::DiffReport],
) -> io::Result<()> {
    let regressions: usize = reports.iter().map(|r| r.regressions().count()).sum();
    let v = serde_json::json!({ "comparisons": reports, "regressions": regressions });
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)
}

/// `sysext-test run --together`: the images, the verdict, and for one that did not pass our
/// explanation apart from the guest's evidence (the JSON is the verdict as `run` writes it).
pub fn together(
    out: &mut dyn Write,
    images: &[String],
    arch: sysext_builder::Arch,
    outcome: &crate::outcome::Outcome,
    json: bool,
) -> io::Result<()> {
    use crate::outcome::Verdict;
    if json {
        let v = serde_json::json!({
            "images": images,
            "arch": arch.systemd_name(),
            "seconds": outcome.duration.as_secs_f64(),
            "verdict": outcome.verdict,
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        return writeln!(out);
    }
    writeln!(
        out,
        "{} merged together on {arch}: {} in {:.1}s",
        images.join(", "),
        outcome.verdict.word(),
        outcome.duration.as_secs_f64()
    )?;
    match &outcome.verdict {
        Verdict::Fail { assertion, notes } => {
            writeln!(out, "{assertion}")?;
            for n in notes {
                writeln!(out, "{n}")?;
            }
        }
        Verdict::Error { stage, message } => writeln!(
            out,
            "harness error at {stage} (not a verdict on the images):\n{message}"
        )?,
        _ => {}
    }
    Ok(())
}
