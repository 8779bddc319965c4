//! The fuzz targets on stable, bounded: every seed in `gateway/fuzz/seeds/<target>/`, then a
//! fixed number of deterministic mutations of them (byte flips, inserts, deletions, splices,
//! truncations, interesting values). A panic in a target fails the test with the input that
//! caused it. The long runs use cargo-fuzz on nightly (`make fuzz`); this keeps every target
//! exercised in `make test` within seconds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use bifrost_gateway::fuzz_targets::{Target, TARGETS};

/// Mutated inputs per target (each target runs its input several ways).
const MUTATIONS: usize = 3_000;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .collect(),
        Err(error) => panic!("seed directory {}: {error}", dir.display()),
    };
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds.push(Vec::new());
    seeds
}

/// Values that break parsers: number edges, JSON and SSE syntax, control bytes.
const INTERESTING: &[&[u8]] = &[
    b"18446744073709551615",
    b"-1e308",
    b"1e999",
    b"NaN",
    b"null",
    b"[]",
    b"{}",
    b"\"",
    b"\\u0000",
    b"\x00",
    b"\xff\xfe",
    b"\r\n\r\n",
    b"data: ",
    b"event: ",
    b"\n\n",
    b"env.",
    b"99999999Y",
];

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seeds[rng.usize(..seeds.len())].clone();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=input.len());
        match rng.u8(..6) {
            0 if !input.is_empty() => {
                let i = rng.usize(..input.len());
                input[i] ^= 1 << rng.u8(..8);
            }
            1 => input.insert(at, rng.u8(..)),
            2 if at < input.len() => {
                let end = (at + rng.usize(1..=16)).min(input.len());
                input.drain(at..end);
            }
            3 => input.truncate(at),
            4 => {
                let other = &seeds[rng.usize(..seeds.len())];
                let from = rng.usize(..=other.len());
                let piece = &other[from..(from + rng.usize(..=64)).min(other.len())];
                input.splice(at..at, piece.iter().copied());
            }
            _ => {
                let value = INTERESTING[rng.usize(..INTERESTING.len())];
                input.splice(at..at, value.iter().copied());
            }
        }
    }
    input
}

fn run(name: &str, target: Target) {
    let seeds = seeds(name);
    let mut rng = fastrand::Rng::with_seed(0x00b1_f405);
    let inputs = seeds
        .iter()
        .cloned()
        .chain((0..MUTATIONS).map(|_| mutate(&mut rng, &seeds)));
    for input in inputs {
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            panic!(
                "fuzz target {name} panicked on {} bytes: {:?}",
                input.len(),
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    for (name, target) in TARGETS {
        run(name, *target);
    }
}
