//! Each broken fixture's pins (`expect-failure`: the words the guest must say) hold on what
//! the guest said for that fixture's failure, and on nothing any other fixture's failure
//! made the guest say: a pin that a neighbour's failure also satisfies would let that other
//! failure pass as "failed as expected".
//!
//! The guest's words are recorded under `fixtures/evidence/<fixture>.<case>.txt`, each the
//! evidence lines of a real run of that case (the "the guest said:" block of its
//! "failed as expected" note), so this check needs no guest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sysext_cases::fixtures;
use sysext_cases::outcome::Assertion;

fn evidence_dir() -> PathBuf {
    fixtures::root().join("evidence")
}

/// (fixture, case) → the recorded evidence.
fn recorded() -> BTreeMap<(String, String), Assertion> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(evidence_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".txt"))
        else {
            continue;
        };
        let (fixture, case) = stem.rsplit_once('.').unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        out.insert(
            (fixture.to_string(), case.to_string()),
            Assertion::new("recorded").with_evidence(&text),
        );
    }
    out
}

/// Every pinned (fixture, case) with its pins.
fn pinned() -> Vec<((String, String), Vec<String>)> {
    let mut out = Vec::new();
    for fx in fixtures::extensions().unwrap() {
        let Some(m) = fx.manifest().unwrap() else {
            continue;
        };
        for f in &m.expect_failure {
            out.push(((fx.name.clone(), f.case.to_string()), f.systemd.clone()));
        }
    }
    out
}

#[test]
fn every_pinned_failure_has_recorded_evidence_that_holds_its_pins() {
    let recorded = recorded();
    let mut missing = Vec::new();
    for (key, pins) in pinned() {
        match recorded.get(&key) {
            None => missing.push(format!("{}.{}.txt", key.0, key.1)),
            Some(a) => assert!(
                a.missing_pins(&pins).is_empty(),
                "{key:?}: its own evidence lacks {:?}",
                a.missing_pins(&pins)
            ),
        }
    }
    assert!(
        missing.is_empty(),
        "no evidence recorded in fixtures/evidence/ for {missing:?}"
    );
}

#[test]
fn no_fixtures_pins_hold_on_a_neighbours_failure() {
    let recorded = recorded();
    // Everything `systemctl show` prints of a unit it cannot find: inactive, dead and
    // upheld by nothing, like a unit that exists and nothing starts, but not loaded.
    let mut others: Vec<((String, String), Assertion)> = recorded.into_iter().collect();
    others.push((
        ("(a unit that does not exist)".into(), "services".into()),
        Assertion::new("x").with_evidence(
            "Result=success\nExecMainCode=0\nExecMainStatus=0\nRequiredBy=\nWantedBy=\nUpheldBy=\nTriggeredBy=\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnit dropin.service could not be found.",
        ),
    ));
    let mut swapped = Vec::new();
    for (key, pins) in pinned() {
        for (other, evidence) in &others {
            // The same fixture's failure at boot and at run time is the same failure.
            if other.0 == key.0 {
                continue;
            }
            if evidence.missing_pins(&pins).is_empty() {
                swapped.push(format!(
                    "{}.{}'s pins hold on {}.{}",
                    key.0, key.1, other.0, other.1
                ));
            }
        }
    }
    assert!(swapped.is_empty(), "{swapped:#?}");
}
