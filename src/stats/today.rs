//! Requests per (provider, model) today (UTC), for the `least_used` strategy, read on every
//! pick without database I/O.
//!
//! The figure is the stored daily rows (every instance's flushed counts, read off the request
//! path by the `StatsActor` at start and after its writes) minus what this instance had
//! flushed when they were read, plus every request this instance has started today. Counting
//! at the pick, not when a request ends, keeps a burst of concurrent requests from all
//! landing on the same provider before any of them finishes.
//!
//! Every pick counts here, from every worker at once: counting takes the lock shared (the
//! count itself is atomic), so picks never wait for each other; only a new (provider, model)
//! pair, a new day and the `StatsActor`'s reads take it exclusively.

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::{NaiveDate, Utc};

#[derive(Debug, Default)]
struct Count {
    /// Stored requests that are not this instance's, as of the last read.
    others: u64,
    /// Requests this instance started today (added to under the shared lock).
    started: AtomicU64,
    /// Requests this instance wrote to the daily rows today.
    flushed: u64,
}

#[derive(Debug)]
struct Days {
    date: NaiveDate,
    by_provider: HashMap<i64, HashMap<String, Count>>,
}

/// Today's request counts, shared by the routing table and the `StatsActor`.
#[derive(Debug)]
pub struct DailyCounts(RwLock<Days>);

impl Default for DailyCounts {
    fn default() -> Self {
        DailyCounts(RwLock::new(Days {
            date: Utc::now().date_naive(),
            by_provider: HashMap::new(),
        }))
    }
}

/// Adds one. One atomic add, not a compare-and-swap loop that concurrent picks would retry:
/// wrapping would take 2^64 requests in a day.
fn add_one(n: &AtomicU64) {
    n.fetch_add(1, Ordering::Relaxed);
}

/// What `begin_read` saw of this instance's writes, to subtract from the rows read.
#[derive(Debug)]
pub struct ReadMark {
    date: NaiveDate,
    flushed: HashMap<(i64, String), u64>,
}

impl ReadMark {
    pub fn date(&self) -> NaiveDate {
        self.date
    }
}

impl DailyCounts {
    /// The counts, shared; `None` when `today` is a new day (`lock` starts it).
    fn read(&self, today: NaiveDate) -> Option<RwLockReadGuard<'_, Days>> {
        // Counts are plain numbers: a panic elsewhere cannot leave them unusable.
        let d = self.0.read().unwrap_or_else(PoisonError::into_inner);
        (d.date >= today).then_some(d)
    }

    fn lock(&self, today: NaiveDate) -> RwLockWriteGuard<'_, Days> {
        let mut d = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if d.date < today {
            // A new UTC day: yesterday's counts no longer matter.
            d.date = today;
            d.by_provider.clear();
        }
        d
    }

    fn entry<'a>(d: &'a mut Days, provider: i64, model: &str) -> &'a mut Count {
        let models = d.by_provider.entry(provider).or_default();
        // Look up before inserting: the model's name is allocated once, not per request.
        if !models.contains_key(model) {
            models.insert(model.to_string(), Count::default());
        }
        models.get_mut(model).expect("inserted above")
    }

    /// Counts one request started on `provider` for `model`.
    pub fn count_start(&self, provider: i64, model: &str, today: NaiveDate) {
        if let Some(d) = self.read(today)
            && let Some(c) = d.by_provider.get(&provider).and_then(|m| m.get(model))
        {
            add_one(&c.started);
            return;
        }
        let mut d = self.lock(today);
        add_one(&Self::entry(&mut d, provider, model).started);
    }

    /// Requests for `model` on `provider` today, every instance's.
    pub fn get(&self, provider: i64, model: &str, today: NaiveDate) -> u64 {
        // A new day has no counts yet.
        let Some(d) = self.read(today) else {
            return 0;
        };
        d.by_provider
            .get(&provider)
            .and_then(|m| m.get(model))
            .map_or(0, |c| c.others.saturating_add(c.started.load(Ordering::Relaxed)))
    }

    /// This instance wrote `requests` more to `provider`'s row for `model` on `date`.
    pub fn add_flushed(&self, provider: i64, model: &str, date: NaiveDate, requests: u64) {
        let mut d = self.lock(Utc::now().date_naive());
        if d.date != date {
            return;
        }
        let c = Self::entry(&mut d, provider, model);
        c.flushed = c.flushed.saturating_add(requests);
    }

    /// Call before reading today's rows: remembers how much of them is this instance's.
    pub fn begin_read(&self, today: NaiveDate) -> ReadMark {
        let d = self.lock(today);
        let flushed = d
            .by_provider
            .iter()
            .flat_map(|(p, m)| m.iter().map(move |(model, c)| ((*p, model.clone()), c.flushed)))
            .collect();
        ReadMark {
            date: d.date,
            flushed,
        }
    }

    /// Takes the stored totals `(provider, model, total_requests)` read for `mark`'s day.
    pub fn finish_read(&self, mark: ReadMark, rows: impl IntoIterator<Item = (i64, String, u64)>) {
        let mut d = self.lock(mark.date);
        if d.date != mark.date {
            return;
        }
        for models in d.by_provider.values_mut() {
            for c in models.values_mut() {
                c.others = 0;
            }
        }
        for (provider, model, total) in rows {
            let own = mark.flushed.get(&(provider, model.clone())).copied().unwrap_or(0);
            Self::entry(&mut d, provider, &model).others = total.saturating_sub(own);
        }
    }

    /// Forgets a provider (removed).
    pub fn forget(&self, provider: i64) {
        self.lock(Utc::now().date_naive()).by_provider.remove(&provider);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_requests_count_at_once_and_stored_rows_add_others() {
        let c = DailyCounts::default();
        let today = Utc::now().date_naive();
        c.count_start(1, "m", today);
        c.count_start(1, "m", today);
        assert_eq!(c.get(1, "m", today), 2);
        assert_eq!(c.get(1, "other", today), 0);
        // Both were written, and another instance wrote 5 more: the row says 7.
        c.add_flushed(1, "m", today, 2);
        let mark = c.begin_read(today);
        c.finish_read(mark, [(1, "m".to_string(), 7), (2, "m".to_string(), 4)]);
        assert_eq!(c.get(1, "m", today), 7, "not counted twice");
        assert_eq!(c.get(2, "m", today), 4, "after a restart, the stored rows alone");
    }

    #[test]
    fn a_new_day_starts_from_zero() {
        let c = DailyCounts::default();
        let today = Utc::now().date_naive();
        c.count_start(1, "m", today);
        let tomorrow = today.succ_opt().unwrap();
        assert_eq!(c.get(1, "m", tomorrow), 0);
        // A read that began yesterday does not land today.
        let c = DailyCounts::default();
        let mark = c.begin_read(today);
        c.count_start(1, "m", tomorrow);
        c.finish_read(mark, [(1, "m".to_string(), 100)]);
        assert_eq!(c.get(1, "m", tomorrow), 1);
    }

    #[test]
    fn absurd_totals_saturate() {
        let c = DailyCounts::default();
        let today = Utc::now().date_naive();
        c.count_start(1, "m", today);
        let mark = c.begin_read(today);
        c.finish_read(mark, [(1, "m".to_string(), u64::MAX)]);
        assert_eq!(c.get(1, "m", today), u64::MAX);
    }
}
