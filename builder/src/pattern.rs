//! systemd-sysupdate `MatchPattern=` strings: validation and matching.
//!
//! sysupdate 257 accepts some invalid patterns at parse time and then fails every verb at
//! match time (forbidden literal characters, rule K11), and silently skips files whose `@v`
//! capture is not a valid version (K12). Both are invisible until an update never happens,
//! so we check patterns and predict matches statically.

use crate::version;

/// One piece of a pattern: literal text or an `@x` wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Literal(String),
    Wildcard(char),
}

const WILDCARDS: &str = "vufagrtmsdlh";
const FORBIDDEN_LITERAL: &str = "$*?[]!\\|";

/// Why a pattern would be refused, in sysupdate's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern has no @v version wildcard")]
    NoVersion,
    #[error("wildcard @{0} appears more than once")]
    Repeated(char),
    #[error("wildcards @{0} and @{1} follow each other with no literal text between them")]
    Adjacent(char, char),
    #[error("unknown wildcard @{0} (known: @v @u @f @a @g @r @t @m @s @d @l @h, and @@ for '@')")]
    Unknown(char),
    #[error("pattern ends with a lone '@'")]
    TrailingAt,
    #[error(
        "literal character '{0}' is not allowed; sysupdate 257 accepts the file but then fails every verb with \"Failed to match pattern: Invalid request code\""
    )]
    ForbiddenChar(char),
    #[error("specifier %{0} is not one systemd-sysupdate knows")]
    Specifier(char),
    #[error(
        "specifier %{0} is a value of each host's own (os-release, machine, kernel), so which files match depends on the host"
    )]
    HostSpecifier(char),
}

/// Specifiers sysupdate expands from the host it runs on (systemd's common system and
/// temporary-directory specifiers): known, but not knowable without the host.
const HOST_SPECIFIERS: &str = "AbBHlqmMovwWTV";

/// Expands `%` specifiers that a transfer file may use; `%a` is the host architecture.
///
/// The host's own values (`%w` its VERSION_ID, `%m` its machine id, ...) are refused as
/// [`PatternError::HostSpecifier`]: sysupdate expands them, each host differently. An
/// unknown letter is [`PatternError::Specifier`]: sysupdate drops the whole setting.
pub fn expand_specifiers(value: &str, arch: &str) -> Result<String, PatternError> {
    expand_specifiers_with(value, arch, &|_| None)
}

/// Like [`expand_specifiers`], with `host` giving the host's values where they are known
/// (`%w` → its os-release VERSION_ID).
pub fn expand_specifiers_with(
    value: &str,
    arch: &str,
    host: &dyn Fn(char) -> Option<String>,
) -> Result<String, PatternError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('a') => out.push_str(arch),
            Some(h) if HOST_SPECIFIERS.contains(h) => match host(h) {
                Some(v) => out.push_str(&v),
                None => return Err(PatternError::HostSpecifier(h)),
            },
            Some(other) => return Err(PatternError::Specifier(other)),
            None => return Err(PatternError::Specifier(' ')),
        }
    }
    Ok(out)
}

/// Splits a pattern into elements and checks it the way sysupdate should (K10, K11).
pub fn parse(pattern: &str) -> Result<Vec<Element>, PatternError> {
    let mut elements: Vec<Element> = Vec::new();
    let mut literal = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '@' {
            if FORBIDDEN_LITERAL.contains(c) || !(c.is_ascii_graphic() || c == ' ') {
                return Err(PatternError::ForbiddenChar(c));
            }
            literal.push(c);
            continue;
        }
        match chars.next() {
            None => return Err(PatternError::TrailingAt),
            Some('@') => literal.push('@'),
            Some(w) if WILDCARDS.contains(w) => {
                if !literal.is_empty() {
                    elements.push(Element::Literal(std::mem::take(&mut literal)));
                }
                if let Some(Element::Wildcard(prev)) = elements.last() {
                    return Err(PatternError::Adjacent(*prev, w));
                }
                if elements.contains(&Element::Wildcard(w)) {
                    return Err(PatternError::Repeated(w));
                }
                elements.push(Element::Wildcard(w));
            }
            Some(other) => return Err(PatternError::Unknown(other)),
        }
    }
    if !literal.is_empty() {
        elements.push(Element::Literal(literal));
    }
    if !elements.contains(&Element::Wildcard('v')) {
        return Err(PatternError::NoVersion);
    }
    Ok(elements)
}

/// What matching a file name against a pattern gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The name matches and this is the version sysupdate would see.
    Version(String),
    /// The name has the pattern's shape but the `@v` capture is not a valid sysupdate
    /// version, so sysupdate silently ignores the file.
    InvalidVersion(String),
    NoMatch,
}

/// Matches `name` the way sysupdate's pattern_match does: each wildcard captures up to the
/// first occurrence of the literal that follows it.
pub fn match_name(elements: &[Element], name: &str) -> Match {
    let mut rest = name;
    let mut version = None;
    for (i, el) in elements.iter().enumerate() {
        match el {
            Element::Literal(lit) => match rest.strip_prefix(lit.as_str()) {
                Some(r) => rest = r,
                None => return Match::NoMatch,
            },
            Element::Wildcard(w) => {
                let capture = match elements.get(i + 1) {
                    Some(Element::Literal(next)) => match rest.find(next.as_str()) {
                        Some(pos) => &rest[..pos],
                        None => return Match::NoMatch,
                    },
                    _ => rest,
                };
                if capture.is_empty() {
                    return Match::NoMatch;
                }
                if !wildcard_accepts(*w, capture) {
                    if *w == 'v' {
                        version = Some(Err(capture.to_string()));
                        rest = &rest[capture.len()..];
                        continue;
                    }
                    return Match::NoMatch;
                }
                if *w == 'v' {
                    version = Some(Ok(capture.to_string()));
                }
                rest = &rest[capture.len()..];
            }
        }
    }
    if !rest.is_empty() {
        return Match::NoMatch;
    }
    match version {
        Some(Ok(v)) => Match::Version(v),
        Some(Err(v)) => Match::InvalidVersion(v),
        None => Match::NoMatch,
    }
}

fn wildcard_accepts(w: char, s: &str) -> bool {
    match w {
        'v' => version::sysupdate_version_is_valid(s),
        'a' | 'g' | 'r' => s == "0" || s == "1",
        'f' => s.bytes().all(|b| b.is_ascii_hexdigit()),
        't' | 's' | 'd' | 'l' => s.bytes().all(|b| b.is_ascii_digit()),
        'm' => s.bytes().all(|b| (b'0'..=b'7').contains(&b)),
        'h' => s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
        'u' => s.len() == 36,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("docker-@v-x86-64.raw", "docker-28.0.4-x86-64.raw", Match::Version("28.0.4".into()))]
    #[case("kubernetes-v1.32.@v-arm64.raw", "kubernetes-v1.32.2-arm64.raw", Match::Version("2".into()))]
    #[case("k3s-@v-x86-64.raw", "k3s-v1.32.2+k3s1-x86-64.raw", Match::Version("v1.32.2+k3s1".into()))]
    #[case("app_@v.raw", "app_2.0~rc1.raw", Match::InvalidVersion("2.0~rc1".into()))]
    #[case("app_@v.raw", "app_1.5^post1.raw", Match::InvalidVersion("1.5^post1".into()))]
    #[case("docker-@v-x86-64.raw", "docker-28.0.4-arm64.raw", Match::NoMatch)]
    #[case("docker-@v-x86-64.raw", "containerd-1-x86-64.raw", Match::NoMatch)]
    fn matches_like_sysupdate(#[case] pattern: &str, #[case] name: &str, #[case] expected: Match) {
        let els = parse(pattern).unwrap();
        assert_eq!(match_name(&els, name), expected);
    }

    #[test]
    fn capture_runs_to_first_occurrence_of_the_whole_next_literal() {
        let els = parse("x-@v-x86-64.raw").unwrap();
        assert_eq!(
            match_name(&els, "x-1.0-rc1-x86-64.raw"),
            Match::Version("1.0-rc1".into())
        );
        let els = parse("x_@v_@a.raw").unwrap();
        assert_eq!(match_name(&els, "x_1_2_1.raw"), Match::NoMatch);
    }

    #[rstest]
    #[case("docker.raw", PatternError::NoVersion)]
    #[case("a-@v-@v.raw", PatternError::Repeated('v'))]
    #[case("a-@v@s.raw", PatternError::Adjacent('v', 's'))]
    #[case("a-@v-@x.raw", PatternError::Unknown('x'))]
    #[case("a-@v.raw@", PatternError::TrailingAt)]
    #[case("a-@v-*.raw", PatternError::ForbiddenChar('*'))]
    #[case("a|b-@v.raw", PatternError::ForbiddenChar('|'))]
    fn refuses_invalid_patterns(#[case] pattern: &str, #[case] expected: PatternError) {
        assert_eq!(parse(pattern), Err(expected));
    }

    #[test]
    fn at_at_is_a_literal_at() {
        let els = parse("a@@b-@v.raw").unwrap();
        assert_eq!(match_name(&els, "a@b-1.raw"), Match::Version("1".into()));
    }

    #[test]
    fn host_specifiers_take_the_hosts_values() {
        let host = |c: char| (c == 'w').then(|| "13".to_string());
        assert_eq!(
            expand_specifiers_with("x-@v-%w-%a.raw", "arm64", &host),
            Ok("x-@v-13-arm64.raw".to_string())
        );
        assert_eq!(
            expand_specifiers_with("x-@v-%m.raw", "arm64", &host),
            Err(PatternError::HostSpecifier('m'))
        );
    }

    #[rstest]
    #[case("docker-@v-%a.raw", "x86-64", Ok("docker-@v-x86-64.raw".to_string()))]
    #[case("100%%-@v", "arm64", Ok("100%-@v".to_string()))]
    #[case("x-@v-%w.raw", "arm64", Err(PatternError::HostSpecifier('w')))]
    #[case("x-@v-%y.raw", "arm64", Err(PatternError::Specifier('y')))]
    fn expands_arch_specifier(
        #[case] input: &str,
        #[case] arch: &str,
        #[case] expected: Result<String, PatternError>,
    ) {
        assert_eq!(expand_specifiers(input, arch), expected);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::props::check;
    use proptest::prelude::*;

    /// Pattern-shaped text: literals, `@` wildcards known and unknown, `%` specifiers.
    fn pattern_like() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "docker", "-", ".raw", "_", "@v", "@a", "@u", "@x", "@@", "@", "%a", "%%", "%w",
            "*", "é", " ",
        ]);
        prop_oneof![
            prop::collection::vec(piece, 0..8).prop_map(|p| p.concat()),
            "\\PC{0,20}",
        ]
    }

    /// What `parse` accepts has the shape `match_name` relies on.
    #[test]
    fn parse_never_panics_and_accepted_patterns_are_well_formed() {
        check((pattern_like(), "\\PC{0,24}"), |(p, name)| {
            let _ = expand_specifiers(&p, "x86-64");
            let Ok(elements) = parse(&p) else {
                return Ok(());
            };
            prop_assert!(elements.contains(&Element::Wildcard('v')));
            for pair in elements.windows(2) {
                prop_assert!(
                    !matches!(pair, [Element::Wildcard(_), Element::Wildcard(_)]),
                    "adjacent wildcards in {:?}",
                    elements
                );
            }
            for e in &elements {
                if let Element::Literal(l) = e {
                    prop_assert!(!l.is_empty());
                }
            }
            let _ = match_name(&elements, &name);
            Ok(())
        });
    }

    /// A pattern made of a literal, `@v` and a literal matches the name made of the same
    /// literals around a version, and captures exactly that version (or reports it
    /// invalid), as long as the suffix first occurs where the version ends: sysupdate's
    /// capture stops at the first occurrence of the next literal.
    #[test]
    fn literal_version_literal_matches_its_own_name() {
        let literal = "[a-z0-9._+,@ -]{0,8}";
        let version = prop_oneof!["[A-Za-z0-9.,_+-]{1,12}", "[0-9a-z.~^-]{1,8}"];
        check((literal, version, literal), |(prefix, version, suffix)| {
            let name = format!("{prefix}{version}{suffix}");
            prop_assume!(
                suffix.is_empty() || name[prefix.len()..].find(&suffix) == Some(version.len())
            );
            let pattern = format!(
                "{}@v{}",
                prefix.replace('@', "@@"),
                suffix.replace('@', "@@")
            );
            let elements =
                parse(&pattern).map_err(|e| TestCaseError::fail(format!("{pattern}: {e}")))?;
            let want = if version::sysupdate_version_is_valid(&version) {
                Match::Version(version.clone())
            } else {
                Match::InvalidVersion(version.clone())
            };
            prop_assert_eq!(
                match_name(&elements, &name),
                want,
                "{} vs {}",
                pattern,
                name
            );
            Ok(())
        });
    }

    #[test]
    fn expanding_specifiers_only_touches_percent_signs() {
        check(("[^%]{0,12}", "[^%]{0,12}"), |(a, b)| {
            prop_assert_eq!(
                expand_specifiers(&format!("{a}%a{b}%%"), "arm64"),
                Ok(format!("{a}arm64{b}%"))
            );
            prop_assert_eq!(expand_specifiers(&a, "arm64"), Ok(a.clone()));
            Ok(())
        });
    }
}
