//! The round-robin ring of one tier of one model: the whole smooth weighted round-robin
//! sequence of its healthy providers, computed once when the tier's membership changes, and
//! one atomic cursor that every pick advances by one.
//!
//! Smooth weighted round-robin (the algorithm nginx uses): every turn adds each member's
//! weight to its running score, takes the highest score (the first on a tie), and subtracts
//! the total weight from the winner. After `total weight` turns every score is back to zero,
//! so the sequence repeats with that period: weights 2:1 give A B A, A B A, … Computing the
//! period once turns a pick into one `fetch_add` on the cursor and one read of the sequence,
//! with no lock; each pick claims its own turn, so over any `total weight` consecutive picks,
//! from however many workers, every member gets exactly its share.
//!
//! A pick that some member cannot serve (excluded by the request, at a limit, cooling, not
//! serving the request's endpoint) takes its turns from a second cursor over the same
//! sequence, claiming turns until one falls on a member it can use. Two reasons:
//! - a failover attempt does not shift the main rotation: were it to take the turn after
//!   the failed provider's, the next request would land on the failed provider again, and
//!   so would every first attempt after it (with running scores, a pick among the others
//!   left the tier's rotation where it was, too);
//! - picks that skip the same members (one at its limit for a while, say) still spread over
//!   the others by their weights, instead of all landing on the member after the skipped one.
//!
//! So the picks every member could serve follow the sequence exactly, and so do the others
//! among the members they can use.
//!
//! Memory is bounded: weights are divided by their greatest common divisor, and when their
//! sum is still above `MAX_TURNS` they are scaled down to about `MAX_TURNS` (each keeps at
//! least 1), so a ring holds at most `MAX_TURNS` + members turns. Shares then follow the
//! weights to within one turn in `MAX_TURNS` per member. Weights are at most 10 000 (see
//! `provider::spec::MAX_WEIGHT`), so only tiers with more than a few providers at very
//! uneven, large weights are scaled.

use std::sync::atomic::{AtomicU64, Ordering};

/// Longest sequence kept for a tier before weights are scaled down (plus one turn per
/// member at most).
pub const MAX_TURNS: u64 = 4096;

/// One tier's sequence and cursor.
#[derive(Debug)]
pub struct Ring {
    /// The members as configured: (provider id, weight), in id order.
    members: Vec<(i64, u32)>,
    /// The weights the sequence deals by (see `shares`).
    shares: Vec<u32>,
    /// Member indices, one per turn, over one period.
    turns: Box<[u32]>,
    /// Turns claimed since the ring was built, by `Cursor` (wraps after 2^64 picks).
    cursors: [AtomicU64; 2],
}

/// Which of a ring's cursors a pick takes its turns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cursor {
    /// Every member could serve the pick: the round-robin proper.
    Main,
    /// Some member could not (see the module's doc).
    Restricted,
}

impl Cursor {
    /// The cursor for a pick that can use the members marked in `usable`.
    pub fn for_pick(usable: &[bool], members: usize) -> Cursor {
        if usable.len() == members && usable.iter().all(|u| *u) {
            Cursor::Main
        } else {
            Cursor::Restricted
        }
    }

    fn index(self) -> usize {
        match self {
            Cursor::Main => 0,
            Cursor::Restricted => 1,
        }
    }
}

impl Ring {
    /// A ring over `members` (provider id, weight), which should be in id order: ties go to
    /// the first, as the routing table lists providers.
    pub fn new(members: Vec<(i64, u32)>) -> Ring {
        let weights: Vec<u32> = members.iter().map(|m| m.1).collect();
        let shares = shares(&weights);
        let turns = turns(&shares).into_boxed_slice();
        Ring {
            members,
            shares,
            turns,
            cursors: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// The members (provider id, weight) as given.
    pub fn members(&self) -> &[(i64, u32)] {
        &self.members
    }

    /// The turns of one period.
    pub fn period(&self) -> usize {
        self.turns.len()
    }

    /// The next turn to be claimed from `cursor`.
    pub fn position(&self, cursor: Cursor) -> u64 {
        self.cursors[cursor.index()].load(Ordering::Relaxed)
    }

    /// Claims the next turn of `cursor`. Each call gets its own turn whatever the threads:
    /// an atomic add needs no ordering with other memory to be exact.
    pub fn claim(&self, cursor: Cursor) -> u64 {
        self.cursors[cursor.index()].fetch_add(1, Ordering::Relaxed)
    }

    /// The member to serve a pick that can use the members marked in `usable` (one entry
    /// per member): turns are taken from `claim` until one falls on a usable member, at most
    /// one period of them, then the next usable member after the last turn taken (only
    /// when other picks keep taking the usable turns). `None`, and no turn taken, when no
    /// member is usable.
    pub fn next_usable(&self, usable: &[bool], mut claim: impl FnMut() -> u64) -> Option<usize> {
        if self.turns.is_empty() || !usable.contains(&true) {
            return None;
        }
        let mut last = 0;
        for _ in 0..self.turns.len() {
            last = claim();
            let i = self.turns[(last % self.turns.len() as u64) as usize] as usize;
            if usable.get(i).copied().unwrap_or(false) {
                return Some(i);
            }
        }
        self.turn_from(last, usable)
    }

    /// The member whose turn is `turn`, or the next usable one after it: `usable` has one
    /// entry per member. `None` when no member is usable. At most one period is scanned.
    pub fn turn_from(&self, turn: u64, usable: &[bool]) -> Option<usize> {
        let period = self.turns.len() as u64;
        if period == 0 || !usable.iter().any(|u| *u) {
            return None;
        }
        let start = turn % period;
        (0..period)
            .map(|k| self.turns[((start + k) % period) as usize] as usize)
            .find(|&i| usable.get(i).copied().unwrap_or(false))
    }

    /// Each member's credit at turn `turn`: its running score plus its share, as smooth
    /// round-robin compares them (the highest goes next). For the explain view: it replays
    /// the scores from the period's start, O(period × members).
    pub fn credits(&self, turn: u64) -> Vec<i64> {
        let period = self.turns.len() as u64;
        let mut scores = vec![0i64; self.shares.len()];
        if period > 0 {
            let total: i64 = self.shares.iter().map(|w| i64::from(*w)).sum();
            for t in 0..turn % period {
                let winner = self.turns[t as usize] as usize;
                for (s, w) in scores.iter_mut().zip(&self.shares) {
                    *s += i64::from(*w);
                }
                if let Some(s) = scores.get_mut(winner) {
                    *s -= total;
                }
            }
        }
        scores
            .iter()
            .zip(&self.shares)
            .map(|(s, w)| s + i64::from(*w))
            .collect()
    }
}

/// The weights a ring deals by: 0 counts as 1 (as everywhere in routing), the rest are
/// divided by their greatest common divisor, and if the sum is still over `MAX_TURNS` each
/// is scaled to its part of `MAX_TURNS`, at least 1. The sum stays at most `MAX_TURNS` plus
/// the number of members.
pub fn shares(weights: &[u32]) -> Vec<u32> {
    let weights: Vec<u64> = weights.iter().map(|w| u64::from((*w).max(1))).collect();
    let divisor = weights.iter().copied().reduce(gcd).unwrap_or(1).max(1);
    let reduced: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    // At most 2^32 × members: no overflow for any number of members memory can hold.
    let total: u64 = reduced.iter().fold(0u64, |s, w| s.saturating_add(*w));
    reduced
        .iter()
        .map(|w| {
            let share = if total > MAX_TURNS {
                // w × MAX_TURNS < 2^32 × 2^12: no overflow.
                (w.saturating_mul(MAX_TURNS) / total).max(1)
            } else {
                *w
            };
            u32::try_from(share).unwrap_or(u32::MAX)
        })
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One period of smooth weighted round-robin over `shares`: member indices, `sum(shares)`
/// of them. Equal shares give the members in order at once; otherwise O(period × members).
pub fn turns(shares: &[u32]) -> Vec<u32> {
    let total: u64 = shares.iter().map(|w| u64::from(*w)).sum();
    let Ok(members) = u32::try_from(shares.len()) else {
        return Vec::new();
    };
    if shares.windows(2).all(|w| w[0] == w[1]) {
        // Equal weights: plain rotation in member order (what the scores give, ties going to
        // the first), repeated `share` times.
        let share = shares.first().copied().unwrap_or(0) as usize;
        return (0..share).flat_map(|_| 0..members).collect();
    }
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    let mut scores = vec![0i64; shares.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best: Option<(i64, usize)> = None;
        for (i, (s, w)) in scores.iter_mut().zip(shares).enumerate() {
            *s += i64::from(*w);
            if best.is_none_or(|(bs, _)| *s > bs) {
                best = Some((*s, i));
            }
        }
        if let Some((_, i)) = best {
            scores[i] -= total_i;
            out.push(i as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Smooth weighted round-robin with running scores, as written in its description: the
    /// reference the precomputed sequence must follow.
    fn reference(weights: &[u32], n: usize) -> Vec<usize> {
        let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
        let mut scores = vec![0i64; weights.len()];
        (0..n)
            .map(|_| {
                for (s, w) in scores.iter_mut().zip(weights) {
                    *s += i64::from(*w);
                }
                let mut best = 0;
                for i in 1..scores.len() {
                    if scores[i] > scores[best] {
                        best = i;
                    }
                }
                scores[best] -= total;
                best
            })
            .collect()
    }

    fn ring(weights: &[u32]) -> Ring {
        Ring::new(
            weights
                .iter()
                .enumerate()
                .map(|(i, w)| (i as i64 + 1, *w))
                .collect(),
        )
    }

    fn all(ring: &Ring) -> Vec<bool> {
        vec![true; ring.members().len()]
    }

    #[test]
    fn five_three_one_follows_smooth_round_robin() {
        let r = ring(&[5, 3, 1]);
        let seq: Vec<usize> = (0..18)
            .map(|_| r.turn_from(r.claim(Cursor::Main), &all(&r)).unwrap())
            .collect();
        // A B A C A B A B A, twice.
        assert_eq!(&seq[..9], &[0, 1, 0, 2, 0, 1, 0, 1, 0]);
        assert_eq!(seq, reference(&[5, 3, 1], 18));
        for weights in [&[2, 1][..], &[1, 3], &[7, 7, 2, 1], &[4, 6], &[1, 1, 1]] {
            let r = ring(weights);
            let seq: Vec<usize> = (0..40)
                .map(|_| r.turn_from(r.claim(Cursor::Main), &all(&r)).unwrap())
                .collect();
            // The gcd (2 in 4:6) shortens the period, not the order.
            assert_eq!(seq, reference(weights, 40), "{weights:?}");
        }
    }

    #[test]
    fn concurrent_picks_keep_the_exact_share() {
        let r = Arc::new(ring(&[5, 3, 1]));
        let per_thread = 9 * 20_000;
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let usable = all(&r);
                    let mut counts = [0usize; 3];
                    for _ in 0..per_thread {
                        counts[r.turn_from(r.claim(Cursor::Main), &usable).unwrap()] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut counts = [0usize; 3];
        for t in threads {
            for (c, n) in counts.iter_mut().zip(t.join().unwrap()) {
                *c += n;
            }
        }
        // 2 × 20 000 periods of 9 turns: exactly 5:3:1 whatever the interleaving.
        assert_eq!(counts, [200_000, 120_000, 40_000]);
    }

    #[test]
    fn unusable_members_are_skipped() {
        let r = ring(&[5, 3, 1]);
        let mut counts = [0usize; 3];
        let usable = [true, false, true];
        for _ in 0..90 {
            counts[r.next_usable(&usable, || r.claim(Cursor::Restricted)).unwrap()] += 1;
        }
        // B's turns are passed over: A and C keep their 5:1 among themselves, exactly.
        assert_eq!(counts, [75, 0, 15]);
        assert_eq!(r.position(Cursor::Main), 0, "the main rotation did not move");
        assert_eq!(
            r.next_usable(&[false, false, false], || r.claim(Cursor::Main)),
            None
        );
        assert_eq!(r.position(Cursor::Main), 0, "nothing usable: no turn taken");
        assert_eq!(Cursor::for_pick(&[true, true, true], 3), Cursor::Main);
        assert_eq!(Cursor::for_pick(&usable, 3), Cursor::Restricted);
        assert_eq!(Cursor::for_pick(&[true], 3), Cursor::Restricted);
        // Other picks taking every usable turn: after one period, the next usable one.
        assert_eq!(r.next_usable(&[false, false, true], || 0), Some(2));
        assert_eq!(r.turn_from(0, &[false, false, true]), Some(2));
        // A mask of the wrong length is read as "not usable" past its end.
        assert_eq!(r.turn_from(0, &[false]), None);
    }

    #[test]
    fn absurd_weights_stay_bounded() {
        let shares_of = |w: &[u32]| shares(w);
        assert_eq!(shares_of(&[0, 0]), vec![1, 1]);
        assert_eq!(shares_of(&[u32::MAX, u32::MAX, u32::MAX]), vec![1, 1, 1]);
        assert_eq!(shares_of(&[10_000, 5_000]), vec![2, 1]);
        let s = shares_of(&[u32::MAX, 1, 0]);
        assert_eq!(s.len(), 3);
        assert!(
            s.iter().map(|w| u64::from(*w)).sum::<u64>() <= MAX_TURNS + 3,
            "{s:?}"
        );
        assert_eq!(&s[1..], &[1, 1]);
        // Many large, uneven weights: scaled to about MAX_TURNS, each at least 1.
        let many: Vec<u32> = (0..1000).map(|i| 10_000 - i).collect();
        let r = ring(&many);
        assert!(r.period() as u64 <= MAX_TURNS + 1000, "{}", r.period());
        assert!(r.period() >= 1000);
        // Every member keeps a turn, and the claims never run past the sequence.
        let usable = all(&r);
        let seen: std::collections::BTreeSet<usize> = (0..r.period())
            .filter_map(|_| r.next_usable(&usable, || r.claim(Cursor::Main)))
            .collect();
        assert_eq!(seen.len(), 1000);
        assert!(r.turn_from(u64::MAX, &usable).is_some());
        let r = ring(&[u32::MAX, 0]);
        assert!(r.period() as u64 <= MAX_TURNS + 2);
        assert_eq!(Ring::new(Vec::new()).turn_from(0, &[]), None);
        assert!(Ring::new(Vec::new()).credits(5).is_empty());
    }

    #[test]
    fn credits_replay_the_running_scores() {
        let r = ring(&[1, 3]);
        // Turns: B A B B. Before any: shares; after one (B): A 1 + 1, B -1 + 3.
        assert_eq!(r.credits(0), vec![1, 3]);
        assert_eq!(r.credits(1), vec![2, 2]);
        assert_eq!(r.credits(4), r.credits(0), "one period brings the scores back");
    }
}
