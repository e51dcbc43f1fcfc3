//! The routing decision as a pure function: the model's strategy (smooth weighted
//! round-robin by default, see `strategy` for the others) among the healthy providers of the
//! best (lowest) priority tier, with fallbacks for when none is healthy.
//!
//! Smooth weighted round-robin (the algorithm nginx uses; see `ring`): weights 2:1 give
//! A B A A B A…, interleaved rather than in bursts, and the spread is exact over every
//! window of `total weight` picks. Its state is one ring per healthy tier of each model, in
//! the routing snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::ring::{Cursor, Ring};
use super::strategy::{self, Figures, Strategy};
use crate::provider::limits::Blocked;

/// One provider that serves the requested model and is not excluded.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub weight: u32,
    pub priority: i32,
    pub is_healthy: bool,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Requests for the model today (see `Figures`).
    pub requests_today: u64,
    pub latency_ms: Option<f64>,
    pub latency_idle: std::time::Duration,
    pub inflight: u64,
    /// At one of its limits now (skipped like a cooling provider).
    pub limited: Option<Blocked>,
}

impl Candidate {
    /// What a strategy sees of this candidate.
    pub fn figures(&self) -> Figures {
        Figures {
            id: self.id,
            weight: self.weight,
            requests_today: self.requests_today,
            latency_ms: self.latency_ms,
            latency_idle: self.latency_idle,
            inflight: self.inflight,
        }
    }
}

/// The outcome of a routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Route to this provider.
    Picked(i64),
    /// Every candidate is cooling down after a rate limit; the soonest is free after this.
    AllCooling(std::time::Duration),
    /// Every candidate is at a limit or cooling, at least one at a limit: wait for a slot.
    /// The soonest a limit or cool-down is known to end, if any is (a slot freed by a request
    /// ending is not foreseeable).
    AtLimit(Option<std::time::Duration>),
    /// No candidate at all.
    NoneLeft,
}

/// One healthy tier of a model: its priority and its round-robin ring.
#[derive(Debug, Clone)]
pub struct Tier {
    pub priority: i32,
    pub ring: Arc<Ring>,
}

/// The tiers of a model's healthy providers `(priority, id, weight)`, best first, each with
/// its ring. A tier whose members (ids and weights) are those of a tier in `previous` keeps
/// that ring, cursor included: the round-robin goes on where it was when something else
/// changed (another tier's health, another model's provider).
pub fn tiers(healthy: impl IntoIterator<Item = (i32, i64, u32)>, previous: &[Tier]) -> Vec<Tier> {
    let mut members: Vec<(i32, i64, u32)> = healthy.into_iter().collect();
    members.sort_unstable();
    members.dedup_by_key(|m| m.1);
    let mut out: Vec<Tier> = Vec::new();
    for chunk in members.chunk_by(|a, b| a.0 == b.0) {
        let priority = chunk[0].0;
        let list: Vec<(i64, u32)> = chunk.iter().map(|m| (m.1, m.2)).collect();
        let ring = previous
            .iter()
            .find(|t| t.priority == priority && t.ring.members() == list.as_slice())
            .map_or_else(|| Arc::new(Ring::new(list)), |t| t.ring.clone());
        out.push(Tier { priority, ring });
    }
    out
}

/// Chooses among `candidates` (the request's: serving the model, not excluded), whose
/// healthy ones are the members of `tiers`:
/// 1. healthy, not cooling: the model's `strategy` inside the lowest priority tier
///    (`random` feeds its ties and exploration; round-robin takes the next turn of the
///    tier's ring, from `claim`);
/// 2. else an unhealthy one not cooling, whose retry is due soonest;
/// 3. else, when some are at a limit, that (the request waits for a slot);
/// 4. else, when all are cooling, how long until the first is free.
///
/// A provider at a limit is skipped like a cooling one. `claim` gives the next turn of a
/// ring's cursor: the live pick claims it (`Ring::claim`), the explain view replays.
pub fn choose(
    tiers: &[Tier],
    strategy: Strategy,
    candidates: &[Candidate],
    now: DateTime<Utc>,
    random: u64,
    claim: &mut dyn FnMut(&Ring, Cursor) -> u64,
) -> Choice {
    if candidates.is_empty() {
        return Choice::NoneLeft;
    }
    let cooling = |c: &Candidate| c.cooldown_until.is_some_and(|t| t > now) || c.limited.is_some();
    let best_tier = candidates
        .iter()
        .filter(|c| c.is_healthy && !cooling(c))
        .map(|c| c.priority)
        .min();
    if let Some(tier) = best_tier {
        let in_tier = || {
            candidates
                .iter()
                .filter(move |c| c.is_healthy && !cooling(c) && c.priority == tier)
        };
        if strategy != Strategy::WeightedRoundRobin {
            let figures: Vec<Figures> = in_tier().map(Candidate::figures).collect();
            if let Some(id) = strategy::choose(strategy, &figures, random) {
                return Choice::Picked(id);
            }
        }
        let mut usable_ids: Vec<i64> = in_tier().map(|c| c.id).collect();
        usable_ids.sort_unstable();
        if let Some(ring) = tiers.iter().find(|t| t.priority == tier).map(|t| &t.ring) {
            let usable: Vec<bool> = ring
                .members()
                .iter()
                .map(|(id, _)| usable_ids.binary_search(id).is_ok())
                .collect();
            // No turn is taken when no member is usable (not the case in the best tier):
            // a request that cannot use a tier does not move its round-robin.
            let cursor = Cursor::for_pick(&usable, ring.members().len());
            if let Some(i) = ring.next_usable(&usable, || claim(ring, cursor))
                && let Some((id, _)) = ring.members().get(i)
            {
                return Choice::Picked(*id);
            }
        }
        // Health the tiers do not know of yet (never from one snapshot): the lowest id.
        if let Some(id) = usable_ids.first() {
            return Choice::Picked(*id);
        }
    }
    if let Some(c) = candidates
        .iter()
        .filter(|c| !cooling(c))
        .min_by_key(|c| (c.next_retry_at.unwrap_or(now), c.priority, c.id))
    {
        return Choice::Picked(c.id);
    }
    let cooling_left = |c: &Candidate| {
        c.cooldown_until
            .filter(|t| *t > now)
            .and_then(|t| (t - now).to_std().ok())
    };
    if candidates.iter().any(|c| c.limited.is_some()) {
        let soonest = candidates
            .iter()
            .filter_map(|c| match c.limited {
                Some(b) => b.free_in.max(cooling_left(c)),
                None => cooling_left(c),
            })
            .min();
        return Choice::AtLimit(soonest);
    }
    let soonest = candidates
        .iter()
        .filter_map(|c| c.cooldown_until)
        .min()
        .unwrap_or(now);
    Choice::AllCooling((soonest - now).to_std().unwrap_or_default())
}

/// The credit each member of `tiers` would compare with on the next round-robin turn of its
/// tier (its running score plus its share; the highest goes next), by provider id. A
/// provider in no tier has none: its credit is its weight (see `credit`).
pub fn credits(tiers: &[Tier]) -> HashMap<i64, i64> {
    tiers
        .iter()
        .flat_map(|t| {
            let credits = t.ring.credits(t.ring.position(Cursor::Main));
            t.ring
                .members()
                .iter()
                .map(|m| m.0)
                .zip(credits)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `id`'s credit among `credits` (see `credits`), its weight when it is in no tier.
pub fn credit(credits: &HashMap<i64, i64>, id: i64, weight: u32) -> i64 {
    credits.get(&id).copied().unwrap_or(i64::from(weight.max(1)))
}

#[cfg(test)]
impl Candidate {
    /// A healthy candidate without figures, for tests.
    pub(crate) fn plain(id: i64, weight: u32, priority: i32) -> Self {
        Candidate {
            id,
            weight,
            priority,
            is_healthy: true,
            next_retry_at: None,
            cooldown_until: None,
            requests_today: 0,
            latency_ms: None,
            latency_idle: std::time::Duration::ZERO,
            inflight: 0,
            limited: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    /// The routing table in miniature: tiers rebuilt from the candidates' health before each
    /// pick (as the snapshot is after each change), rings kept while their members are.
    #[derive(Default)]
    struct RoundRobin {
        tiers: Vec<Tier>,
    }

    impl RoundRobin {
        fn choose(
            &mut self,
            _model: &str,
            strategy: Strategy,
            cands: &[Candidate],
            now: DateTime<Utc>,
            random: u64,
        ) -> Choice {
            let healthy = cands
                .iter()
                .filter(|c| c.is_healthy)
                .map(|c| (c.priority, c.id, c.weight));
            self.tiers = tiers(healthy, &self.tiers);
            choose(&self.tiers, strategy, cands, now, random, &mut |r, c| r.claim(c))
        }
    }

    fn c(id: i64, weight: u32, priority: i32) -> Candidate {
        Candidate::plain(id, weight, priority)
    }

    fn picks(rr: &mut RoundRobin, cands: &[Candidate], n: usize) -> HashMap<i64, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            match rr.choose("m", Strategy::WeightedRoundRobin, cands, Utc::now(), 0) {
                Choice::Picked(id) => *counts.entry(id).or_default() += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        counts
    }

    #[test]
    fn equal_weights_spread_evenly() {
        let counts = picks(
            &mut RoundRobin::default(),
            &[c(1, 1, 0), c(2, 1, 0), c(3, 1, 0)],
            30,
        );
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![10, 10, 10]);
    }

    #[test]
    fn weights_set_the_share_and_interleave() {
        let mut rr = RoundRobin::default();
        let cands = [c(1, 2, 0), c(2, 1, 0)];
        let seq: Vec<i64> = (0..6)
            .map(
                |_| match rr.choose("m", Strategy::WeightedRoundRobin, &cands, Utc::now(), 0) {
                    Choice::Picked(id) => id,
                    _ => 0,
                },
            )
            .collect();
        assert_eq!(seq, vec![1, 2, 1, 1, 2, 1]);
    }

    #[test]
    fn the_best_tier_is_used_while_it_has_a_healthy_provider() {
        let mut rr = RoundRobin::default();
        let mut cands = vec![c(1, 1, 0), c(2, 1, 1)];
        assert_eq!(picks(&mut rr, &cands, 4).get(&1), Some(&4));
        cands[0].is_healthy = false;
        assert_eq!(
            picks(&mut rr, &cands, 4).get(&2),
            Some(&4),
            "falls back to the next tier"
        );
    }

    #[test]
    fn with_none_healthy_the_soonest_retry_is_tried() {
        let now = Utc::now();
        let mut a = c(1, 1, 0);
        a.is_healthy = false;
        a.next_retry_at = Some(now + Duration::seconds(60));
        let mut b = c(2, 1, 0);
        b.is_healthy = false;
        b.next_retry_at = Some(now + Duration::seconds(5));
        assert_eq!(
            RoundRobin::default().choose("m", Strategy::WeightedRoundRobin, &[a, b], now, 0),
            Choice::Picked(2)
        );
    }

    #[test]
    fn all_cooling_reports_the_wait() {
        let now = Utc::now();
        let mut a = c(1, 1, 0);
        a.cooldown_until = Some(now + Duration::seconds(7));
        let mut b = c(2, 1, 0);
        b.cooldown_until = Some(now + Duration::seconds(3));
        match RoundRobin::default().choose("m", Strategy::WeightedRoundRobin, &[a, b], now, 0) {
            Choice::AllCooling(d) => assert_eq!(d.as_secs(), 3 - u64::from(d.subsec_nanos() > 0)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            RoundRobin::default().choose("m", Strategy::WeightedRoundRobin, &[], now, 0),
            Choice::NoneLeft
        );
    }

    #[test]
    fn every_strategy_keeps_to_the_best_healthy_tier() {
        let now = Utc::now();
        let mut busy_fast = c(1, 1, 0);
        busy_fast.requests_today = 1000;
        busy_fast.inflight = 100;
        let mut sick = c(2, 1, 0);
        sick.is_healthy = false;
        let mut cooling = c(3, 1, 0);
        cooling.cooldown_until = Some(now + Duration::seconds(30));
        let fallback = c(4, 1, 1);
        let cands = [busy_fast, sick, cooling, fallback];
        for s in Strategy::ALL {
            let mut rr = RoundRobin::default();
            for r in 0..200 {
                assert_eq!(rr.choose("m", s, &cands, now, r), Choice::Picked(1), "{s:?}");
            }
        }
    }

    #[test]
    fn strategies_choose_by_their_figure() {
        let now = Utc::now();
        let mut a = c(1, 1, 0);
        a.requests_today = 9;
        a.latency_ms = Some(50.0);
        a.inflight = 9;
        let mut b = c(2, 1, 0);
        b.requests_today = 1;
        b.latency_ms = Some(900.0);
        b.inflight = 0;
        let cands = [a, b];
        let mut rr = RoundRobin::default();
        assert_eq!(
            rr.choose("m", Strategy::LeastUsed, &cands, now, 0),
            Choice::Picked(2)
        );
        // Exploration aside (its high bits are not 0 mod 20 here).
        assert_eq!(
            rr.choose("m", Strategy::LowestLatency, &cands, now, 1 << 32),
            Choice::Picked(1)
        );
        // 10 × 50 ms against 1 × 900 ms.
        assert_eq!(
            rr.choose("m", Strategy::LeastBusy, &cands, now, 0),
            Choice::Picked(1)
        );
    }

    #[test]
    fn a_provider_at_its_limit_is_skipped_and_all_at_limit_waits() {
        use crate::provider::limits::LimitReason;
        let now = Utc::now();
        let full = |free_in: Option<u64>| Blocked {
            reason: LimitReason::Rpm,
            free_in: free_in.map(std::time::Duration::from_secs),
        };
        let mut a = c(1, 1, 0);
        a.limited = Some(full(None));
        let b = c(2, 1, 1);
        for s in Strategy::ALL {
            let mut rr = RoundRobin::default();
            let cands = [a.clone(), b.clone()];
            assert_eq!(rr.choose("m", s, &cands, now, 3), Choice::Picked(2), "{s:?}");
        }
        let mut b = b;
        b.limited = Some(full(Some(20)));
        let mut rr = RoundRobin::default();
        let cands = [a.clone(), b.clone()];
        assert_eq!(
            rr.choose("m", Strategy::WeightedRoundRobin, &cands, now, 0),
            Choice::AtLimit(Some(std::time::Duration::from_secs(20)))
        );
        // A cooling one beside them: the wait is still for a slot.
        let mut cool = c(3, 1, 0);
        cool.cooldown_until = Some(now + Duration::seconds(5));
        let cands = [a, b, cool];
        match rr.choose("m", Strategy::LeastBusy, &cands, now, 0) {
            Choice::AtLimit(Some(d)) => assert!(d <= std::time::Duration::from_secs(5)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[cfg(test)]
mod ring_tests {
    use super::*;

    #[test]
    fn a_tier_keeps_its_ring_while_its_members_stay() {
        let first = tiers([(0, 1, 2), (0, 2, 1), (1, 3, 1)], &[]);
        assert_eq!(first.len(), 2);
        first[0].ring.claim(Cursor::Main);
        // Tier 1 lost its member, tier 0 is unchanged: its cursor carries on.
        let second = tiers([(0, 2, 1), (0, 1, 2)], &first);
        assert_eq!(second.len(), 1);
        assert!(Arc::ptr_eq(&first[0].ring, &second[0].ring));
        assert_eq!(second[0].ring.position(Cursor::Main), 1);
        // A weight changed: a new ring.
        let third = tiers([(0, 1, 3), (0, 2, 1)], &second);
        assert!(!Arc::ptr_eq(&second[0].ring, &third[0].ring));
        assert_eq!(third[0].ring.position(Cursor::Main), 0);
    }

    #[test]
    fn a_tier_nothing_can_use_does_not_move() {
        let t = tiers([(0, 1, 1), (0, 2, 1), (1, 3, 1)], &[]);
        let mut excluded = Candidate::plain(3, 1, 1);
        excluded.is_healthy = true;
        // Only the tier-1 provider is a candidate (1 and 2 excluded): tier 0's ring stays.
        let choice = choose(
            &t,
            Strategy::WeightedRoundRobin,
            &[excluded],
            Utc::now(),
            0,
            &mut |r, c| r.claim(c),
        );
        assert_eq!(choice, Choice::Picked(3));
        for c in [Cursor::Main, Cursor::Restricted] {
            assert_eq!(t[0].ring.position(c), 0);
        }
        assert_eq!(t[1].ring.position(Cursor::Main), 1);
    }
}
