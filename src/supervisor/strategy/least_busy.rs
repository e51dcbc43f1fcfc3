//! `least_busy`: power of two choices over in-flight requests weighted by latency (the
//! peak-EWMA idea): draw two candidates at random and take the one with the lower
//! `(in-flight + 1) × latency average`, i.e. the lower expected wait for one more request.
//!
//! Two random draws instead of a scan of all: each pick is cheap, and no provider is flooded
//! when every worker sees the same "least busy" one at once (the herd a full scan causes). A
//! provider without a latency sample counts at the tier mean (1 ms when nobody has one), so
//! in-flight alone decides until latencies are known. Ties go to the higher weight.

use super::{Figures, best_by, mean_latency};

/// The expected cost of one more request on `f` (lower is better). Never NaN.
pub fn cost(f: &Figures, tier: &[Figures]) -> f64 {
    let latency = f
        .latency_ms
        .filter(|l| l.is_finite())
        .or_else(|| mean_latency(tier))
        .unwrap_or(1.0)
        .max(1.0);
    (f.inflight as f64 + 1.0) * latency
}

pub fn choose(tier: &[Figures], random: u64) -> Option<i64> {
    match tier.len() {
        0 => None,
        1 => Some(tier[0].id),
        n => {
            let n = n as u64;
            let i = (random % n) as usize;
            // A second, distinct index from the high bits.
            let j = ((i as u64 + 1 + (random >> 32) % (n - 1)) % n) as usize;
            let pair = [tier[i].clone(), tier[j].clone()];
            let costs = [cost(&pair[0], tier), cost(&pair[1], tier)];
            best_by(&pair, random >> 16, |f| {
                if f.id == pair[0].id { costs[0] } else { costs[1] }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Strategy;
    use super::super::testing::{fig, spread};
    use super::*;

    #[test]
    fn between_two_the_less_busy_wins() {
        let tier = [fig(1, 0, Some(100.0), 8), fig(2, 0, Some(100.0), 1)];
        assert_eq!(spread(Strategy::LeastBusy, &tier, 100).get(&2), Some(&100));
        // Latency weighs in: 3 in flight at 100 ms beat 1 in flight at 1000 ms.
        let tier = [fig(1, 0, Some(100.0), 3), fig(2, 0, Some(1000.0), 1)];
        assert_eq!(spread(Strategy::LeastBusy, &tier, 100).get(&1), Some(&100));
    }

    #[test]
    fn the_busiest_is_never_chosen_and_the_rest_share() {
        let tier = [
            fig(1, 0, Some(100.0), 50),
            fig(2, 0, Some(100.0), 0),
            fig(3, 0, Some(100.0), 0),
            fig(4, 0, Some(100.0), 0),
        ];
        let counts = spread(Strategy::LeastBusy, &tier, 3000);
        assert_eq!(counts.get(&1), None, "{counts:?}");
        for id in 2..=4 {
            let n = counts.get(&id).copied().unwrap_or(0);
            assert!((850..=1150).contains(&n), "{counts:?}");
        }
    }

    #[test]
    fn both_draws_are_distinct() {
        let tier = [fig(1, 0, None, 0), fig(2, 0, None, 9)];
        // Were both draws ever the busy one, it would be chosen.
        for r in 0..1000 {
            assert_eq!(choose(&tier, r), Some(1));
        }
    }

    #[test]
    fn unknown_latency_counts_at_the_mean() {
        let tier = [
            fig(1, 0, Some(300.0), 0),
            fig(2, 0, None, 0),
            fig(3, 0, Some(100.0), 0),
        ];
        assert_eq!(cost(&tier[1], &tier), 200.0);
        assert_eq!(cost(&fig(1, 0, None, 4), &[]), 5.0);
    }
}
