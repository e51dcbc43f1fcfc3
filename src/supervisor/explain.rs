//! Explaining a routing decision: the order in which the next request for a model would try
//! its candidates, and why the others would be skipped. Pure: it works on a copy of the
//! round-robin state, so explaining never moves the real one.
//!
//! The order assumes every attempt fails (the next pick excludes what was tried, as failover
//! does). Weighted round-robin is replayed exactly. The other strategies are shown by their
//! score, best first: `least_busy` draws two candidates at random and `lowest_latency`
//! explores one pick in twenty, so a single request may differ from that order while the
//! traffic follows it.

use chrono::{DateTime, Utc};

use super::balance::{Candidate, Choice, RoundRobin};
use super::strategy::{self, Strategy};

/// Why a candidate would not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Cooling down after a rate limit.
    Cooling,
    /// At one of its limits.
    AtLimit,
}

/// The order in which `candidates` would be tried; the rest are skipped (see `skip_reason`).
pub fn order(
    round_robin: &RoundRobin,
    model: &str,
    strategy: Strategy,
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<i64> {
    let mut rr = round_robin.clone();
    let mut remaining: Vec<Candidate> = candidates.to_vec();
    let mut tried = Vec::new();
    while !remaining.is_empty() {
        let next = match strategy {
            Strategy::WeightedRoundRobin => rr.choose(model, strategy, &remaining, now, 0),
            _ => best_by_score(strategy, &remaining, now)
                .map(Choice::Picked)
                // No healthy tier: the fallbacks do not depend on the strategy.
                .unwrap_or_else(|| rr.choose(model, Strategy::WeightedRoundRobin, &remaining, now, 0)),
        };
        let Choice::Picked(id) = next else {
            break;
        };
        tried.push(id);
        remaining.retain(|c| c.id != id);
    }
    tried
}

/// The best of the best healthy tier by the strategy's score (lower first), ties to the
/// higher weight, then the lower id.
fn best_by_score(strategy: Strategy, candidates: &[Candidate], now: DateTime<Utc>) -> Option<i64> {
    let usable = |c: &&Candidate| c.is_healthy && skip_reason(c, now).is_none();
    let tier = candidates.iter().filter(usable).map(|c| c.priority).min()?;
    let figures: Vec<_> = candidates
        .iter()
        .filter(usable)
        .filter(|c| c.priority == tier)
        .map(Candidate::figures)
        .collect();
    figures
        .iter()
        .map(|f| (strategy::score(strategy, f, &figures).unwrap_or(0.0), f))
        .min_by(|(sa, a), (sb, b)| {
            sa.total_cmp(sb)
                .then(b.weight.cmp(&a.weight))
                .then(a.id.cmp(&b.id))
        })
        .map(|(_, f)| f.id)
}

/// Why `c` would be skipped now, if it would.
pub fn skip_reason(c: &Candidate, now: DateTime<Utc>) -> Option<Skip> {
    if c.limited.is_some() {
        Some(Skip::AtLimit)
    } else if c.cooldown_until.is_some_and(|t| t > now) {
        Some(Skip::Cooling)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::provider::limits::{Blocked, LimitReason};

    fn c(id: i64, weight: u32, priority: i32) -> Candidate {
        Candidate::plain(id, weight, priority)
    }

    #[test]
    fn round_robin_is_replayed_without_moving() {
        let rr = RoundRobin::default();
        let now = Utc::now();
        let cands = [c(1, 1, 0), c(2, 3, 0), c(3, 1, 1)];
        let first = order(&rr, "m", Strategy::WeightedRoundRobin, &cands, now);
        assert_eq!(first, vec![2, 1, 3], "the heavier first, the fallback tier last");
        // The same again: the real state did not move.
        assert_eq!(order(&rr, "m", Strategy::WeightedRoundRobin, &cands, now), first);
        let mut real = rr.clone();
        assert_eq!(
            real.choose("m", Strategy::WeightedRoundRobin, &cands, now, 0),
            Choice::Picked(2),
            "the explained first is the one picked next"
        );
        assert_eq!(real.credit("m", 1, 1), 2);
        for _ in 0..8 {
            let next = order(&real, "m", Strategy::WeightedRoundRobin, &cands, now)[0];
            assert_eq!(
                real.choose("m", Strategy::WeightedRoundRobin, &cands, now, 0),
                Choice::Picked(next)
            );
        }
    }

    #[test]
    fn other_strategies_order_by_score_then_fall_back() {
        let now = Utc::now();
        let mut a = c(1, 1, 0);
        a.requests_today = 50;
        let mut b = c(2, 1, 0);
        b.requests_today = 10;
        let mut sick = c(3, 1, 0);
        sick.is_healthy = false;
        let mut cooling = c(4, 1, 0);
        cooling.cooldown_until = Some(now + Duration::seconds(9));
        let mut full = c(5, 1, 0);
        full.limited = Some(Blocked {
            reason: LimitReason::MaxConcurrency,
            free_in: None,
        });
        let cands = [a, b, sick, cooling.clone(), full.clone()];
        let rr = RoundRobin::default();
        assert_eq!(order(&rr, "m", Strategy::LeastUsed, &cands, now), vec![2, 1, 3]);
        assert_eq!(skip_reason(&cooling, now), Some(Skip::Cooling));
        assert_eq!(skip_reason(&full, now), Some(Skip::AtLimit));
        assert_eq!(skip_reason(&cands[0], now), None);
    }
}
