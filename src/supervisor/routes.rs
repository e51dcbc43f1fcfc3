//! The routing table: every registered provider with the health view routing needs, the
//! strategies' state, and the queue of requests waiting for a provider at its limit.
//!
//! The `Supervisor` owns it and is its only writer (providers added, changed, removed; health
//! changes from the provider actors). Each change is made under the table's lock, which only
//! writers take, and ends by publishing a new `Snapshot` of the table. Workers answer their
//! picks from the snapshot directly, without any lock: a pick is on every request, asking the
//! supervisor's mailbox instead costs two cross-thread wake-ups, and one lock over the whole
//! table would serialise every worker's picks. The snapshot is shared, not copied per worker:
//! its round-robin rings (one atomic cursor per tier) keep the round-robin exact across
//! workers, and the providers' limiters (one lock each) keep the limits exact.
//!
//! Locks: the queue's before the table's, never the other way round. A `Route` holds its
//! provider's permit and frees it on drop, which serves the queue; so no `Route` is ever
//! dropped while either lock is held.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;

use arc_swap::ArcSwap;

use super::balance::{self, Candidate, Choice};
use super::queue::{QueueRefusal, WaitQueue};
use super::snapshot::Snapshot;
use super::strategy::{Dice, Strategies, Strategy};
use super::{PickResult, ProviderEntry, Route};
use crate::provider::kind::{Endpoint, Service};
use crate::provider::limits::LimitState;
use crate::provider::load::clock_ms;
use crate::provider::spec::ProviderConfig;
use crate::stats::today::DailyCounts;

/// How often a waiting request looks again when nothing it waits for has a known end (a slot
/// freed by a request ending serves the queue at once; this covers the rest, e.g. a provider
/// that recovers).
const WAIT_POLL: Duration = Duration::from_millis(250);

/// How many times a pick chooses again when the slot it chose was taken by a concurrent
/// pick between its check and its claim (the provider is then seen at its limit).
const SLOT_RACES: usize = 4;

/// The providers and the strategies: the writers' copy, behind the table's lock.
#[derive(Default)]
pub(super) struct Table {
    pub(super) providers: BTreeMap<i64, ProviderEntry>,
    pub(super) strategies: Strategies,
}

/// What a waiting request needs routed.
pub struct Waiting {
    pub(super) model: String,
    exclude: Vec<i64>,
    /// Which providers may serve it (by endpoint and format).
    accept: Arc<dyn Fn(&ProviderConfig) -> bool + Send + Sync>,
}

/// The routing queue and its figures.
pub(super) struct Queue {
    pub(super) waiting: WaitQueue<Waiting, PickResult>,
    timeout: Duration,
    stats: QueueStats,
}

/// How the queue has done since start, for the load view and `/metrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueueStats {
    /// Requests that waited and were then routed.
    pub served: u64,
    /// Requests that gave up after `queue_timeout_ms`.
    pub timed_out: u64,
    /// Requests refused at once because `max_queue` were waiting.
    pub refused_full: u64,
    /// Total time waited by requests that left the queue, in ms.
    pub wait_ms_total: u64,
    /// Longest wait so far, in ms.
    pub wait_ms_max: u64,
}

/// The queue as the load view shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueView {
    pub length: usize,
    pub max_queue: usize,
    pub queue_timeout_ms: u64,
    /// How long the oldest waiting request has waited, in ms.
    pub oldest_wait_ms: u64,
    #[serde(flatten)]
    pub stats: QueueStats,
}

impl QueueView {
    /// The queue's lines of the Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(1024);
        out.push_str("# HELP switchyard_queue_length Requests waiting for a provider at its limits.\n");
        out.push_str("# TYPE switchyard_queue_length gauge\n");
        let _ = writeln!(out, "switchyard_queue_length {}", self.length);
        out.push_str(
            "# HELP switchyard_queue_oldest_wait_seconds How long the oldest waiting request has waited.\n",
        );
        out.push_str("# TYPE switchyard_queue_oldest_wait_seconds gauge\n");
        let _ = writeln!(
            out,
            "switchyard_queue_oldest_wait_seconds {}",
            self.oldest_wait_ms as f64 / 1000.0
        );
        out.push_str(
            "# HELP switchyard_queue_requests_total Requests that went through the queue, by outcome.\n",
        );
        out.push_str("# TYPE switchyard_queue_requests_total counter\n");
        for (outcome, n) in [
            ("served", self.stats.served),
            ("timed_out", self.stats.timed_out),
            ("refused_full", self.stats.refused_full),
        ] {
            let _ = writeln!(
                out,
                "switchyard_queue_requests_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP switchyard_queue_wait_seconds_total Time waited in the queue by requests that left it.\n",
        );
        out.push_str("# TYPE switchyard_queue_wait_seconds_total counter\n");
        let _ = writeln!(
            out,
            "switchyard_queue_wait_seconds_total {}",
            self.stats.wait_ms_total as f64 / 1000.0
        );
        out
    }
}

/// A request the queue did not route, with the `Retry-After` to give its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub reason: QueueRefusal,
    pub retry_after: Duration,
}

struct Inner {
    /// Taken by writers only.
    table: Mutex<Table>,
    /// What picks read: replaced whole, under `table`'s lock, after each change.
    snapshot: ArcSwap<Snapshot>,
    /// Requests per provider and model today, for `least_used` (own lock: the `StatsActor`
    /// writes it too).
    daily: Arc<DailyCounts>,
    dice: Dice,
    queue: Mutex<Queue>,
    /// The queue's length, readable without its lock: picks and freed slots look here first,
    /// so with nobody waiting the queue costs one atomic load. Shared with the limiters'
    /// release hooks, which look before reaching for the table.
    waiting: Arc<AtomicUsize>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            table: Mutex::default(),
            snapshot: ArcSwap::default(),
            daily: Arc::default(),
            dice: Dice::default(),
            queue: Mutex::new(Queue {
                waiting: WaitQueue::new(crate::config::RoutingConfig::default().max_queue),
                timeout: Duration::from_millis(crate::config::RoutingConfig::default().queue_timeout_ms),
                stats: QueueStats::default(),
            }),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A shared handle on the routing table.
#[derive(Clone, Default)]
pub struct Routes(Arc<Inner>);

impl Routes {
    /// Changes the table (the supervisor's changes) and publishes its new snapshot before
    /// the lock is released, so snapshots are published in the order of the changes. A panic
    /// while the lock was held leaves a table that routing can still use (the snapshot is
    /// only replaced after `change` returns), so poisoning is ignored rather than turned into
    /// failed requests.
    pub(super) fn change<R>(&self, change: impl FnOnce(&mut Table) -> R) -> R {
        let mut table = self.0.table.lock().unwrap_or_else(PoisonError::into_inner);
        let out = change(&mut table);
        let next = {
            // Its rings carry over where their members are unchanged.
            let previous = self.0.snapshot.load();
            Snapshot::build(&table.providers, &table.strategies, &previous)
        };
        self.0.snapshot.store(Arc::new(next));
        out
    }

    /// The table as of the last change, for reading without a lock.
    pub(super) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.0.snapshot.load()
    }

    pub(super) fn queue(&self) -> MutexGuard<'_, Queue> {
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the queue's bounds (from `[routing]`).
    pub fn set_queue(&self, max_queue: usize, timeout: Duration) {
        let mut q = self.queue();
        q.waiting.set_max(max_queue);
        q.timeout = timeout;
    }

    /// The queue now, for the load view and metrics.
    pub fn queue_view(&self) -> QueueView {
        let q = self.queue();
        QueueView {
            length: q.waiting.len(),
            max_queue: q.waiting.max(),
            queue_timeout_ms: u64::try_from(q.timeout.as_millis()).unwrap_or(u64::MAX),
            oldest_wait_ms: q
                .waiting
                .oldest_wait(Instant::now())
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            stats: q.stats,
        }
    }

    /// A provider's limits and how close it is to them (this instance).
    pub fn limit_state(&self, id: i64) -> Option<LimitState> {
        let limiter = self.snapshot().providers.get(&id)?.limiter.clone();
        Some(limiter.state(Instant::now()))
    }

    /// How the enabled providers of `model` serve `endpoint`: (some natively, some through
    /// translation). Lets a handler translate a body only when a provider needs it.
    pub fn services(&self, model: &str, endpoint: Endpoint) -> (bool, bool) {
        let snapshot = self.snapshot();
        let mut found = (false, false);
        let Some(routes) = snapshot.models.get(model) else {
            return found;
        };
        for e in &routes.listed {
            if !e.config.enabled {
                continue;
            }
            match e.config.serves(endpoint) {
                Some(Service::Native) => found.0 = true,
                Some(Service::Translated) => found.1 = true,
                None => {}
            }
        }
        found
    }

    /// Sets the strategy of every model (from `[routing]`).
    pub fn set_strategies(&self, strategies: Strategies) {
        self.change(|table| table.strategies = strategies);
    }

    /// The strategy `model` is routed by.
    pub fn strategy_for(&self, model: &str) -> Strategy {
        self.snapshot().strategies.for_model(model)
    }

    /// Makes freed slots of `limiter` serve this table's queue.
    pub(super) fn serve_on_release(&self, limiter: &crate::provider::limits::Limiter) {
        let routes = Arc::downgrade(&self.0);
        let waiting = self.0.waiting.clone();
        limiter.on_release(move || {
            // Nobody waiting (the usual case): done, without touching the table's counts.
            if waiting.load(Ordering::Acquire) > 0 {
                serve_after_release(&routes);
            }
        });
    }

    /// Today's request counts the `least_used` strategy reads, for the `StatsActor` to keep
    /// in step with the stored daily rows.
    pub fn daily_counts(&self) -> Arc<DailyCounts> {
        self.0.daily.clone()
    }

    /// Requests in flight over every provider (streams included).
    pub fn inflight(&self) -> i64 {
        self.snapshot()
            .providers
            .values()
            .map(|e| e.load.inflight())
            .sum()
    }

    /// Chooses a provider for `model`, skipping the ids in `exclude`: the model's strategy
    /// among the healthy providers of the best tier (see `balance`). The chosen one's request
    /// is counted for today at once, and holds a slot of its provider's limits until the
    /// `Route` is dropped. While requests for `model` wait in the queue, a new one is told to
    /// wait too (it goes behind them: slots go in arrival order).
    pub fn pick(&self, model: &str, exclude: &[i64]) -> PickResult {
        self.pick_where(model, exclude, |_| true)
    }

    /// Like [`Self::pick`] among the providers `accept` admits (those that can serve the
    /// request's endpoint, say); a model no admitted provider serves is unknown.
    pub fn pick_where(
        &self,
        model: &str,
        exclude: &[i64],
        accept: impl Fn(&ProviderConfig) -> bool,
    ) -> PickResult {
        if self.0.waiting.load(Ordering::Acquire) > 0 && self.queue().waiting.any(|w| w.model == model) {
            return PickResult::AtLimit(None);
        }
        self.pick_now(model, exclude, &accept)
    }

    /// Waits in the queue for a provider of `model` (after `pick` answered `AtLimit`), at most
    /// `queue_timeout_ms` and `max_wait`. The answer is a route, or another final pick result
    /// (e.g. every provider cooling), or a refusal: the queue was full or the wait ran out.
    /// `hint`: when the limit or cool-down that blocks is known to end.
    pub async fn wait(
        &self,
        model: &str,
        exclude: &[i64],
        accept: impl Fn(&ProviderConfig) -> bool + Send + Sync + 'static,
        max_wait: Duration,
        hint: Option<Duration>,
    ) -> Result<PickResult, Refused> {
        let started = Instant::now();
        let joined = {
            let mut q = self.queue();
            let max_wait = max_wait.min(q.timeout);
            let what = Waiting {
                model: model.to_string(),
                exclude: exclude.to_vec(),
                accept: Arc::new(accept),
            };
            let joined = q.waiting.join(what, started);
            self.0.waiting.store(q.waiting.len(), Ordering::Release);
            match joined {
                Ok(place) => Ok((place, max_wait)),
                Err(reason) => {
                    q.stats.refused_full = q.stats.refused_full.saturating_add(1);
                    Err(Refused {
                        reason,
                        retry_after: hint.unwrap_or(q.timeout).max(Duration::from_secs(1)),
                    })
                }
            }
        };
        let (mut place, max_wait) = joined?;
        // Maybe a slot freed between the pick and joining.
        self.serve_queue();
        let deadline = started + max_wait;
        let poll = hint
            .unwrap_or(WAIT_POLL)
            .clamp(Duration::from_millis(10), WAIT_POLL);
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let nap = poll.min(deadline - now);
            match tokio::time::timeout(nap, &mut place.rx).await {
                Ok(Ok(result)) => {
                    self.record_wait(started, true);
                    return Ok(result);
                }
                // The queue is never dropped while a request waits; treat it as timed out.
                Ok(Err(_)) => break,
                // Limits that end with time (rpm, tpm, cool-downs) free slots without any
                // request ending: look again.
                Err(_) => self.serve_queue(),
            }
        }
        let left = {
            let mut q = self.queue();
            let left = q.waiting.leave(place.ticket);
            self.0.waiting.store(q.waiting.len(), Ordering::Release);
            left
        };
        if !left {
            // Served at the last moment: take it.
            if let Ok(result) = place.rx.try_recv() {
                self.record_wait(started, true);
                return Ok(result);
            }
        }
        self.record_wait(started, false);
        Err(Refused {
            reason: QueueRefusal::TimedOut,
            retry_after: hint.unwrap_or(Duration::from_secs(1)).max(Duration::from_secs(1)),
        })
    }

    fn record_wait(&self, started: Instant, served: bool) {
        let waited = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let s = &mut self.queue().stats;
        if served {
            s.served = s.served.saturating_add(1);
        } else {
            s.timed_out = s.timed_out.saturating_add(1);
        }
        s.wait_ms_total = s.wait_ms_total.saturating_add(waited);
        s.wait_ms_max = s.wait_ms_max.max(waited);
    }

    /// Offers free slots to the waiting requests, oldest first. Runs when a slot is freed, a
    /// provider changes, and when a waiter looks again.
    pub fn serve_queue(&self) {
        if self.0.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let unclaimed = {
            let mut q = self.queue();
            let unclaimed = q
                .waiting
                .serve(|w| match self.pick_now(&w.model, &w.exclude, &*w.accept) {
                    PickResult::AtLimit(_) => None,
                    other => Some(other),
                });
            self.0.waiting.store(q.waiting.len(), Ordering::Release);
            unclaimed
        };
        // Dropped here, outside the locks: a dropped route frees its slot and serves again.
        drop(unclaimed);
    }

    /// The pick itself (see `pick`), regardless of the queue.
    fn pick_now(&self, model: &str, exclude: &[i64], accept: &dyn Fn(&ProviderConfig) -> bool) -> PickResult {
        let snapshot = self.snapshot();
        let Some(routes) = snapshot.models.get(model) else {
            return PickResult::UnknownModel;
        };
        let serving = || {
            routes
                .listed
                .iter()
                .filter(|e| e.config.enabled && accept(&e.config))
        };
        let mut result = PickResult::UnknownModel;
        for _ in 0..SLOT_RACES {
            let now = Utc::now();
            let instant = std::time::Instant::now();
            // Only what the strategy reads.
            let reads = Reads::of(routes.strategy);
            let clock_ms = if reads.latency { clock_ms() } else { 0 };
            let mut serves_model = false;
            let candidates: Vec<Candidate> = serving()
                .inspect(|_| serves_model = true)
                .filter(|e| !exclude.contains(&e.config.id))
                .map(|e| candidate(e, model, reads, &self.0.daily, now, instant, clock_ms))
                .collect();
            if !serves_model {
                return PickResult::UnknownModel;
            }
            let choice = balance::choose(
                &routes.tiers,
                routes.strategy,
                &candidates,
                now,
                // Round-robin needs no dice: no shared counter to move.
                if routes.strategy == Strategy::WeightedRoundRobin {
                    0
                } else {
                    self.0.dice.roll()
                },
                &mut |ring, cursor| ring.claim(cursor),
            );
            result = match choice {
                Choice::Picked(id) => match routes.listed.iter().find(|e| e.config.id == id) {
                    Some(e) => {
                        let permit = match e.limiter.try_acquire(instant) {
                            Ok(p) => p,
                            // Another pick took the slot since the check: choose again, now
                            // seeing this provider at its limit.
                            Err(b) => {
                                result = PickResult::AtLimit(b.free_in);
                                continue;
                            }
                        };
                        self.0.daily.count_start(id, model, now.date_naive());
                        PickResult::Route(Route {
                            permit: Some(Arc::new(permit)),
                            upstream_model: e
                                .config
                                .model(model)
                                .and_then(|m| m.upstream())
                                .map(str::to_string),
                            entry: e.clone(),
                        })
                    }
                    None => PickResult::Exhausted,
                },
                Choice::AllCooling(wait) => {
                    // Tell the client the soonest any provider of the model is free again,
                    // the ones this request already tried included.
                    let soonest = serving()
                        .filter_map(|e| e.view.cooldown_until)
                        .filter(|t| *t > now)
                        .min()
                        .and_then(|t| (t - now).to_std().ok());
                    PickResult::CoolingDown(soonest.map_or(wait, |s| s.min(wait)))
                }
                Choice::AtLimit(free_in) => PickResult::AtLimit(free_in),
                Choice::NoneLeft => PickResult::Exhausted,
            };
            break;
        }
        result
    }
}

/// Which figures a candidate is read with: those its strategy ranks by (each costs atomic
/// loads or a clock read, the daily count a lock), or all of them for the explain view.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reads {
    daily: bool,
    latency: bool,
    inflight: bool,
}

impl Reads {
    pub(super) const ALL: Reads = Reads {
        daily: true,
        latency: true,
        inflight: true,
    };

    pub(super) fn of(strategy: Strategy) -> Reads {
        Reads {
            daily: strategy == Strategy::LeastUsed,
            latency: matches!(strategy, Strategy::LowestLatency | Strategy::LeastBusy),
            inflight: strategy == Strategy::LeastBusy,
        }
    }
}

/// The candidate a provider is for `model` now. `clock_ms`: the load counters' clock now,
/// read once per pick (`provider::load::clock_ms`).
pub(super) fn candidate(
    e: &ProviderEntry,
    model: &str,
    reads: Reads,
    daily: &DailyCounts,
    now: chrono::DateTime<Utc>,
    instant: Instant,
    clock_ms: u64,
) -> Candidate {
    let latency = if reads.latency {
        e.load.latency_at(clock_ms)
    } else {
        None
    };
    Candidate {
        id: e.config.id,
        weight: e.config.weight,
        priority: e.config.priority,
        is_healthy: e.view.is_healthy,
        next_retry_at: e.view.next_retry_at,
        cooldown_until: e.view.cooldown_until,
        requests_today: if reads.daily {
            daily.get(e.config.id, model, now.date_naive())
        } else {
            0
        },
        latency_ms: latency.map(|l| l.0),
        latency_idle: latency.map(|l| l.1).unwrap_or_default(),
        inflight: if reads.inflight {
            u64::try_from(e.load.inflight()).unwrap_or(0)
        } else {
            0
        },
        limited: e.limiter.check(instant).err(),
    }
}

/// A permit's release hook: serve the queue, if the table still exists.
fn serve_after_release(routes: &Weak<Inner>) {
    if let Some(inner) = routes.upgrade() {
        Routes(inner).serve_queue();
    }
}
