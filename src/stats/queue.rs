//! The hand-off of usage records from the HTTP workers to the `StatsActor`.
//!
//! A worker appends its record under a short lock, and only the first record after the actor
//! last emptied the queue rings the actor (`DrainUsage`); the actor empties it
//! `BATCH_WINDOW` later. Under load the actor's thread wakes once per window rather than once
//! per request. The queue holds at most what arrives in one window.
//!
//! The queue knows its actor (the actor tells it when it starts), so a worker's attempt holds
//! the queue alone, not the actor's address as well.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use actix::WeakAddr;

use super::aggregate::UsageRecord;
use super::{DrainUsage, StatsActor};

/// Records waiting for the `StatsActor`.
#[derive(Default)]
pub struct UsageQueue {
    records: Mutex<Vec<UsageRecord>>,
    /// The actor has been rung and will empty the queue soon.
    rung: AtomicBool,
    /// The actor to ring. Weak, as the actor holds the queue: a strong address here would
    /// keep it alive in a cycle.
    actor: OnceLock<WeakAddr<StatsActor>>,
}

impl UsageQueue {
    /// Appends a record, ringing the actor when nobody has since it last emptied the queue.
    /// A ring before the actor started is not lost: the actor also empties the queue on
    /// every flush tick.
    pub fn push(&self, record: UsageRecord) {
        if self.append(record)
            && let Some(actor) = self.actor.get().and_then(WeakAddr::upgrade)
        {
            actor.do_send(DrainUsage);
        }
    }

    /// Appends a record; true when the actor must be rung.
    fn append(&self, record: UsageRecord) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        !self.rung.swap(true, Ordering::AcqRel)
    }

    /// The actor that empties this queue (set once, when it starts).
    pub(super) fn attach(&self, actor: WeakAddr<StatsActor>) {
        // A second actor on one queue would be a wiring mistake; the first keeps ringing.
        let _ = self.actor.set(actor);
    }

    /// Takes everything queued; the next record rings again.
    pub fn take(&self) -> Vec<UsageRecord> {
        self.rung.store(false, Ordering::Release);
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
        assert!(q.append(record()));
        assert!(!q.append(record()));
        assert_eq!(q.take().len(), 2);
        assert!(q.append(record()), "rings again once emptied");
    }
}
