//! The hand-off of usage records from the HTTP workers to the `StatsActor`.
//!
//! A worker appends its record under a short lock, and only the first record after the actor
//! last emptied the queue rings the actor (`DrainUsage`). Under load the actor's thread wakes
//! once per batch rather than once per request; at low load it is one message per request,
//! as before. The queue holds at most what arrives between two drains.

use std::sync::Mutex;

use super::aggregate::UsageRecord;

/// Records waiting for the `StatsActor`.
#[derive(Debug, Default)]
pub struct UsageQueue {
    records: Mutex<Vec<UsageRecord>>,
}

impl UsageQueue {
    /// Appends a record. Returns true when the queue was empty: the caller rings the actor.
    pub fn push(&self, record: UsageRecord) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records.push(record);
        records.len() == 1
    }

    /// Takes everything queued.
    pub fn take(&self) -> Vec<UsageRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::UsageResult;

    fn record() -> UsageRecord {
        UsageRecord {
            provider_id: 1,
            model: "m".into(),
            at: chrono::Utc::now(),
            result: UsageResult::Success,
            prompt_tokens: 1,
            completion_tokens: 1,
            total_tokens: 2,
            latency_ms: 3,
        }
    }

    #[test]
    fn only_the_first_record_rings() {
        let q = UsageQueue::default();
        assert!(q.push(record()));
        assert!(!q.push(record()));
        assert_eq!(q.take().len(), 2);
        assert!(q.push(record()), "rings again once emptied");
    }
}
