//! `least_used`: the provider with the fewest requests for the model today (UTC), counting
//! the stored daily rows of every instance and this instance's requests not yet stored.
//! Ties go to the higher weight, then to a random one of the tied.
//!
//! This evens out daily totals (quotas, free tiers, per-day spend) rather than the rate: a
//! provider added at noon takes all traffic until it has caught up with the others.

use super::{Figures, best_by};

pub fn choose(tier: &[Figures], random: u64) -> Option<i64> {
    best_by(tier, random, |f| f.requests_today)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fig, spread};
    use super::super::{Figures, Strategy};
    use super::*;

    #[test]
    fn the_fewest_today_wins() {
        let tier = [fig(1, 10, None, 0), fig(2, 3, None, 0), fig(3, 7, None, 0)];
        assert_eq!(choose(&tier, 0), Some(2));
        assert_eq!(spread(Strategy::LeastUsed, &tier, 50).get(&2), Some(&50));
    }

    #[test]
    fn counting_each_pick_evens_the_totals_out() {
        // As the router does: every pick adds one to the chosen provider's count.
        let mut tier: Vec<Figures> = vec![fig(1, 0, None, 0), fig(2, 40, None, 0), fig(3, 10, None, 0)];
        for r in 0..90u64 {
            let id = choose(&tier, r).unwrap();
            tier.iter_mut().find(|f| f.id == id).unwrap().requests_today += 1;
        }
        let totals: Vec<u64> = tier.iter().map(|f| f.requests_today).collect();
        // 140 requests in all: the emptiest caught up, then all moved in step.
        let mut sorted = totals.clone();
        sorted.sort_unstable();
        assert!(sorted[2] - sorted[0] <= 1, "{totals:?}");
        assert_eq!(totals.iter().sum::<u64>(), 140);
    }

    #[test]
    fn weight_breaks_a_tie() {
        let mut heavy = fig(2, 5, None, 0);
        heavy.weight = 4;
        let tier = [fig(1, 5, None, 0), heavy];
        assert_eq!(spread(Strategy::LeastUsed, &tier, 20).get(&2), Some(&20));
    }
}
