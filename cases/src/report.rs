//! Rendering lint results for people (aligned text) and machines (JSON).

use std::io::{self, Write};

use serde::Serialize;

use crate::lint::{ImageReport, Severity};

#[derive(Serialize)]
struct JsonReport<'a> {
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
        images: reports.iter().filter(|r| r.kind == "image").count(),
        ..Default::default()
    };
    for r in reports {
        s.errors += r.count(Severity::Error);
        s.warnings += r.count(Severity::Warning);
        s.info += r.count(Severity::Info);
    }
    s
}

pub fn json(out: &mut dyn Write, reports: &[ImageReport]) -> io::Result<()> {
    let r = JsonReport {
        images: reports,
        summary: summarize(reports),
    };
    serde_json::to_writer_pretty(&mut *out, &r)?;
    writeln!(out)
}

pub fn human(out: &mut dyn Write, reports: &[ImageReport], color: bool) -> io::Result<()> {
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
            ("release-dir", _, _) => "release directory".to_string(),
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
        "{} image(s) checked: {} error(s), {} warning(s), {} info",
        s.images, s.errors, s.warnings, s.info
    )
}
