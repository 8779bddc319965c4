//! Weighted random choice among a provider's keys that allow the model and whose circuit lets
//! the request through.

use std::time::{Duration, Instant};

use super::circuit::BreakerPermit;
use super::table::UpstreamKey;

/// Why no key could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoKey {
    /// No key of the provider serves this model.
    ModelNotServed,
    /// Every eligible key's circuit is open; the earliest reopens after this long.
    AllCircuitsOpen {
        /// Time until the first probe is allowed.
        retry_after: Duration,
    },
}

/// Positions of the keys that may serve `model`, among `allowed` key ids when given (a virtual
/// key's `key_ids`).
pub fn serving_keys<'a>(
    keys: &'a [UpstreamKey],
    model: &'a str,
    allowed: Option<&'a [String]>,
) -> impl Iterator<Item = usize> + 'a {
    (0..keys.len()).filter(move |&i| {
        keys[i].allows_model(model) && allowed.is_none_or(|ids| ids.contains(&keys[i].id))
    })
}

/// Pick a key for `model`, among `allowed` key ids when given. Keys in `avoid` (already failed
/// in this request) are chosen only when nothing else is available.
pub fn pick_key(
    keys: &[UpstreamKey],
    model: &str,
    allowed: Option<&[String]>,
    avoid: &[usize],
    now: Instant,
) -> Result<(usize, BreakerPermit), NoKey> {
    let eligible: Vec<usize> = serving_keys(keys, model, allowed).collect();
    if eligible.is_empty() {
        return Err(NoKey::ModelNotServed);
    }
    let (mut fresh, mut tried): (Vec<usize>, Vec<usize>) =
        eligible.iter().partition(|i| !avoid.contains(i));
    for candidates in [&mut fresh, &mut tried] {
        while !candidates.is_empty() {
            let slot = weighted_choice(candidates, |&i| keys[i].weight);
            let index = candidates[slot];
            if let Some(permit) = keys[index].breaker.try_acquire(now) {
                return Ok((index, permit));
            }
            candidates.swap_remove(slot);
        }
    }
    let retry_after = eligible
        .iter()
        .map(|&i| keys[i].breaker.retry_after(now))
        .min()
        .unwrap_or(Duration::ZERO);
    Err(NoKey::AllCircuitsOpen { retry_after })
}

/// Position in `items` chosen with probability proportional to `weight` (`items` not empty).
pub fn weighted_choice<T>(items: &[T], weight: impl Fn(&T) -> f64) -> usize {
    if items.len() <= 1 {
        return 0;
    }
    let total: f64 = items.iter().map(&weight).sum();
    // Weights that got past validation (huge, so the sum is infinite, or not positive) would
    // send everything to the last item: share evenly instead.
    if !(total.is_finite() && total > 0.0) {
        return fastrand::usize(..items.len());
    }
    let mut point = fastrand::f64() * total;
    for (slot, item) in items.iter().enumerate() {
        point -= weight(item);
        if point < 0.0 {
            return slot;
        }
    }
    items.len() - 1
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::metrics::gauge::Gauge;

    use super::*;
    use crate::config::CircuitBreakerConfig;
    use crate::routing::circuit::{CircuitBreaker, Outcome};

    fn key(name: &str, weight: f64, models: &[&str]) -> UpstreamKey {
        UpstreamKey {
            id: name.into(),
            name: name.into(),
            auth: None,
            models: models.iter().map(|m| m.to_string()).collect(),
            weight,
            urls: None,
            azure: None,
            bedrock: None,
            tokens: None,
            vertex: None,
            breaker: Arc::new(CircuitBreaker::new(
                CircuitBreakerConfig {
                    failure_threshold: 1,
                    ..Default::default()
                },
                Gauge::default(),
                name.into(),
            )),
        }
    }

    #[test]
    fn traffic_follows_weights() {
        let keys = [key("a", 3.0, &["*"]), key("b", 1.0, &["*"])];
        let now = Instant::now();
        let mut counts = [0usize; 2];
        for _ in 0..20_000 {
            let (i, permit) = pick_key(&keys, "m", None, &[], now).expect("a key");
            permit.finish(Outcome::Success);
            counts[i] += 1;
        }
        let share = counts[0] as f64 / 20_000.0;
        assert!(
            (0.72..0.78).contains(&share),
            "expected ~75% on key a, got {share}"
        );
    }

    #[test]
    fn weights_summing_past_f64_share_traffic_evenly() {
        let keys = [key("a", f64::MAX, &["*"]), key("b", f64::MAX, &["*"])];
        let now = Instant::now();
        let mut counts = [0usize; 2];
        for _ in 0..2_000 {
            let (i, permit) = pick_key(&keys, "m", None, &[], now).expect("a key");
            permit.finish(Outcome::Success);
            counts[i] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn only_keys_allowing_the_model_are_chosen() {
        let keys = [
            key("a", 1.0, &["gpt-4o"]),
            key("b", 1.0, &["*"]),
            key("c", 1.0, &["x"]),
            key("d", 1.0, &[]),
        ];
        let now = Instant::now();
        for _ in 0..200 {
            let (i, _) = pick_key(&keys, "gpt-4o-mini", None, &[], now).expect("b serves all");
            assert_eq!(i, 1);
        }
        assert_eq!(
            pick_key(&keys[2..], "gpt-4o", None, &[], now).err(),
            Some(NoKey::ModelNotServed)
        );
        assert_eq!(
            pick_key(&keys[3..], "gpt-4o", None, &[], now).err(),
            Some(NoKey::ModelNotServed),
            "an empty models list serves nothing"
        );
    }

    #[test]
    fn open_circuits_are_skipped_and_reported_when_all_are_open() {
        let keys = [key("a", 1.0, &["*"]), key("b", 1.0, &["*"])];
        let now = Instant::now();
        keys[0]
            .breaker
            .try_acquire(now)
            .expect("closed")
            .finish(Outcome::Failure);
        for _ in 0..100 {
            assert_eq!(pick_key(&keys, "m", None, &[], now).expect("b").0, 1);
        }
        keys[1]
            .breaker
            .try_acquire(now)
            .expect("closed")
            .finish(Outcome::Failure);
        match pick_key(&keys, "m", None, &[], now) {
            Err(NoKey::AllCircuitsOpen { retry_after }) => {
                assert!(retry_after > Duration::ZERO)
            }
            other => panic!("expected all open, got {:?}", other.map(|(i, _)| i)),
        }
    }

    #[test]
    fn a_virtual_keys_key_ids_restrict_the_choice() {
        let keys = [key("a", 1000.0, &["*"]), key("b", 1.0, &["*"])];
        let allowed = ["b".to_string()];
        for _ in 0..100 {
            let (i, _) = pick_key(&keys, "m", Some(&allowed), &[], Instant::now()).expect("b");
            assert_eq!(i, 1);
        }
    }

    #[test]
    fn keys_that_failed_in_this_request_are_avoided_when_possible() {
        let keys = [key("a", 1000.0, &["*"]), key("b", 1.0, &["*"])];
        let now = Instant::now();
        assert_eq!(pick_key(&keys, "m", None, &[0], now).expect("b").0, 1);
        assert_eq!(
            pick_key(&keys[..1], "m", None, &[0], now)
                .expect("a again")
                .0,
            0
        );
    }
}
