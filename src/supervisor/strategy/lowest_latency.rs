//! `lowest_latency`: the provider with the lowest decaying latency average (time to first
//! byte for streams), ties to the higher weight.
//!
//! A strategy that always takes the fastest never learns that a slow provider got fast again:
//! the slow one gets no traffic, so its average never moves. Two things find it again:
//! - *exploration*: one pick in `EXPLORE_EVERY` goes to a random other candidate, so every
//!   provider keeps getting a trickle of samples;
//! - *decay toward the mean*: an average without fresh samples drifts toward the tier's mean
//!   with half-life `IDLE_HALF_LIFE`, so a provider that was slow long ago competes again.
//!
//! A provider without any sample yet counts as the fastest (it is tried, then ranked by what
//! it showed), so a new or restarted provider is measured at once.

use std::time::Duration;

use super::{Figures, best_by, mean_latency};

/// One pick in this many explores (5 %).
pub const EXPLORE_EVERY: u64 = 20;
/// How fast an idle provider's average forgets, toward the tier mean.
pub const IDLE_HALF_LIFE: Duration = Duration::from_secs(30);

/// The latency `f` is ranked by: its average, pulled toward the tier mean the longer it went
/// without a sample; 0 without any sample. Never NaN.
pub fn effective_latency(f: &Figures, tier: &[Figures]) -> f64 {
    let Some(own) = f.latency_ms.filter(|l| l.is_finite()) else {
        return 0.0;
    };
    let own = own.max(0.0);
    let mean = mean_latency(tier).unwrap_or(own).max(0.0);
    let halvings = f.latency_idle.as_secs_f64() / IDLE_HALF_LIFE.as_secs_f64();
    let keep = 0.5f64.powf(halvings.min(64.0));
    mean + (own - mean) * keep
}

pub fn choose(tier: &[Figures], random: u64) -> Option<i64> {
    let scores: Vec<f64> = tier.iter().map(|f| effective_latency(f, tier)).collect();
    let best = best_by(tier, random, |f| {
        tier.iter()
            .position(|g| g.id == f.id)
            .map_or(f64::INFINITY, |i| scores[i])
    })?;
    // The high bits decide exploration, the low bits which one: independent enough for
    // splitmix output.
    if tier.len() > 1 && (random >> 32).is_multiple_of(EXPLORE_EVERY) {
        let others = tier.len() as u64 - 1;
        return tier
            .iter()
            .filter(|f| f.id != best)
            .nth((random % others) as usize)
            .map(|f| f.id);
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::super::Strategy;
    use super::super::testing::{fig, spread};
    use super::*;

    #[test]
    fn the_fastest_takes_almost_everything() {
        let tier = [
            fig(1, 0, Some(900.0), 0),
            fig(2, 0, Some(100.0), 0),
            fig(3, 0, Some(400.0), 0),
        ];
        let counts = spread(Strategy::LowestLatency, &tier, 2000);
        let fast = counts.get(&2).copied().unwrap_or(0);
        assert!((1850..=1950).contains(&fast), "{counts:?}");
        // Exploration reaches each of the others.
        assert!(counts.get(&1).copied().unwrap_or(0) > 20, "{counts:?}");
        assert!(counts.get(&3).copied().unwrap_or(0) > 20, "{counts:?}");
    }

    #[test]
    fn an_unmeasured_provider_is_tried_first() {
        let tier = [fig(1, 0, Some(50.0), 0), fig(2, 0, None, 0)];
        assert_eq!(effective_latency(&tier[1], &tier), 0.0);
        let counts = spread(Strategy::LowestLatency, &tier, 100);
        assert!(counts.get(&2).copied().unwrap_or(0) > 90, "{counts:?}");
    }

    #[test]
    fn an_idle_average_decays_toward_the_mean() {
        let mut slow = fig(1, 0, Some(1000.0), 0);
        let fast = fig(2, 0, Some(200.0), 0);
        let tier = [slow.clone(), fast.clone()];
        assert_eq!(effective_latency(&slow, &tier), 1000.0);
        slow.latency_idle = IDLE_HALF_LIFE;
        let tier = [slow.clone(), fast.clone()];
        // mean 600, halfway from 1000 toward it.
        assert!((effective_latency(&slow, &tier) - 800.0).abs() < 1e-6);
        slow.latency_idle = Duration::from_secs(3600 * 24 * 365);
        let tier = [slow.clone(), fast];
        assert!((effective_latency(&slow, &tier) - 600.0).abs() < 1e-6);
    }

    #[test]
    fn ties_go_to_the_heavier() {
        let mut b = fig(2, 0, Some(100.0), 0);
        b.weight = 5;
        let tier = [fig(1, 0, Some(100.0), 0), b];
        let counts = spread(Strategy::LowestLatency, &tier, 1000);
        assert!(counts.get(&2).copied().unwrap_or(0) > 900, "{counts:?}");
    }

    #[test]
    fn one_candidate_is_always_chosen() {
        let tier = [fig(9, 0, Some(1.0), 0)];
        assert_eq!(spread(Strategy::LowestLatency, &tier, 100).get(&9), Some(&100));
    }
}
