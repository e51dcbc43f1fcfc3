//! Routing strategies: how one provider is chosen among the healthy, not cooling, not
//! limited providers of the best priority tier (`balance` finds that tier; failover and
//! exclusions are unchanged by the strategy).
//!
//! - `weighted_round_robin` (default): shares set by `weight`, interleaved (see `balance`).
//! - `least_used`: the fewest requests for the model today (see `least_used`).
//! - `lowest_latency`: the lowest decaying latency average, with exploration (see
//!   `lowest_latency`).
//! - `least_busy`: power of two choices over in-flight × latency (see `least_busy`).
//!
//! Each strategy is a pure function of the candidates' `Figures` and one random number, so it
//! is tested alone, costs no I/O, and explains itself through `score`.

pub mod least_busy;
pub mod least_used;
pub mod lowest_latency;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a model's requests are spread over the best tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    WeightedRoundRobin,
    LeastUsed,
    LowestLatency,
    LeastBusy,
}

impl Strategy {
    /// Every strategy, for listings and benchmarks.
    pub const ALL: [Strategy; 4] = [
        Strategy::WeightedRoundRobin,
        Strategy::LeastUsed,
        Strategy::LowestLatency,
        Strategy::LeastBusy,
    ];

    /// The name used in the configuration and the explain view.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::WeightedRoundRobin => "weighted_round_robin",
            Strategy::LeastUsed => "least_used",
            Strategy::LowestLatency => "lowest_latency",
            Strategy::LeastBusy => "least_busy",
        }
    }
}

/// The strategy of every model: the global one and the per-model overrides.
#[derive(Debug, Clone, Default)]
pub struct Strategies {
    pub global: Strategy,
    pub models: std::collections::HashMap<String, Strategy>,
}

impl Strategies {
    pub fn from_config(routing: &crate::config::RoutingConfig) -> Self {
        Strategies {
            global: routing.strategy,
            models: routing
                .models
                .iter()
                .filter_map(|(name, m)| m.strategy.map(|s| (name.clone(), s)))
                .collect(),
        }
    }

    pub fn for_model(&self, model: &str) -> Strategy {
        self.models.get(model).copied().unwrap_or(self.global)
    }
}

/// What a strategy knows of one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub id: i64,
    pub weight: u32,
    /// Requests for the model today (UTC): stored daily rows of every instance plus this
    /// instance's requests not yet in them.
    pub requests_today: u64,
    /// Decaying average latency in ms (time to first byte for streams); `None` before the
    /// first sample.
    pub latency_ms: Option<f64>,
    /// Time since the last latency sample.
    pub latency_idle: Duration,
    /// Requests in flight on this instance.
    pub inflight: u64,
}

/// Chooses among `tier` (the candidates a strategy may pick from; never empty when it
/// matters). `random` is a uniformly random number for ties and exploration. Returns `None`
/// for an empty tier or for `weighted_round_robin`, whose state lives in `balance`.
pub fn choose(strategy: Strategy, tier: &[Figures], random: u64) -> Option<i64> {
    match strategy {
        Strategy::WeightedRoundRobin => None,
        Strategy::LeastUsed => least_used::choose(tier, random),
        Strategy::LowestLatency => lowest_latency::choose(tier, random),
        Strategy::LeastBusy => least_busy::choose(tier, random),
    }
}

/// The figure a strategy ranks `f` by among `tier` (lower is better), for the explain view.
/// `None` for `weighted_round_robin`.
pub fn score(strategy: Strategy, f: &Figures, tier: &[Figures]) -> Option<f64> {
    match strategy {
        Strategy::WeightedRoundRobin => None,
        Strategy::LeastUsed => Some(f.requests_today as f64),
        Strategy::LowestLatency => Some(lowest_latency::effective_latency(f, tier)),
        Strategy::LeastBusy => Some(least_busy::cost(f, tier)),
    }
}

/// Mean latency of the candidates that have one: what an unknown or long-idle provider is
/// assumed to be worth. `None` when no candidate has a sample.
pub(crate) fn mean_latency(tier: &[Figures]) -> Option<f64> {
    let (n, sum) = tier
        .iter()
        .filter_map(|f| f.latency_ms)
        .filter(|l| l.is_finite())
        .fold((0u32, 0.0), |(n, s), l| (n + 1, s + l));
    (n > 0).then(|| sum / f64::from(n))
}

/// Picks uniformly among the candidates that tie with the best by `key` (lower is better),
/// after preferring the higher weight. The random number makes ties spread instead of always
/// landing on the lowest id (which, in a fleet, every instance would pick at once).
pub(crate) fn best_by<K: PartialOrd + Copy>(
    tier: &[Figures],
    random: u64,
    key: impl Fn(&Figures) -> K,
) -> Option<i64> {
    let better = |a: &Figures, b: &Figures| -> std::cmp::Ordering {
        let (ka, kb) = (key(a), key(b));
        ka.partial_cmp(&kb)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.weight.cmp(&a.weight))
    };
    let best = tier.iter().min_by(|a, b| better(a, b))?;
    let ties = tier
        .iter()
        .filter(|f| better(f, best) == std::cmp::Ordering::Equal)
        .count()
        .max(1);
    tier.iter()
        .filter(|f| better(f, best) == std::cmp::Ordering::Equal)
        .nth((random % ties as u64) as usize)
        .map(|f| f.id)
}

/// A small, fast, lock-free source of random numbers for picks (splitmix64 over an atomic
/// counter). Not for secrets: only ties and exploration depend on it.
#[derive(Debug)]
pub struct Dice(AtomicU64);

impl Default for Dice {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        // A fixed seed if the OS has no randomness: picks stay correct, only less varied.
        let _ = getrandom::fill(&mut seed);
        Dice(AtomicU64::new(u64::from_le_bytes(seed)))
    }
}

impl Dice {
    /// A generator with a fixed seed, for tests and benchmarks.
    pub fn seeded(seed: u64) -> Self {
        Dice(AtomicU64::new(seed))
    }

    /// The next random number.
    pub fn roll(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A candidate with the given figures and weight 1.
    pub fn fig(id: i64, requests_today: u64, latency_ms: Option<f64>, inflight: u64) -> Figures {
        Figures {
            id,
            weight: 1,
            requests_today,
            latency_ms,
            latency_idle: Duration::ZERO,
            inflight,
        }
    }

    /// How often each id is chosen over `n` picks, the figures left as they are.
    pub fn spread(strategy: Strategy, tier: &[Figures], n: usize) -> std::collections::BTreeMap<i64, usize> {
        let dice = Dice::seeded(7);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..n {
            if let Some(id) = choose(strategy, tier, dice.roll()) {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::testing::fig;
    use super::*;

    #[test]
    fn names_round_trip_through_the_config_format() {
        for s in Strategy::ALL {
            let v: Strategy = serde_json::from_value(serde_json::json!(s.as_str())).unwrap();
            assert_eq!(v, s);
        }
        assert!(serde_json::from_value::<Strategy>(serde_json::json!("fastest")).is_err());
    }

    #[test]
    fn an_empty_tier_chooses_nothing() {
        for s in Strategy::ALL {
            assert_eq!(choose(s, &[], 1), None);
        }
    }

    #[test]
    fn ties_prefer_weight_then_spread() {
        let mut a = fig(1, 5, None, 0);
        a.weight = 3;
        let tier = [a, fig(2, 5, None, 0), fig(3, 5, None, 0)];
        assert_eq!(best_by(&tier, 99, |f| f.requests_today), Some(1));
        let tier = [fig(1, 5, None, 0), fig(2, 5, None, 0), fig(3, 9, None, 0)];
        let chosen: std::collections::BTreeSet<_> = (0..10)
            .filter_map(|r| best_by(&tier, r, |f| f.requests_today))
            .collect();
        assert_eq!(chosen.into_iter().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn dice_vary() {
        let d = Dice::seeded(1);
        let rolls: std::collections::BTreeSet<u64> = (0..100).map(|_| d.roll() % 10).collect();
        assert_eq!(rolls.len(), 10);
    }

    #[test]
    fn nan_and_absurd_figures_do_not_panic() {
        let tier = [
            fig(1, u64::MAX, Some(f64::NAN), u64::MAX),
            fig(2, 0, Some(f64::INFINITY), 0),
            fig(3, 1, Some(-5.0), 1),
        ];
        for s in Strategy::ALL {
            for r in 0..50 {
                let _ = choose(s, &tier, r);
                for f in &tier {
                    let _ = score(s, f, &tier);
                }
            }
        }
    }
}
