//! Strict rate limiting, owner side: the authoritative count of every counter this node owns.
//!
//! In strict mode every node asks a counter's owner ([`owner`](super::owner::owner)) to admit a
//! request instead of deciding from its own (gossip-delayed) view, so the cluster cannot
//! overshoot a limit. When ownership moves (a member joined or left), the new owner starts a
//! window from what gossip says the cluster already admitted in it, not from zero.

use std::collections::HashMap;

use super::AdmitDecision;

/// One owned counter in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OwnedWindow {
    count: i64,
    ends_at_ms: i64,
}

/// The owner's counts per counter key and window.
#[derive(Debug, Default)]
pub struct StrictCounters {
    windows: HashMap<(String, i64), OwnedWindow>,
}

impl StrictCounters {
    /// No counters yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admit `cost` against `limit` for `key` in the window `[window_start_ms, window_end_ms)`
    /// at `now_ms`. `seed` gives the cluster-wide count from gossip and is called only the first
    /// time this owner sees the key in this window. Windows that have ended are forgotten.
    #[allow(clippy::too_many_arguments)]
    pub fn admit(
        &mut self,
        key: &str,
        window_start_ms: i64,
        window_end_ms: i64,
        limit: i64,
        cost: i64,
        seed: impl FnOnce() -> i64,
        now_ms: i64,
    ) -> AdmitDecision {
        self.prune(now_ms);
        let cost = cost.max(0);
        if window_end_ms <= now_ms {
            // The asker's window already ended by this node's clock: nothing left to protect,
            // and recording it would only keep a dead window around.
            return AdmitDecision {
                admitted: true,
                count: cost,
                limit,
                retry_after_ms: 0,
            };
        }
        let window = self
            .windows
            .entry((key.to_string(), window_start_ms))
            .or_insert_with(|| OwnedWindow {
                count: seed().max(0),
                ends_at_ms: window_end_ms,
            });
        let next = window.count.saturating_add(cost);
        if next <= limit {
            window.count = next;
            AdmitDecision {
                admitted: true,
                count: next,
                limit,
                retry_after_ms: 0,
            }
        } else {
            AdmitDecision {
                admitted: false,
                count: window.count,
                limit,
                retry_after_ms: (window.ends_at_ms - now_ms).max(0),
            }
        }
    }

    /// The owned count of `key` in the window starting at `window_start_ms`, if tracked.
    pub fn count(&self, key: &str, window_start_ms: i64) -> Option<i64> {
        self.windows
            .get(&(key.to_string(), window_start_ms))
            .map(|w| w.count)
    }

    /// Forget every window that ended at or before `now_ms`.
    pub fn prune(&mut self, now_ms: i64) {
        self.windows.retain(|_, w| w.ends_at_ms > now_ms);
    }

    /// How many (key, window) counts are held.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no counts are held.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 60_000;
    const END: i64 = 120_000;

    fn admit(counters: &mut StrictCounters, cost: i64, now: i64) -> AdmitDecision {
        counters.admit("rl/vk/a", START, END, 3, cost, || 0, now)
    }

    #[test]
    fn strict_counters_admit_up_to_the_limit_then_reject_with_retry_after() {
        let mut counters = StrictCounters::new();
        for expected in 1..=3 {
            let decision = admit(&mut counters, 1, START + 1_000);
            assert!(decision.admitted);
            assert_eq!(decision.count, expected);
        }
        let rejected = admit(&mut counters, 1, START + 10_000);
        assert_eq!(
            rejected,
            AdmitDecision {
                admitted: false,
                count: 3,
                limit: 3,
                retry_after_ms: END - (START + 10_000),
            }
        );
        assert_eq!(counters.count("rl/vk/a", START), Some(3));
    }

    #[test]
    fn strict_counters_seed_from_gossip_once_per_window() {
        let mut counters = StrictCounters::new();
        let mut seeded = 0;
        let first = counters.admit(
            "k",
            START,
            END,
            10,
            1,
            || {
                seeded += 1;
                8
            },
            START,
        );
        assert_eq!((first.admitted, first.count), (true, 9));
        let second = counters.admit("k", START, END, 10, 1, || 1_000, START);
        assert_eq!((second.admitted, second.count), (true, 10));
        assert_eq!(seeded, 1);
        let third = counters.admit("k", START, END, 10, 1, || 0, START);
        assert!(!third.admitted);
    }

    #[test]
    fn strict_counters_reject_a_seed_already_over_the_limit() {
        let mut counters = StrictCounters::new();
        let decision = counters.admit("k", START, END, 5, 1, || 7, START);
        assert!(!decision.admitted);
        assert_eq!(decision.count, 7);
        assert_eq!(decision.retry_after_ms, END - START);
    }

    #[test]
    fn strict_counters_keep_windows_and_keys_apart() {
        let mut counters = StrictCounters::new();
        assert!(counters.admit("a", START, END, 1, 1, || 0, START).admitted);
        assert!(counters.admit("b", START, END, 1, 1, || 0, START).admitted);
        assert!(!counters.admit("a", START, END, 1, 1, || 0, START).admitted);
        // The next window of the same key starts fresh.
        assert!(
            counters
                .admit("a", END, END + 60_000, 1, 1, || 0, START)
                .admitted
        );
        assert_eq!(counters.len(), 3);
    }

    #[test]
    fn strict_counters_prune_windows_past_their_end() {
        let mut counters = StrictCounters::new();
        admit(&mut counters, 1, START);
        counters.admit("next", END, END + 60_000, 3, 1, || 0, START);
        assert_eq!(counters.len(), 2);
        // The first window ended; admitting anything prunes it.
        counters.admit("next", END, END + 60_000, 3, 1, || 0, END);
        assert_eq!(counters.len(), 1);
        assert_eq!(counters.count("rl/vk/a", START), None);
        counters.prune(END + 60_000);
        assert!(counters.is_empty());
    }

    #[test]
    fn strict_counters_admit_without_recording_a_window_that_already_ended() {
        let mut counters = StrictCounters::new();
        let decision = counters.admit("k", START, END, 0, 1, || 99, END + 1);
        assert!(decision.admitted);
        assert!(counters.is_empty());
    }
}
