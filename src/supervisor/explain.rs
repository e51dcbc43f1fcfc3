//! Explaining a routing decision: the order in which the next request for a model would try
//! its candidates, and why the others would be skipped (`Routes::explain`, behind
//! `GET /api/routing/explain`). The ordering is pure (`order`): it replays the round-robin
//! rings from their cursors without claiming a turn, so explaining never moves them;
//! `Routes::explain` reads the routing snapshot, takes no slot and counts nothing.
//!
//! The order assumes every attempt fails (the next pick excludes what was tried, as failover
//! does). Weighted round-robin is replayed exactly. The other strategies are shown by their
//! score, best first: `least_busy` draws two candidates at random and `lowest_latency`
//! explores one pick in twenty, so a single request may differ from that order while the
//! traffic follows it.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::balance::{self, Candidate, Choice, Tier};
use super::ring::{Cursor, Ring};
use super::routes::{Reads, Routes, candidate};
use super::strategy::{self, Strategy};
use crate::provider::limits::LimitState;
use crate::provider::load::clock_ms;

/// Why a candidate would not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Cooling down after a rate limit.
    Cooling,
    /// At one of its limits.
    AtLimit,
}

/// The order in which `candidates` would be tried; the rest are skipped (see `skip_reason`).
/// Each ring's turns are replayed from its cursors, as the picks would claim them; the rings
/// do not move.
pub fn order(tiers: &[Tier], strategy: Strategy, candidates: &[Candidate], now: DateTime<Utc>) -> Vec<i64> {
    let mut claimed: HashMap<(*const Ring, Cursor), u64> = HashMap::new();
    let mut replay = |ring: &Ring, cursor: Cursor| {
        let n = claimed.entry((std::ptr::from_ref(ring), cursor)).or_insert(0);
        let turn = ring.position(cursor).wrapping_add(*n);
        *n += 1;
        turn
    };
    let mut remaining: Vec<Candidate> = candidates.to_vec();
    let mut tried = Vec::new();
    while !remaining.is_empty() {
        let round_robin = Strategy::WeightedRoundRobin;
        let next = match strategy {
            Strategy::WeightedRoundRobin => balance::choose(tiers, strategy, &remaining, now, 0, &mut replay),
            _ => best_by_score(strategy, &remaining, now)
                .map(Choice::Picked)
                // No healthy tier: the fallbacks do not depend on the strategy.
                .unwrap_or_else(|| balance::choose(tiers, round_robin, &remaining, now, 0, &mut replay)),
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

impl Routes {
    /// How the next request for `model` would be routed (`GET /api/routing/explain`): its
    /// candidates in the order it would try them, then the ones it would skip, with why.
    /// Nothing moves: the round-robin is replayed on a copy, no slot is taken, nothing is
    /// counted. `None` when no provider (enabled or not) lists the model.
    pub fn explain(&self, model: &str, max_attempts: u32) -> Option<Explanation> {
        let now = Utc::now();
        let instant = Instant::now();
        let (waiting_for_model, queue_length) = {
            let q = self.queue();
            (q.waiting.count(|w| w.model == model), q.waiting.len())
        };
        let snapshot = self.snapshot();
        let routes = snapshot.models.get(model)?;
        let strategy = routes.strategy;
        let listed = &routes.listed;
        if listed.is_empty() {
            return None;
        }
        let daily = self.daily_counts();
        let candidates: Vec<Candidate> = listed
            .iter()
            .filter(|e| e.config.enabled)
            .map(|e| candidate(e, model, Reads::ALL, &daily, now, instant, clock_ms()))
            .collect();
        let tried = order(&routes.tiers, strategy, &candidates, now);
        // Once per tier: each replays its ring's scores up to the cursor.
        let credits = match strategy {
            Strategy::WeightedRoundRobin => balance::credits(&routes.tiers),
            _ => HashMap::new(),
        };
        let mut rows: Vec<ExplainedCandidate> = Vec::with_capacity(listed.len());
        for e in listed {
            let id = e.config.id;
            let position = tried.iter().position(|t| *t == id);
            let c = candidates.iter().find(|c| c.id == id);
            let score = c.and_then(|c| match strategy {
                Strategy::WeightedRoundRobin => Some(balance::credit(&credits, id, c.weight) as f64),
                _ => {
                    // Scored among the usable candidates of its tier, itself included.
                    let tier: Vec<_> = candidates
                        .iter()
                        .filter(|o| o.priority == c.priority)
                        .filter(|o| o.id == id || (o.is_healthy && skip_reason(o, now).is_none()))
                        .map(Candidate::figures)
                        .collect();
                    strategy::score(strategy, &c.figures(), &tier)
                }
            });
            let skipped = match (position, c) {
                (Some(_), _) => None,
                (None, None) => Some("disabled".to_string()),
                (None, Some(c)) => Some(match (skip_reason(c, now), c.limited) {
                    (Some(Skip::AtLimit), Some(b)) => format!(
                        "at its {} limit{}",
                        serde_json::to_value(b.reason)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        if waiting_for_model > 0 {
                            "; requests are queued"
                        } else {
                            ""
                        }
                    ),
                    (Some(Skip::Cooling), _) => {
                        let left = c
                            .cooldown_until
                            .map_or(0, |t| (t - now).num_milliseconds().max(0));
                        format!("cooling down after a rate limit ({left} ms left)")
                    }
                    _ => "not reachable by the rules".to_string(),
                }),
            };
            rows.push(ExplainedCandidate {
                position: position.map(|p| p + 1),
                within_attempt_budget: position.is_some_and(|p| p < max_attempts as usize),
                provider_id: id,
                provider_name: e.config.name.clone(),
                tier: e.config.priority,
                weight: e.config.weight,
                standing: if !e.config.enabled {
                    "disabled"
                } else if e.view.is_healthy {
                    "healthy"
                } else {
                    "unhealthy"
                },
                next_retry_at: e.view.next_retry_at,
                cooldown_until: e.view.cooldown_until.filter(|t| *t > now),
                limits: e.limiter.state(instant),
                score,
                requests_today: c.map_or(0, |c| c.requests_today),
                latency_ms: c.and_then(|c| c.latency_ms),
                in_flight: e.load.inflight(),
                skipped,
            });
        }
        rows.sort_by_key(|r| (r.position.is_none(), r.position, r.tier, r.provider_id));
        Some(Explanation {
            model: model.to_string(),
            strategy,
            score: match strategy {
                Strategy::WeightedRoundRobin => {
                    "round-robin credit: running score plus weight (highest first)"
                }
                Strategy::LeastUsed => "requests for the model today, every instance (lowest first)",
                Strategy::LowestLatency => {
                    "latency average in ms, decayed toward the tier mean when idle (lowest first)"
                }
                Strategy::LeastBusy => {
                    "(in-flight + 1) x latency average in ms (lowest first; two drawn at random per pick)"
                }
            },
            max_attempts,
            queue_length,
            waiting_for_model,
            candidates: rows,
        })
    }
}

/// The answer of `Routes::explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    pub model: String,
    pub strategy: Strategy,
    /// What `score` means for this strategy.
    pub score: &'static str,
    /// Attempts one request may make (`max_retries` + 1).
    pub max_attempts: u32,
    pub queue_length: usize,
    /// Requests for this model waiting in the queue now.
    pub waiting_for_model: usize,
    /// Tried ones in order, then the skipped ones.
    pub candidates: Vec<ExplainedCandidate>,
}

/// One provider of the model, as the next request would see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExplainedCandidate {
    /// 1 for the first tried; `None` when skipped.
    pub position: Option<usize>,
    /// Whether its position is within the request's attempt budget.
    pub within_attempt_budget: bool,
    pub provider_id: i64,
    pub provider_name: String,
    /// Its priority: lower tiers are tried first.
    pub tier: i32,
    pub weight: u32,
    pub standing: &'static str,
    pub next_retry_at: Option<chrono::DateTime<Utc>>,
    pub cooldown_until: Option<chrono::DateTime<Utc>>,
    pub limits: LimitState,
    pub score: Option<f64>,
    pub requests_today: u64,
    pub latency_ms: Option<f64>,
    pub in_flight: i64,
    /// Why it would not be tried now.
    pub skipped: Option<String>,
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::provider::limits::{Blocked, LimitReason};

    fn c(id: i64, weight: u32, priority: i32) -> Candidate {
        Candidate::plain(id, weight, priority)
    }

    /// The tiers of the healthy ones among `cands`, as the snapshot holds them.
    fn tiers_of(cands: &[Candidate]) -> Vec<Tier> {
        let healthy = cands
            .iter()
            .filter(|c| c.is_healthy)
            .map(|c| (c.priority, c.id, c.weight));
        balance::tiers(healthy, &[])
    }

    #[test]
    fn round_robin_is_replayed_without_moving() {
        let now = Utc::now();
        let cands = [c(1, 1, 0), c(2, 3, 0), c(3, 1, 1)];
        let tiers = tiers_of(&cands);
        let wrr = Strategy::WeightedRoundRobin;
        let first = order(&tiers, wrr, &cands, now);
        assert_eq!(first, vec![2, 1, 3], "the heavier first, the fallback tier last");
        // The same again: the rings did not move.
        assert_eq!(order(&tiers, wrr, &cands, now), first);
        assert_eq!(tiers[0].ring.position(Cursor::Main), 0);
        let mut claim = |r: &Ring, c: Cursor| r.claim(c);
        assert_eq!(
            balance::choose(&tiers, wrr, &cands, now, 0, &mut claim),
            Choice::Picked(2),
            "the explained first is the one picked next"
        );
        let credits = balance::credits(&tiers);
        assert_eq!(balance::credit(&credits, 1, 1), 2);
        assert_eq!(balance::credit(&credits, 2, 3), 3 - 4 + 3, "the one just picked");
        assert_eq!(
            balance::credit(&credits, 9, 0),
            1,
            "in no tier: its weight, at least 1"
        );
        for _ in 0..8 {
            let next = order(&tiers, wrr, &cands, now)[0];
            assert_eq!(
                balance::choose(&tiers, wrr, &cands, now, 0, &mut claim),
                Choice::Picked(next)
            );
        }
        // With 2 excluded (tried), the replay skips its turns as the pick would.
        let without_2: Vec<Candidate> = cands.iter().filter(|c| c.id != 2).cloned().collect();
        let next = order(&tiers, wrr, &without_2, now);
        assert_eq!(next, vec![1, 3]);
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
        assert_eq!(
            order(&tiers_of(&cands), Strategy::LeastUsed, &cands, now),
            vec![2, 1, 3]
        );
        assert_eq!(skip_reason(&cooling, now), Some(Skip::Cooling));
        assert_eq!(skip_reason(&full, now), Some(Skip::AtLimit));
        assert_eq!(skip_reason(&cands[0], now), None);
    }
}
