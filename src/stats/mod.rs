//! `StatsActor`: takes one usage record per finished upstream attempt from the `UsageQueue`
//! (rung by `DrainUsage`, see `queue`) and writes daily totals.
//!
//! Records are aggregated in memory by (provider, model, UTC day) and flushed every
//! `flush_ms`, or sooner when `max_batch_rows` rows are pending, as additive upserts through
//! the `Store`, so any number of writers can add to the same row. One write runs at a time.
//! A failed write is merged back and retried with backoff: nothing is dropped. `Flush`
//! answers once everything recorded before it is stored, which is what shutdown and tests
//! wait on.
//!
//! A write whose COMMIT reached the database but whose acknowledgement was lost would be
//! retried and counted twice; with a local or LAN database this needs the connection to die
//! in that instant, and the design accepts that rare double count rather than keep a
//! per-batch ledger.

pub mod aggregate;
pub mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, RequestOutcome};
use crate::store::{self, Store, StoreError, UsageRow};
use aggregate::Aggregate;
pub use aggregate::{UsageRecord, UsageResult};
pub use queue::UsageQueue;

/// Longest wait between retries of a failed write.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Records are waiting in the `UsageQueue`: take them.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct DrainUsage;

/// Write everything pending; answers when it is stored.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

/// What is recorded but not yet stored (pending and being written).
#[derive(Message)]
#[rtype(result = "Vec<UsageRow>")]
pub struct Pending;

/// The stats actor.
pub struct StatsActor {
    queue: Arc<UsageQueue>,
    store: Addr<Store>,
    metrics: Arc<Metrics>,
    flush_every: Duration,
    max_batch_rows: usize,
    pending: Aggregate,
    /// The batch being written, kept for `Pending` until it is stored.
    writing: Option<Vec<UsageRow>>,
    /// Callers answered by the write in progress / by the next one.
    waiters_now: Vec<oneshot::Sender<Result<(), StoreError>>>,
    waiters_next: Vec<oneshot::Sender<Result<(), StoreError>>>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl StatsActor {
    pub fn new(
        queue: Arc<UsageQueue>,
        store: Addr<Store>,
        metrics: Arc<Metrics>,
        flush_every: Duration,
        max_batch_rows: usize,
    ) -> Self {
        StatsActor {
            queue,
            store,
            metrics,
            flush_every,
            max_batch_rows,
            pending: Aggregate::default(),
            writing: None,
            waiters_now: Vec::new(),
            waiters_next: Vec::new(),
            failures: 0,
            retry_at: None,
        }
    }

    fn update_lag_metric(&self) {
        let oldest = self.pending.oldest().map(|t| t.timestamp_millis().max(0) as u64);
        self.metrics.set_stats_pending_since(oldest);
    }

    /// Starts a write of everything pending, unless one is running.
    fn start_write(&mut self, ctx: &mut Context<Self>) {
        if self.writing.is_some() {
            return;
        }
        self.waiters_now = std::mem::take(&mut self.waiters_next);
        if self.pending.is_empty() {
            for w in self.waiters_now.drain(..) {
                let _ = w.send(Ok(()));
            }
            return;
        }
        let since = self.pending.oldest();
        let batch = self.pending.take();
        self.writing = Some(batch.clone());
        let store = self.store.clone();
        let write = async move { store::run(&store, move |db| db.add_usage(&batch)).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            let batch = act.writing.take().unwrap_or_default();
            match &result {
                Ok(()) => {
                    act.failures = 0;
                    act.retry_at = None;
                }
                Err(e) => {
                    act.failures += 1;
                    let backoff =
                        (act.flush_every * 2u32.saturating_pow(act.failures.min(16))).min(MAX_BACKOFF);
                    act.retry_at = Some(Instant::now() + backoff);
                    act.metrics.count_stats_flush_failure();
                    log::warn!(
                        "writing usage failed ({} rows kept, retry in {} ms): {e}",
                        batch.len(),
                        backoff.as_millis()
                    );
                    act.pending.merge_back(batch, since);
                }
            }
            act.update_lag_metric();
            for w in act.waiters_now.drain(..) {
                let _ = w.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::Failed(e.to_string())),
                });
            }
            if !act.waiters_next.is_empty() {
                act.start_write(ctx);
            }
        }));
    }

    /// Moves queued records into the aggregate (and the request metrics).
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let records = self.queue.take();
        if records.is_empty() {
            return;
        }
        let was_empty = self.pending.is_empty();
        for r in &records {
            let outcome = match r.result {
                UsageResult::Success => RequestOutcome::Success,
                UsageResult::Failure => RequestOutcome::Failure,
                UsageResult::Neutral => RequestOutcome::ClientError,
            };
            self.metrics.count_request(
                r.provider_id,
                &r.model,
                outcome,
                Duration::from_millis(r.latency_ms),
            );
            self.pending.add(r);
        }
        if was_empty {
            self.update_lag_metric();
        }
        if self.pending.len() >= self.max_batch_rows && self.retry_at.is_none() {
            self.start_write(ctx);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.drain(ctx);
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if !self.pending.is_empty() {
            self.start_write(ctx);
        }
    }
}

impl Actor for StatsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16 * 1024);
        ctx.run_interval(self.flush_every, |act, ctx| act.tick(ctx));
    }
}

impl Handler<DrainUsage> for StatsActor {
    type Result = ();

    /// Empties the queue a moment later, so the records of that window come in one go.
    fn handle(&mut self, _: DrainUsage, ctx: &mut Context<Self>) {
        ctx.run_later(crate::provider::BATCH_WINDOW, |act, ctx| act.drain(ctx));
    }
}

impl Handler<Flush> for StatsActor {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) -> Self::Result {
        self.drain(ctx);
        let (tx, rx) = oneshot::channel();
        self.waiters_next.push(tx);
        self.start_write(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Mailbox)) })
    }
}

impl Handler<Pending> for StatsActor {
    type Result = MessageResult<Pending>;

    fn handle(&mut self, _: Pending, ctx: &mut Context<Self>) -> Self::Result {
        self.drain(ctx);
        let mut rows = self.pending.snapshot();
        if let Some(w) = &self.writing {
            rows.extend(w.iter().cloned());
        }
        MessageResult(rows)
    }
}
