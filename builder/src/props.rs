//! The driver every property test goes through (test builds only).
//!
//! `proptest!` runs a fixed number of cases; a fuzz run wants "as many as fit in N seconds"
//! instead, so each property calls [`check`], which runs rounds of [`CASES`] cases:
//!
//! * by default one round from a fixed seed, so `cargo test` is fast and deterministic;
//! * with `SYSEXT_TEST_FUZZ_SECS=N`, fresh rounds until N seconds have passed (each round
//!   from the next seed), which is what `cargo nextest run --profile fuzz` is for;
//! * with `SYSEXT_TEST_FUZZ_SEED=S`, starting from seed S, to replay a reported round.
//!
//! A failure is shrunk to a minimal input by proptest, and the failing case's seed is saved
//! in `builder/proptest-regressions/<module>.txt`, which every later run replays first: a
//! failure found once by a long fuzz run stays a regression test once that file is committed.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseResult, TestRng, TestRunner,
};

/// Cases per round: proptest's own default, milliseconds for every parser here.
pub const CASES: u32 = 256;

/// The first round's seed when `SYSEXT_TEST_FUZZ_SEED` is not set; any fixed value does.
const DEFAULT_SEED: u64 = 0x0005_7e57_f022;

/// The time budget of one property: `SYSEXT_TEST_FUZZ_SECS`, or `None` for one round.
pub fn budget() -> Option<Duration> {
    std::env::var("SYSEXT_TEST_FUZZ_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// The first round's seed: `SYSEXT_TEST_FUZZ_SEED`, else a fixed one.
pub fn first_seed() -> u64 {
    std::env::var("SYSEXT_TEST_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        let word = seed.rotate_left(16 * i as u32) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Runs `test` on values from `strategy`: one round, or rounds until the fuzz budget is
/// spent. Panics with the shrunk input and the round's seed on the first failure.
#[track_caller]
pub fn check<S>(strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let source = std::panic::Location::caller().file();
    let budget = budget();
    let first = first_seed();
    let start = Instant::now();
    let mut round = 0u64;
    loop {
        let seed = first.wrapping_add(round);
        let config = Config {
            cases: CASES,
            failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
                "proptest-regressions",
            ))),
            source_file: Some(source),
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(config, rng(seed));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!(
                "{e}\nround seed {seed} (replay: SYSEXT_TEST_FUZZ_SEED={seed}); the case's seed is \
                 saved under builder/proptest-regressions/ and replays first from now on"
            );
        }
        round += 1;
        match budget {
            Some(b) if start.elapsed() < b => {}
            _ => break,
        }
    }
    if budget.is_some() {
        eprintln!(
            "{source}: {} cases in {round} rounds, seeds {first}..{}, {:.1}s",
            u64::from(CASES) * round,
            first.wrapping_add(round),
            start.elapsed().as_secs_f64()
        );
    }
}
