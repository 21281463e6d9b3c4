//! Reading what systemd-sysext says: its status JSON and the lines of a debug-level merge
//! that give a reason. A status that does not parse is a failed check, never an empty list:
//! "nothing merged" read from garbage would pass every unmerge.

use crate::outcome::Assertion;

/// Extension names merged on `hierarchy` in `systemd-sysext status --json=short` output
/// (`extensions` is the string "none" or an array).
pub fn merged_on(status_json: &str, hierarchy: &str) -> Result<Vec<String>, Assertion> {
    let unreadable = |why: &str| {
        Assertion::new(format!(
            "expected `systemd-sysext status --json=short` to print its JSON list of hierarchies; {why}"
        ))
        .with_evidence(status_json)
    };
    let v: serde_json::Value = serde_json::from_str(status_json)
        .map_err(|e| unreadable(&format!("it does not parse ({e})")))?;
    let rows = v.as_array().ok_or_else(|| unreadable("it is not a list"))?;
    let mut names = Vec::new();
    for row in rows {
        let here = row
            .get("hierarchy")
            .and_then(|h| h.as_str())
            .ok_or_else(|| unreadable("a row names no hierarchy"))?;
        if here != hierarchy {
            continue;
        }
        match row.get("extensions") {
            Some(serde_json::Value::Array(list)) => {
                names.extend(list.iter().filter_map(|e| e.as_str().map(str::to_string)))
            }
            Some(serde_json::Value::String(s)) if s == "none" => {}
            _ => {
                return Err(unreadable(
                    "a row's extensions are neither a list nor \"none\"",
                ));
            }
        }
    }
    Ok(names)
}

/// The lines of a debug-level merge that say why an image was taken or refused; the rest
/// (mount setup, hierarchy scans) would bury them.
pub fn refusal_lines(output: &str, name: &str) -> String {
    const WORDS: &[&str] = &[
        "refus",
        "incompatible",
        "ignored",
        "not allowed",
        "No medium",
        "ailed",
        "match",
        "architecture",
        "not found",
        "No suitable",
        "extension-release",
        "Extension",
    ];
    // The lines naming the image first: on a Flatcar guest the built-ins' own lines
    // (debug level) would otherwise crowd systemd's reason out of the first forty.
    let (named, other): (Vec<&str>, Vec<&str>) = output
        .lines()
        .filter(|l| l.contains(name) || WORDS.iter().any(|w| l.contains(w)))
        .partition(|l| l.contains(name));
    named
        .into_iter()
        .chain(other)
        .take(40)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_images_lines_come_before_the_others() {
        let mut journal = "Checking for extension-release.docker-flatcar: Success\n".repeat(60);
        journal.push_str(
            "Extension 'archname' is for architecture 'x86_64', but deployed on top of 'x86-64'.\n",
        );
        let lines = refusal_lines(&journal, "archname");
        assert!(
            lines.starts_with("Extension 'archname' is for architecture"),
            "{lines}"
        );
        assert_eq!(lines.lines().count(), 40);
    }

    #[test]
    fn status_json_none_and_arrays() {
        let j = r#"[{"hierarchy":"/opt","extensions":"none","since":null},{"hierarchy":"/usr","extensions":["a","b"],"since":1}]"#;
        assert_eq!(merged_on(j, "/usr").unwrap(), ["a", "b"]);
        assert!(merged_on(j, "/opt").unwrap().is_empty());
    }

    #[test]
    fn a_status_that_does_not_parse_is_a_failure_not_nothing_merged() {
        for garbage in ["", "garbage", "{}", r#"[{"extensions":"none"}]"#] {
            let e = merged_on(garbage, "/usr").unwrap_err();
            assert!(e.explanation.contains("systemd-sysext status"), "{e}");
        }
    }

    #[test]
    fn refusal_lines_keep_the_reason_and_drop_the_noise() {
        let out = "Mounting /usr...\nExtension 'x' is for architecture 'arm64', but deployed on top of 'x86-64'.\nNo suitable extensions found (1 ignored due to incompatible image(s)).\n";
        let kept = refusal_lines(out, "x");
        assert!(!kept.contains("Mounting"));
        assert!(kept.contains("deployed on top of"));
        assert!(kept.contains("1 ignored"));
    }
}
