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
//! `ReadUsage` (the admin views) reads the stored rows and adds what is not stored yet. The
//! read and this actor's writes take turns: a read never runs while a batch is being
//! written, and no write starts while a read runs, so a batch is counted exactly once, either
//! in the rows read or in what is added. Reads queue behind a wanted write, so steady reading
//! never holds writes back.
//!
//! A write whose COMMIT reached the database but whose acknowledgement was lost would be
//! retried and counted twice; with a local or LAN database this needs the connection to die
//! in that instant, and the design accepts that rare double count rather than keep a
//! per-batch ledger.

pub mod aggregate;
pub mod queue;
pub mod recent;
pub mod today;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::metrics::{Metrics, RequestOutcome};
use crate::store::{self, Store, StoreError, UsageFilter, UsageRow};
use aggregate::Aggregate;
pub use aggregate::{UsageRecord, UsageResult};
pub use queue::UsageQueue;
use recent::{MinuteCount, RecentRequests};
use today::DailyCounts;

/// How often today's stored rows are read again when nothing was written meanwhile (other
/// instances of a fleet write too).
const DAILY_REFRESH: Duration = Duration::from_secs(5);

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

/// Daily usage rows matching the filter, stored and not yet stored, each batch counted once.
#[derive(Message)]
#[rtype(result = "Result<Vec<UsageRow>, StoreError>")]
pub struct ReadUsage(pub UsageFilter);

/// A reader waiting for its turn.
type QueuedRead = (UsageFilter, oneshot::Sender<Result<Vec<UsageRow>, StoreError>>);

/// Recent activity and the state of the usage writes, for the dashboard's overview.
#[derive(Message)]
#[rtype(result = "RecentActivity")]
pub struct Recent;

/// The answer to [`Recent`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentActivity {
    /// Finished attempts per minute over the last hour, oldest first (this instance).
    pub per_minute: Vec<MinuteCount>,
    /// How long the oldest unwritten usage has waited, in ms (0 when nothing is pending).
    pub flush_lag_ms: u64,
    /// Aggregate rows waiting to be written (and being written).
    pub pending_rows: usize,
    /// Failed writes in a row (0 once a write succeeds).
    pub flush_failures: u32,
    /// When usage was last written.
    pub last_flush_at: Option<chrono::DateTime<chrono::Utc>>,
}

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
    /// Reads under way; no write starts meanwhile (see the module documentation).
    reads_in_flight: usize,
    /// A write waits for the reads under way; new reads queue behind it.
    write_wanted: bool,
    queued_reads: Vec<QueuedRead>,
    recent: RecentRequests,
    last_flush_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The oldest record of the batch being written (the lag must count it while the write
    /// is slow, which is when the lag matters).
    writing_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Today's counts for `least_used`, kept in step with the stored rows.
    daily: Option<Arc<DailyCounts>>,
    /// A read of today's rows is under way / when the last one started.
    reading: bool,
    last_read: Option<Instant>,
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
            daily: None,
            reading: false,
            last_read: None,
            reads_in_flight: 0,
            write_wanted: false,
            queued_reads: Vec::new(),
            recent: RecentRequests::default(),
            last_flush_at: None,
            writing_since: None,
        }
    }

    /// Reads stored rows; adds what is pending when the read is back (no write of ours ran
    /// in between, so nothing is in both or in neither).
    fn start_read(
        &mut self,
        filter: UsageFilter,
        reply: oneshot::Sender<Result<Vec<UsageRow>, StoreError>>,
        ctx: &mut Context<Self>,
    ) {
        self.reads_in_flight += 1;
        let store = self.store.clone();
        let f = filter.clone();
        let read = async move { store::run(&store, move |db| db.usage(&f)).await };
        ctx.spawn(read.into_actor(self).map(move |result, act, ctx| {
            // Still counted as reading here, so the drain cannot start a write that would
            // take rows out of `pending` before they are added to this answer.
            act.drain(ctx);
            let answer = result.map(|stored| view::merge_pending(stored, act.pending.snapshot(), &filter));
            act.reads_in_flight -= 1;
            let _ = reply.send(answer);
            if act.reads_in_flight == 0 && act.write_wanted {
                act.write_wanted = false;
                act.start_write(ctx);
                act.run_queued_reads(ctx);
            }
        }));
    }

    /// Starts the reads that waited for a write, unless one is running.
    fn run_queued_reads(&mut self, ctx: &mut Context<Self>) {
        if self.writing.is_some() || self.write_wanted {
            return;
        }
        for (filter, reply) in std::mem::take(&mut self.queued_reads) {
            self.start_read(filter, reply, ctx);
        }
    }

    /// Keeps `daily` in step with the stored daily rows: read at start, after each write and
    /// every `DAILY_REFRESH`, always off the request path.
    pub fn with_daily_counts(mut self, daily: Arc<DailyCounts>) -> Self {
        self.daily = Some(daily);
        self
    }

    /// Reads today's stored totals into `daily`, unless a read is under way.
    fn refresh_daily(&mut self, ctx: &mut Context<Self>) {
        let Some(daily) = self.daily.clone() else {
            return;
        };
        if self.reading {
            return;
        }
        self.reading = true;
        self.last_read = Some(Instant::now());
        let mark = daily.begin_read(chrono::Utc::now().date_naive());
        let filter = store::UsageFilter {
            from: Some(mark.date()),
            to: Some(mark.date()),
            ..Default::default()
        };
        let store = self.store.clone();
        let read = async move { store::run(&store, move |db| db.usage(&filter)).await };
        ctx.spawn(read.into_actor(self).map(move |result, act, _| {
            act.reading = false;
            match result {
                Ok(rows) => daily.finish_read(
                    mark,
                    rows.into_iter().map(|r| {
                        (
                            r.provider_id,
                            r.model,
                            u64::try_from(r.total_requests).unwrap_or(0),
                        )
                    }),
                ),
                Err(e) => log::debug!("reading today's usage failed: {e}"),
            }
        }));
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
        if self.reads_in_flight > 0 {
            self.write_wanted = true;
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
        self.writing_since = since;
        let store = self.store.clone();
        let write = async move { store::run(&store, move |db| db.add_usage(&batch)).await };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            let batch = act.writing.take().unwrap_or_default();
            act.writing_since = None;
            match &result {
                Ok(()) => {
                    act.failures = 0;
                    act.retry_at = None;
                    act.last_flush_at = Some(chrono::Utc::now());
                    if let Some(daily) = &act.daily {
                        for r in &batch {
                            let requests = u64::try_from(r.total_requests).unwrap_or(0);
                            daily.add_flushed(r.provider_id, &r.model, r.date, requests);
                        }
                        act.refresh_daily(ctx);
                    }
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
            act.run_queued_reads(ctx);
        }));
    }

    /// Moves queued records into the aggregate (and the request metrics).
    fn drain(&mut self, ctx: &mut Context<Self>) {
        let records = self.queue.take();
        if records.is_empty() {
            return;
        }
        let was_empty = self.pending.is_empty();
        let now = chrono::Utc::now();
        for r in &records {
            self.recent.add(r.at, r.result, now);
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
        if self.last_read.is_none_or(|t| t.elapsed() >= DAILY_REFRESH) {
            self.refresh_daily(ctx);
        }
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
        self.queue.attach(ctx.address().downgrade());
        self.refresh_daily(ctx);
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

impl Handler<ReadUsage> for StatsActor {
    type Result = ResponseFuture<Result<Vec<UsageRow>, StoreError>>;

    fn handle(&mut self, msg: ReadUsage, ctx: &mut Context<Self>) -> Self::Result {
        self.drain(ctx);
        let (tx, rx) = oneshot::channel();
        if self.writing.is_some() || self.write_wanted {
            self.queued_reads.push((msg.0, tx));
        } else {
            self.start_read(msg.0, tx, ctx);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Mailbox)) })
    }
}

impl Handler<Recent> for StatsActor {
    type Result = MessageResult<Recent>;

    fn handle(&mut self, _: Recent, ctx: &mut Context<Self>) -> Self::Result {
        self.drain(ctx);
        let now = chrono::Utc::now();
        let oldest = match (self.pending.oldest(), self.writing_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let flush_lag_ms = oldest
            .map(|t| (now - t).num_milliseconds().max(0) as u64)
            .unwrap_or(0);
        MessageResult(RecentActivity {
            per_minute: self.recent.last_hour(now),
            flush_lag_ms,
            pending_rows: self.pending.len() + self.writing.as_ref().map_or(0, Vec::len),
            flush_failures: self.failures,
            last_flush_at: self.last_flush_at,
        })
    }
}
