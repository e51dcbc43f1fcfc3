//! The in-memory usage aggregate: totals keyed by (provider, model, UTC day). Its size is
//! bounded by providers × models × days pending, not by the number of requests, so holding it
//! through a database outage costs little memory and drops nothing.

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};

use foldhash::HashMap;

use crate::store::UsageRow;

/// How a finished upstream attempt counts in usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageResult {
    /// Answered (2xx, or a stream that ended cleanly).
    Success,
    /// Counted against the provider (error, timeout, broken stream).
    Failure,
    /// Counted in `total_requests` only: a client error passed through, or a client that
    /// disconnected. So `total = success + failed + client errors and cancellations`.
    Neutral,
}

/// One finished upstream attempt.
#[derive(Debug, Clone)]
pub struct UsageRecord {
    pub provider_id: i64,
    /// The model name the client asked for.
    pub model: String,
    pub at: DateTime<Utc>,
    pub result: UsageResult,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub latency_ms: u64,
}

/// Totals waiting to be written.
///
/// Keyed by (provider, day), then by model: a record finds its row by its model's `&str`, so
/// adding to a row that exists (nearly every record) copies no string. Every request's record
/// passes through here. foldhash, not SipHash: a record exists only for an attempt on a
/// configured provider's model, so clients cannot choose the keys.
#[derive(Debug, Default)]
pub struct Aggregate {
    rows: HashMap<(i64, NaiveDate), HashMap<String, UsageRow>>,
    /// Rows over all (provider, day) entries.
    len: usize,
    /// When the oldest pending record was added.
    oldest: Option<DateTime<Utc>>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A record's token count, clamped (records can come from anywhere: see `MAX_TOKENS`).
fn tokens(v: u64) -> i64 {
    to_i64(v.min(crate::upstream::usage::MAX_TOKENS))
}

impl Aggregate {
    /// Adds one record.
    pub fn add(&mut self, r: &UsageRecord) {
        let at = r.at.naive_utc().trunc_subsecs(6);
        let increment = UsageRow {
            total_requests: 1,
            success_requests: i64::from(r.result == UsageResult::Success),
            failed_requests: i64::from(r.result == UsageResult::Failure),
            prompt_tokens: tokens(r.prompt_tokens),
            completion_tokens: tokens(r.completion_tokens),
            total_tokens: tokens(r.total_tokens),
            total_response_time_ms: to_i64(r.latency_ms),
            // The model is the key's, given apart: an empty `String` does not allocate.
            ..UsageRow::zero(r.provider_id, String::new(), r.at.date_naive(), at)
        };
        self.absorb(&r.model, &increment);
        self.oldest.get_or_insert(r.at);
    }

    /// Adds `increment`'s counts to the row of (its provider, `model`, its day).
    fn absorb(&mut self, model: &str, increment: &UsageRow) {
        let models = self
            .rows
            .entry((increment.provider_id, increment.date))
            .or_default();
        match models.get_mut(model) {
            Some(row) => row.absorb(increment),
            None => {
                let mut row = UsageRow::zero(
                    increment.provider_id,
                    model.to_owned(),
                    increment.date,
                    increment.last_used_at,
                );
                row.absorb(increment);
                models.insert(model.to_owned(), row);
                self.len += 1;
            }
        }
    }

    /// Distinct rows pending.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When the oldest pending record arrived.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.oldest
    }

    /// Empties the aggregate into increments ready for the additive upsert.
    pub fn take(&mut self) -> Vec<UsageRow> {
        self.oldest = None;
        let mut out = Vec::with_capacity(self.len);
        self.len = 0;
        for (_, models) in self.rows.drain() {
            out.extend(models.into_values());
        }
        out
    }

    /// Puts increments that could not be written back, so the next flush retries them.
    pub fn merge_back(&mut self, batch: Vec<UsageRow>, since: Option<DateTime<Utc>>) {
        for row in batch {
            self.absorb(&row.model, &row);
        }
        self.oldest = match (self.oldest, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// A copy of the pending increments (for admin views that add unflushed usage).
    pub fn snapshot(&self) -> Vec<UsageRow> {
        self.rows.values().flat_map(|m| m.values().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(provider_id: i64, result: UsageResult, tokens: u64) -> UsageRecord {
        UsageRecord {
            provider_id,
            model: "m".into(),
            at: Utc::now(),
            result,
            prompt_tokens: tokens,
            completion_tokens: 1,
            total_tokens: tokens + 1,
            latency_ms: 10,
        }
    }

    #[test]
    fn aggregates_by_provider_and_model() {
        let mut a = Aggregate::default();
        a.add(&rec(1, UsageResult::Success, 5));
        a.add(&rec(1, UsageResult::Failure, 0));
        a.add(&rec(1, UsageResult::Neutral, 0));
        a.add(&rec(2, UsageResult::Success, 3));
        assert_eq!(a.len(), 2);
        let mut rows = a.take();
        rows.sort_by_key(|r| r.provider_id);
        assert!(a.is_empty());
        assert_eq!(
            (
                rows[0].total_requests,
                rows[0].success_requests,
                rows[0].failed_requests
            ),
            (3, 1, 1)
        );
        assert_eq!(rows[0].prompt_tokens, 5);
        assert_eq!(rows[0].avg_response_time_ms, 10.0);
        assert_eq!(rows[1].total_tokens, 4);
    }

    #[test]
    fn one_row_per_provider_model_and_day() {
        let mut a = Aggregate::default();
        let mut other_model = rec(1, UsageResult::Success, 2);
        other_model.model = "n".into();
        let mut yesterday = rec(1, UsageResult::Success, 4);
        yesterday.at -= chrono::Duration::days(1);
        for r in [
            rec(1, UsageResult::Success, 1),
            other_model.clone(),
            yesterday,
            other_model,
        ] {
            a.add(&r);
        }
        assert_eq!(a.len(), 3);
        assert_eq!(a.snapshot().len(), 3);
        let mut rows = a.take();
        assert_eq!((a.is_empty(), a.len(), a.snapshot().len()), (true, 0, 0));
        rows.sort_by(|x, y| (x.date, &x.model).cmp(&(y.date, &y.model)));
        let seen: Vec<_> = rows
            .iter()
            .map(|r| (r.model.as_str(), r.total_requests, r.prompt_tokens))
            .collect();
        assert_eq!(seen, [("m", 1, 4), ("m", 1, 1), ("n", 2, 4)]);
        // Written back after a failed flush: the same three rows, none doubled or lost.
        a.merge_back(rows, None);
        assert_eq!(a.len(), 3);
        assert_eq!(a.take().iter().map(|r| r.total_requests).sum::<i64>(), 4);
    }

    #[test]
    fn a_failed_batch_merges_back_without_loss() {
        let mut a = Aggregate::default();
        a.add(&rec(1, UsageResult::Success, 5));
        let since = a.oldest();
        let batch = a.take();
        a.add(&rec(1, UsageResult::Success, 5));
        a.merge_back(batch, since);
        let rows = a.take();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].total_requests, 2);
        assert_eq!(rows[0].prompt_tokens, 10);
    }
}
