//! Version ordering and validity as systemd sees them.
//!
//! sysext-test has to predict which image systemd-sysext/systemd-sysupdate will
//! pick, so "newer" must mean exactly what systemd means by it. Plain
//! `strverscmp(3)` or semver would disagree on `~`, `^` and `-`, and a
//! conformance checker that sorts differently from the thing it checks is
//! worse than none. Hence a faithful port of `strverscmp_improved()` from
//! systemd's `src/fundamental/string-util-fundamental.c`, which is the
//! reference implementation of the UAPI.10 Version Format Specification.

use std::cmp::Ordering;

/// systemd compares C strings, so anything after an embedded NUL does not
/// exist for it. Returning NUL past the end lets the port mirror the C control
/// flow one to one, which keeps it easy to audit against upstream.
fn peek(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// Characters outside this set only act as segment separators, which is why
/// `1_2` and `12` are not equal but `1_` and `1` are.
fn is_version_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

fn skip_separators(s: &[u8], mut i: usize) -> usize {
    while peek(s, i) != 0 && !is_version_char(peek(s, i)) {
        i += 1;
    }
    i
}

fn run_end(s: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while pred(peek(s, i)) {
        i += 1;
    }
    i
}

/// Shared shape of the `~`, `-`, `^` and `.` rules: the side carrying the
/// prefix is older; if both carry it, it is consumed and comparison goes on.
fn compare_prefix(
    a: &[u8],
    i: &mut usize,
    b: &[u8],
    j: &mut usize,
    prefix: u8,
) -> Option<Ordering> {
    let (ca, cb) = (peek(a, *i), peek(b, *j));
    if ca != prefix && cb != prefix {
        return None;
    }
    let r = (ca != prefix).cmp(&(cb != prefix));
    if r != Ordering::Equal {
        return Some(r);
    }
    *i += 1;
    *j += 1;
    None
}

/// Orders two version strings the way systemd does (`strverscmp_improved`).
///
/// `Ordering::Less` means `a` is older than `b`. The comparison is total and
/// antisymmetric, so it is safe for `sort_by`; distinct strings may still
/// compare equal (`1_` and `1`, `11α` and `11β`), because systemd drops
/// characters it does not understand.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_with(a, b, false)
}

/// [`compare`] as systemd's own build for `arch` orders them. They differ in one corner:
/// right after a `~` that both strings share, systemd checks for the end of either string
/// before it skips characters it does not understand, and compares the two next bytes as C
/// `char`s (`return CMP(*a, *b);` in `strverscmp_improved`, systemd v257
/// `src/fundamental/string-util-fundamental.c`). `char` is signed on x86-64 and unsigned on
/// arm64, so a byte of 0x80 or more (UTF-8) sorts below the end of the string on x86-64 and
/// above it on arm64: `~` > `~α` on x86-64, `~` < `~α` on arm64. Found by
/// `sysext-test differential` (the versions family); only non-ASCII versions are affected,
/// and sysupdate refuses those anyway.
pub fn compare_on(arch: crate::Arch, a: &str, b: &str) -> Ordering {
    compare_with(a, b, arch == crate::Arch::X86_64)
}

fn compare_with(a: &str, b: &str, signed_char: bool) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);

    loop {
        i = skip_separators(a, i);
        j = skip_separators(b, j);

        // `~` marks pre-releases, which must lose even against the bare
        // version, so it is checked before the end-of-string rule.
        if let Some(r) = compare_prefix(a, &mut i, b, &mut j, b'~') {
            return r;
        }

        let (ca, cb) = (peek(a, i), peek(b, j));
        if ca == 0 || cb == 0 {
            return if signed_char {
                (ca as i8).cmp(&(cb as i8))
            } else {
                ca.cmp(&cb)
            };
        }

        // Order matters: `-` (release separator) < `^` (patch) < `.` (point
        // release) < a bare segment.
        for prefix in [b'-', b'^', b'.'] {
            if let Some(r) = compare_prefix(a, &mut i, b, &mut j, prefix) {
                return r;
            }
        }

        let (ca, cb) = (peek(a, i), peek(b, j));
        let (ia, jb);
        if ca.is_ascii_digit() || cb.is_ascii_digit() {
            ia = run_end(a, i, |c| c.is_ascii_digit());
            jb = run_end(b, j, |c| c.is_ascii_digit());

            // A numeric segment beats a missing one (`1.0` > `1.a`).
            let r = (ia != i).cmp(&(jb != j));
            if r != Ordering::Equal {
                return r;
            }

            // Compare by magnitude without parsing, so arbitrarily long
            // numbers (dates, git hashes of digits) cannot overflow.
            let da = strip_leading_zeros(&a[i..ia]);
            let db = strip_leading_zeros(&b[j..jb]);
            let r = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if r != Ordering::Equal {
                return r;
            }
        } else {
            ia = run_end(a, i, |c| c.is_ascii_alphabetic());
            jb = run_end(b, j, |c| c.is_ascii_alphabetic());

            let (sa, sb) = (&a[i..ia], &b[j..jb]);
            let common = sa.len().min(sb.len());
            let r = sa[..common]
                .cmp(&sb[..common])
                .then_with(|| sa.len().cmp(&sb.len()));
            if r != Ordering::Equal {
                return r;
            }
        }

        i = ia;
        j = jb;
    }
}

/// Leading zeros carry no magnitude, so `007` and `7` must tie.
fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&c| c != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

/// Linux `NAME_MAX`: sysupdate embeds the version in file names, so a longer
/// one could never be materialised on disk.
const NAME_MAX: usize = 255;

/// sysupdate substitutes versions into file names and partition labels via
/// `@v` patterns, so it restricts them to a semver-ish set that is safe in
/// both. Notably `~` and `^` are *not* in it even though the comparison
/// understands them: an image whose version uses them cannot be managed by
/// systemd-sysupdate at all.
fn is_sysupdate_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | ',' | '_' | '+' | '-')
}

/// Whether systemd-sysupdate would accept `v` as a version
/// (`version_is_valid()`).
///
/// Upstream has used both `filename_is_valid()` and the laxer
/// `filename_part_is_valid()` here over time; the stricter variant (also
/// rejecting `.` and `..`) is used so that a version passing this check is
/// accepted by every systemd release.
pub fn sysupdate_version_is_valid(v: &str) -> bool {
    let valid_filename =
        !v.is_empty() && v != "." && v != ".." && v.len() <= NAME_MAX && !v.contains(['/', '\0']);
    valid_filename && v.chars().all(is_sysupdate_char)
}

/// The characters that stop `v` from being a sysupdate version, each once, in
/// order of first appearance, so an error message can point at the culprit
/// instead of quoting the charset.
///
/// Empty when `v` is rejected for another reason (empty, `.`/`..`, too long)
/// or not at all.
pub fn invalid_sysupdate_chars(v: &str) -> Vec<char> {
    let mut out = Vec::new();
    for c in v.chars().filter(|&c| !is_sysupdate_char(c)) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[rstest]
    // Upstream systemd test-string-util.c / UAPI.10 vectors.
    #[case::equal_numbers("11", "11", Equal)]
    #[case::alpha_prefix_decides("bar-123", "foo-123", Less)]
    #[case::letter_suffix_is_newer("123a", "123", Greater)]
    #[case::dotted_letter_is_newer("123.a", "123", Greater)]
    #[case::letters_compare_in_order("123.a", "123.b", Less)]
    #[case::bare_segment_beats_dotted("123a", "123.a", Greater)]
    #[case::non_ascii_is_ignored("11α", "11β", Equal)]
    #[case::uppercase_sorts_before_lowercase("B", "a", Less)]
    #[case::empty_is_older_than_zero("", "0", Less)]
    #[case::trailing_dot_is_newer("0.", "0", Greater)]
    #[case::extra_zero_segment_is_newer("0.0", "0", Greater)]
    #[case::tilde_sorts_before_release("0", "~", Greater)]
    #[case::tilde_sorts_before_end_of_string("", "~", Greater)]
    #[case::trailing_separator_is_ignored("1_", "1", Equal)]
    #[case::leading_separator_is_ignored("_1", "1", Equal)]
    #[case::separator_is_not_a_dot("1_", "1.2", Less)]
    #[case::underscore_run_beats_dots("1_2_3", "1.3.3", Greater)]
    #[case::plus_is_ignored("1+", "1", Equal)]
    #[case::plus_run_beats_dots("1+2+3", "1.3.3", Greater)]
    // The documented ordering chain, adjacent pairs.
    #[case::chain_point_release_before_prerelease("122.1", "123~rc1-1", Less)]
    #[case::chain_prerelease_before_release("123~rc1-1", "123", Less)]
    #[case::chain_release_before_dash_alpha("123", "123-a", Less)]
    #[case::chain_dash_alpha_before_its_point("123-a", "123-a.1", Less)]
    #[case::chain_dash_alpha_before_dash_number("123-a.1", "123-1", Less)]
    #[case::chain_dash_number_before_its_point("123-1", "123-1.1", Less)]
    #[case::chain_dash_before_caret("123-1.1", "123^post1", Less)]
    #[case::chain_caret_before_dot("123^post1", "123.a-1", Less)]
    #[case::chain_dot_alpha_before_dot_number("123.a-1", "123.1-1", Less)]
    #[case::chain_dot_before_bare_alpha("123.1-1", "123a-1", Less)]
    #[case::chain_bare_alpha_before_next_major("123a-1", "124-1", Less)]
    // Versions seen in the wild (sysext bakery images).
    #[case::bakery_kubernetes("v1.32.2", "v1.32.10", Less)]
    #[case::bakery_docker("28.0.4", "28.0.10", Less)]
    #[case::numeric_not_lexicographic("1.9", "1.10", Less)]
    // Behaviour we rely on beyond the upstream table.
    #[case::leading_zeros_are_ignored("007", "7", Equal)]
    #[case::huge_numbers_do_not_overflow(
        "99999999999999999999999999",
        "99999999999999999999999998",
        Greater
    )]
    #[case::caret_is_newer_than_release("123^post1", "123", Greater)]
    #[case::dash_is_older_than_release_continuation("123-9", "123.1-1", Less)]
    #[case::tilde_prerelease_is_older("2.0~rc1", "2.0", Less)]
    #[case::both_tilde_compare_rest("2.0~rc1", "2.0~rc2", Less)]
    #[case::embedded_nul_ends_the_string("1\u{0}9", "1", Equal)]
    fn compare_matches_systemd(#[case] a: &str, #[case] b: &str, #[case] expected: Ordering) {
        assert_eq!(compare(a, b), expected, "compare({a:?}, {b:?})");
        assert_eq!(
            compare(b, a),
            expected.reverse(),
            "compare({b:?}, {a:?}) must be the reverse"
        );
    }

    /// Regression of the differential oracle's versions family (seed 1, pair 4211): after a
    /// shared `~`, systemd compares the next bytes as C chars, signed on x86-64.
    #[test]
    fn a_byte_after_a_shared_tilde_sorts_by_the_arch_char_signedness() {
        use crate::Arch;
        assert_eq!(compare_on(Arch::X86_64, "~", "~α"), Ordering::Greater);
        assert_eq!(compare_on(Arch::Arm64, "~", "~α"), Ordering::Less);
        assert_eq!(compare_on(Arch::X86_64, "9^b~α", "9^b~"), Ordering::Less);
        // Where no such byte follows a tilde, the arches agree.
        assert_eq!(
            compare_on(Arch::X86_64, "1~rc1", "1"),
            compare_on(Arch::Arm64, "1~rc1", "1")
        );
        assert_eq!(compare_on(Arch::X86_64, "11α", "11β"), Ordering::Equal);
    }

    #[test]
    fn sorting_reproduces_documented_chain() {
        let chain = [
            "122.1",
            "123~rc1-1",
            "123",
            "123-a",
            "123-a.1",
            "123-1",
            "123-1.1",
            "123^post1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124-1",
        ];
        let mut shuffled = chain;
        shuffled.reverse();
        shuffled.swap(2, 7);
        shuffled.sort_by(|a, b| compare(a, b));
        assert_eq!(shuffled, chain);
    }

    /// Short strings over the interesting alphabet exercise every branch; the
    /// point is that no combination loops forever or breaks antisymmetry,
    /// which `sort_by` relies on.
    #[test]
    fn comparison_is_reflexive_and_antisymmetric_on_small_strings() {
        let alphabet = ["1", "0", "a", "B", "~", "-", "^", ".", "_"];
        let mut words = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = words
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            words.extend(longer);
        }
        words.sort();
        words.dedup();
        for a in &words {
            assert_eq!(compare(a, a), Equal, "{a:?} vs itself");
            for b in &words {
                assert_eq!(compare(a, b), compare(b, a).reverse(), "{a:?} vs {b:?}");
            }
        }
    }

    #[rstest]
    #[case::plain_semver("1.2.3")]
    #[case::underscore_suffix("1.1_b")]
    #[case::comma_and_plus("1,2+build5")]
    #[case::dash_release("28.0.4-1")]
    #[case::leading_v("v1.32.2")]
    #[case::single_char("7")]
    #[case::name_max_long(&"1".repeat(255))]
    fn sysupdate_accepts(#[case] v: &str) {
        assert!(sysupdate_version_is_valid(v), "{v:?} should be valid");
        assert!(invalid_sysupdate_chars(v).is_empty());
    }

    #[rstest]
    #[case::empty("", &[])]
    #[case::dot(".", &[])]
    #[case::dot_dot("..", &[])]
    #[case::too_long(&"1".repeat(256), &[])]
    #[case::tilde_prerelease("2.0~rc1", &['~'])]
    #[case::caret_patch("1.5^post1", &['^'])]
    #[case::slash("1/2", &['/'])]
    #[case::nul("1\u{0}", &['\u{0}'])]
    #[case::whitespace("1 2", &[' '])]
    #[case::non_ascii("1.0α", &['α'])]
    #[case::repeated_chars_reported_once("1~2^3~4 ^", &['~', '^', ' '])]
    fn sysupdate_rejects(#[case] v: &str, #[case] culprits: &[char]) {
        assert!(!sysupdate_version_is_valid(v), "{v:?} should be invalid");
        assert_eq!(invalid_sysupdate_chars(v), culprits);
    }
}

/// Properties `sort_by` and the update logic rely on, over arbitrary strings.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::props::check;
    use proptest::prelude::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    /// Strings over the characters every branch of `compare` reacts to, so random triples
    /// often tie or interleave; plain arbitrary strings almost never relate interestingly.
    fn version_like() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "0", "1", "9", "00", "10", "a", "b", "B", "z", "~", "-", "^", ".", "_", "+", "α", "\0",
        ]);
        prop::collection::vec(pieces, 0..8).prop_map(|p| p.concat())
    }

    fn any_version() -> impl Strategy<Value = String> {
        prop_oneof![version_like(), any::<String>()]
    }

    #[test]
    fn compare_is_reflexive_and_antisymmetric() {
        check((any_version(), any_version()), |(a, b)| {
            prop_assert_eq!(compare(&a, &a), Equal);
            prop_assert_eq!(compare(&a, &b), compare(&b, &a).reverse());
            Ok(())
        });
    }

    #[test]
    fn compare_is_transitive() {
        check(
            (version_like(), version_like(), version_like()),
            |(a, b, c)| {
                let (ab, bc, ac) = (compare(&a, &b), compare(&b, &c), compare(&a, &c));
                if ab != Greater && bc != Greater {
                    // a <= b <= c: a <= c, strictly if either step was strict.
                    let want = if ab == Less || bc == Less {
                        Less
                    } else {
                        Equal
                    };
                    prop_assert_eq!(ac, want, "{:?} {:?} {:?}: {:?} {:?}", a, b, c, ab, bc);
                }
                Ok(())
            },
        );
    }

    /// Sorting with `compare` yields a chain, whatever the input order: what "pick the
    /// newest" needs, and what a non-total comparison would silently break.
    #[test]
    fn sorting_by_compare_yields_a_chain() {
        check(prop::collection::vec(any_version(), 0..12), |mut v| {
            v.sort_by(|a, b| compare(a, b));
            for (i, a) in v.iter().enumerate() {
                for b in &v[i + 1..] {
                    prop_assert_ne!(compare(a, b), Greater, "{:?} sorted before {:?}", a, b);
                }
            }
            Ok(())
        });
    }

    /// Dotted numbers order like their segment lists, at any magnitude (no overflow), with
    /// an extra segment newer than none (`1.2` < `1.2.0`).
    #[test]
    fn dotted_numbers_order_like_their_segments() {
        let segments = || prop::collection::vec(any::<u128>(), 1..5);
        check((segments(), segments()), |(a, b)| {
            let join = |s: &[u128]| s.iter().map(u128::to_string).collect::<Vec<_>>().join(".");
            prop_assert_eq!(compare(&join(&a), &join(&b)), a.cmp(&b));
            Ok(())
        });
    }

    #[test]
    fn leading_zeros_never_change_the_order() {
        check(
            (any::<u64>(), 1usize..4, version_like()),
            |(n, zeros, rest)| {
                let padded = format!("{}{n}{rest}", "0".repeat(zeros));
                prop_assert_eq!(compare(&padded, &format!("{n}{rest}")), Equal);
                Ok(())
            },
        );
    }

    /// Validity is exactly "a file name made of the allowed characters", and the culprits
    /// listed are the disallowed characters of `v`, each once, in order.
    #[test]
    fn validity_agrees_with_the_reported_culprits() {
        check(any_version(), |v| {
            let culprits = invalid_sysupdate_chars(&v);
            let shape_ok = !v.is_empty() && v != "." && v != ".." && v.len() <= NAME_MAX;
            prop_assert_eq!(
                sysupdate_version_is_valid(&v),
                shape_ok && culprits.is_empty()
            );
            let mut expected: Vec<char> = Vec::new();
            for c in v.chars().filter(|c| !is_sysupdate_char(*c)) {
                if !expected.contains(&c) {
                    expected.push(c);
                }
            }
            prop_assert_eq!(culprits, expected);
            Ok(())
        });
    }

    #[test]
    fn versions_from_the_sysupdate_alphabet_are_valid() {
        check("[A-Za-z0-9.,_+-]{1,255}", |v| {
            prop_assume!(v != "." && v != "..");
            prop_assert!(sysupdate_version_is_valid(&v));
            Ok(())
        });
    }
}
