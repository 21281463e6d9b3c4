//! A unit as systemd reads it from one image (its file, then its drop-ins by name) and the
//! comparisons a release diff makes of it: every property, and `Limit*` by value.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use sysext_builder::unitfile::IniFile;

use crate::lint::rules::units::EXEC_KEYS;

/// One unit of an image: its file (path, parsed) when the image ships it, and the drop-ins
/// the image gives it (`UNIT.d/NAME.conf`, by `NAME.conf`).
#[derive(Debug, Default)]
pub struct Unit {
    pub file: Option<(String, IniFile)>,
    pub dropins: BTreeMap<String, IniFile>,
}

/// Keys whose assignments add to a list (an empty assignment clears it), as systemd's
/// parsers treat them, besides the `Exec*=` commands; every other key takes its last
/// assignment.
const LIST_KEYS: &[&str] = &[
    "Environment",
    "EnvironmentFile",
    "After",
    "Before",
    "Wants",
    "Requires",
    "Requisite",
    "BindsTo",
    "PartOf",
    "Upholds",
    "Conflicts",
    "WantedBy",
    "RequiredBy",
    "UpheldBy",
    "Also",
    "ListenStream",
    "ListenDatagram",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "SupplementaryGroups",
    "DeviceAllow",
];

fn is_list(key: &str) -> bool {
    EXEC_KEYS.contains(&key) || LIST_KEYS.contains(&key)
}

impl Unit {
    /// `Section.Key` → the value systemd ends up with, file first and drop-ins after it in
    /// file-name order (lists joined with ` ; `).
    pub fn effective(&self) -> BTreeMap<String, String> {
        let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let files = self
            .file
            .iter()
            .map(|(_, f)| f)
            .chain(self.dropins.values());
        for ini in files {
            for a in &ini.assignments {
                let key = format!("{}.{}", a.section, a.key);
                let values = lists.entry(key).or_default();
                if is_list(&a.key) {
                    if a.value.is_empty() {
                        values.clear();
                    } else {
                        values.push(a.value.clone());
                    }
                } else {
                    *values = vec![a.value.clone()];
                }
            }
        }
        lists
            .into_iter()
            .filter(|(_, v)| v.iter().any(|x| !x.is_empty()))
            .map(|(k, v)| (k, v.join(" ; ")))
            .collect()
    }
}

/// A resource limit as `LimitX=` takes it: `soft:hard` or one value for both; `infinity` is
/// the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u128,
    pub hard: u128,
}

const INFINITY: u128 = u128::MAX;

impl Limit {
    /// Parses systemd's rlimit syntax (sizes take K, M, G, T, P, E in 1024s; `LimitCPU=` and
    /// `LimitRTTIME=` take time units). None for what systemd would refuse.
    pub fn parse(key: &str, value: &str) -> Option<Limit> {
        let one = |v: &str| parse_one(key, v.trim());
        match value.split_once(':') {
            Some((s, h)) => Some(Limit {
                soft: one(s)?,
                hard: one(h)?,
            }),
            None => {
                let v = one(value)?;
                Some(Limit { soft: v, hard: v })
            }
        }
    }

    /// The value a unit gets without the setting, where systemd's default is the same on
    /// every host (`LimitNOFILE=` 1024:524288 since systemd 240); None where it depends on
    /// the manager's configuration or the kernel.
    pub fn default_for(key: &str) -> Option<Limit> {
        match key {
            "LimitNOFILE" => Some(Limit {
                soft: 1024,
                hard: 524_288,
            }),
            _ => None,
        }
    }

    /// Whether `self` allows less than `old` on either side.
    pub fn lower_than(&self, old: &Limit) -> bool {
        self.soft.cmp(&old.soft) == Ordering::Less || self.hard.cmp(&old.hard) == Ordering::Less
    }
}

/// The limits in `systemctl show` output (`LimitNOFILE=524288`, `LimitNOFILESoft=1024`),
/// by key, soft and hard together.
pub fn shown_limits(show: &str) -> BTreeMap<String, Limit> {
    let props: BTreeMap<&str, &str> = show
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .collect();
    props
        .iter()
        .filter(|(k, _)| k.starts_with("Limit") && !k.ends_with("Soft"))
        .filter_map(|(k, hard)| {
            let soft = props.get(format!("{k}Soft").as_str()).unwrap_or(hard);
            // systemctl prints plain numbers in the unit's base (bytes, seconds, µs).
            let n = |v: &str| -> Option<u128> {
                if v == "infinity" {
                    Some(INFINITY)
                } else {
                    v.parse().ok()
                }
            };
            Some((
                k.to_string(),
                Limit {
                    soft: n(soft)?,
                    hard: n(hard)?,
                },
            ))
        })
        .collect()
}

fn parse_one(key: &str, v: &str) -> Option<u128> {
    if v == "infinity" {
        return Some(INFINITY);
    }
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u128 = digits.parse().ok()?;
    let unit = unit.trim();
    let factor: u128 = if matches!(key, "LimitCPU" | "LimitRTTIME") {
        // LimitCPU= counts seconds, LimitRTTIME= microseconds; compare both in microseconds.
        let base = if key == "LimitCPU" { 1_000_000 } else { 1 };
        match unit {
            "" => base,
            "us" | "usec" => 1,
            "ms" | "msec" => 1_000,
            "s" | "sec" => 1_000_000,
            "min" | "m" => 60_000_000,
            "h" | "hr" => 3_600_000_000,
            _ => return None,
        }
    } else {
        match unit {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            "P" => 1 << 50,
            "E" => 1 << 60,
            _ => return None,
        }
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("LimitNOFILE", "infinity", "1048576", true)]
    #[case("LimitNOFILE", "1048576", "infinity", false)]
    #[case("LimitNOFILE", "1024:524288", "1024:1048576", false)]
    #[case("LimitNOFILE", "4096:524288", "1024:524288", true)]
    #[case("LimitMEMLOCK", "64M", "65536K", false)]
    #[case("LimitMEMLOCK", "1G", "64M", true)]
    #[case("LimitCPU", "1min", "30", true)]
    fn limits_compare_by_value(
        #[case] key: &str,
        #[case] old: &str,
        #[case] new: &str,
        #[case] lowered: bool,
    ) {
        let (o, n) = (
            Limit::parse(key, old).unwrap(),
            Limit::parse(key, new).unwrap(),
        );
        assert_eq!(n.lower_than(&o), lowered, "{old} -> {new}");
    }

    #[test]
    fn dropins_override_the_file_and_empty_clears_a_list() {
        let mut u = Unit {
            file: Some((
                "/usr/lib/systemd/system/a.service".into(),
                IniFile::parse("[Service]\nExecStart=/a\nLimitNOFILE=1024\nType=simple\n"),
            )),
            ..Default::default()
        };
        u.dropins.insert(
            "10-x.conf".into(),
            IniFile::parse("[Service]\nExecStart=\nExecStart=/b\nLimitNOFILE=infinity\n"),
        );
        let e = u.effective();
        assert_eq!(e["Service.ExecStart"], "/b");
        assert_eq!(e["Service.LimitNOFILE"], "infinity");
        assert_eq!(e["Service.Type"], "simple");
    }
}
