//! The hand-off of usage records from the HTTP workers to the `StatsActor`.
//!
//! A worker appends its record under a short lock, and only the first record after the actor
//! last emptied the queue rings the actor (`DrainUsage`); the actor empties it
//! `BATCH_WINDOW` later. Under load the actor's thread wakes once per window rather than once
//! per request. The queue holds at most what arrives in one window.

use std::sync::Mutex;

use super::aggregate::UsageRecord;

/// Records waiting for the `StatsActor`.
#[derive(Debug, Default)]
pub struct UsageQueue {
    records: Mutex<Vec<UsageRecord>>,
    /// The actor has been rung and will empty the queue soon.
    rung: std::sync::atomic::AtomicBool,
}

impl UsageQueue {
    /// Appends a record. Returns true when nobody has rung the actor since it last emptied
    /// the queue: the caller rings it.
    pub fn push(&self, record: UsageRecord) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        !self.rung.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Takes everything queued; the next record rings again.
    pub fn take(&self) -> Vec<UsageRecord> {
        self.rung.store(false, std::sync::atomic::Ordering::Release);
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
