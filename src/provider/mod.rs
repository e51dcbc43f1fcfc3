//! `ProviderActor`: one per provider. It owns the provider's configuration, its health
//! counters and its retry timer.
//!
//! Workers report every upstream attempt. A failure (or a client error) is an `Outcome`
//! message, handled at once because it changes routing. Successes, the bulk of the traffic,
//! are added to an atomic counter shared with the workers; the first one after the actor last
//! took them rings it with `DrainSuccesses`, and the actor takes the whole batch
//! `BATCH_WINDOW` later. Under load the actor's thread wakes once per window instead of once
//! per request (measured: the per-request message and the thread wake-up it caused were one
//! of the router's largest costs). The actor takes pending successes before anything that
//! reads or changes health, so their order against failures holds.
//!
//! When counted failures reach `max_error_count` it turns unhealthy, tells the `Supervisor`,
//! and arms a retry timer for `retry_after`; when the timer fires it probes the upstream with
//! a real API call and recovers on success. Health is persisted on change, coalesced into at
//! most one write per `SAVE_DELAY`, never once per request.

pub mod health;
pub mod load;
pub mod probe;
pub mod spec;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::events::{Event, EventBus, EventKind, Severity};
use crate::metrics::Metrics;
use crate::routing::AttemptError;
use crate::store::{self, Store};
use health::{Failure, Health, Policy, Transition};
pub use load::LoadCounters;
use load::Window;
pub use probe::{ProbeResult, ProbeSettings};
pub use spec::{ProviderConfig, from_row, to_new_row};

/// How long reported successes (and usage records) gather before their actor takes them.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// How long health changes gather before one write.
const SAVE_DELAY: Duration = Duration::from_millis(250);
/// How long to wait before writing again after a failed write.
const SAVE_RETRY: Duration = Duration::from_secs(2);

/// What every provider actor shares.
#[derive(Clone)]
pub struct ProviderDeps {
    pub store: Addr<Store>,
    pub events: EventBus,
    pub metrics: Arc<Metrics>,
    pub policy: Policy,
    pub probe: ProbeSettings,
}

/// The result of one upstream attempt, reported by the worker that made it.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub latency_ms: u64,
}

/// Successes are waiting in the shared counter: take them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainSuccesses;

/// How an attempt ended, for health. Successes normally go through the shared counter
/// (`LoadCounters::add_success`); this variant is for callers without one.
#[derive(Debug, Clone)]
pub enum OutcomeKind {
    Success {
        status: u16,
    },
    /// Counts against the provider.
    Failure(Failure),
    /// Counts against nobody: a client error passed through, or a client that went away.
    Neutral,
}

/// Why a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReason {
    /// The retry timer of an unhealthy provider.
    Retry,
    /// The periodic background sweep.
    Sweep,
    /// An operator asked (`POST /api/health-check/force/{id}`).
    Forced,
}

/// Probe the upstream now and answer what happened.
#[derive(Message)]
#[rtype(result = "ProbeResult")]
pub struct Probe(pub ProbeReason);

/// The provider's full state, for admin views.
#[derive(Message)]
#[rtype(result = "ProviderState")]
pub struct GetState;

/// Configuration, health and live load of one provider.
#[derive(Debug, Clone)]
pub struct ProviderState {
    pub config: Arc<ProviderConfig>,
    pub health: Health,
    pub inflight: i64,
    /// See `LoadCounters::refuses_stream_options`.
    pub refuses_stream_options: bool,
    pub requests_per_minute: u64,
    pub average_response_time_ms: f64,
}

/// Clear the health counters: healthy, as new.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reset;

/// New configuration for the same provider id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Arc<ProviderConfig>);

/// New failure thresholds.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPolicy(pub Policy);

/// Health read from the database that another instance of a fleet wrote, with the time it
/// was written. Applied without writing it back, unless this actor changed its own standing
/// since (or has not yet written that change): the newer word wins.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyStoredHealth {
    pub health: Health,
    pub written_at: chrono::DateTime<Utc>,
}

/// Write pending health now; answers once it is stored (or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveNow;

/// Stop the actor (provider removed or replaced). Pending health is written first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// What routing knows of a provider's health: just what routing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthView {
    pub is_healthy: bool,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub cooldown_until: Option<DateTime<Utc>>,
}

impl From<&Health> for HealthView {
    fn from(h: &Health) -> Self {
        HealthView {
            is_healthy: h.is_healthy,
            next_retry_at: h.next_retry_at,
            cooldown_until: h.cooldown_until,
        }
    }
}

/// A provider actor's health changed in a way routing cares about.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HealthChanged {
    pub id: i64,
    pub view: HealthView,
}

/// The provider actor.
pub struct ProviderActor {
    config: Arc<ProviderConfig>,
    health: Health,
    load: Arc<LoadCounters>,
    window: Window,
    /// Where health changes go (the Supervisor): a `Recipient`, so the actor knows no
    /// supervisor type and can be tested alone.
    supervisor: Recipient<HealthChanged>,
    deps: ProviderDeps,
    retry_timer: Option<SpawnHandle>,
    /// A write is scheduled.
    save_pending: bool,
    /// Unsaved changes, and whether they include a transition a fleet must see.
    dirty: bool,
    dirty_transition: bool,
    /// When the provider last turned unhealthy, for the time-to-recovery metric.
    unhealthy_since: Option<Instant>,
    /// When this actor last changed the provider's standing itself (transition or reset).
    changed_at: Option<chrono::DateTime<Utc>>,
    /// A probe is under way.
    probing: bool,
}

impl ProviderActor {
    pub fn new(
        config: Arc<ProviderConfig>,
        health: Health,
        load: Arc<LoadCounters>,
        supervisor: Recipient<HealthChanged>,
        deps: ProviderDeps,
    ) -> Self {
        ProviderActor {
            unhealthy_since: (!health.is_healthy).then(Instant::now),
            config,
            health,
            load,
            window: Window::default(),
            supervisor,
            deps,
            retry_timer: None,
            save_pending: false,
            changed_at: None,
            dirty: false,
            dirty_transition: false,
            probing: false,
        }
    }

    fn id(&self) -> i64 {
        self.config.id
    }

    fn event(&self, kind: EventKind, severity: Severity, message: String) -> Event {
        Event::new(kind, severity, message).provider(self.id(), &self.config.name)
    }

    /// Tells the supervisor what routing needs to know.
    fn publish_view(&self) {
        self.supervisor.do_send(HealthChanged {
            id: self.id(),
            view: HealthView::from(&self.health),
        });
    }

    /// Reacts to a health transition: events, metrics, timer, supervisor.
    fn after_transition(&mut self, t: Transition, ctx: &mut Context<Self>) {
        if t != Transition::Unchanged {
            self.changed_at = Some(Utc::now());
        }
        match t {
            Transition::Unchanged => {}
            Transition::BecameUnhealthy => {
                self.unhealthy_since = Some(Instant::now());
                log::warn!(
                    "provider {} (id {}) is unhealthy after {} failures: {}",
                    self.config.name,
                    self.id(),
                    self.health.error_count,
                    self.health.last_error.as_deref().unwrap_or("")
                );
                let retry = self.health.next_retry_at.map(|t| t.to_rfc3339());
                self.deps.events.publish(
                    self.event(
                        EventKind::ProviderUnhealthy,
                        Severity::High,
                        format!("{} failures in a row", self.health.error_count),
                    )
                    .details(serde_json::json!({
                        "last_error": self.health.last_error,
                        "last_status_code": self.health.last_status_code,
                        "next_retry_at": retry,
                    })),
                );
            }
            Transition::Recovered => {
                let took = self.unhealthy_since.take().map(|t| t.elapsed());
                if let Some(d) = took {
                    self.deps.metrics.observe_recovery(d);
                }
                log::info!("provider {} (id {}) recovered", self.config.name, self.id());
                self.deps.events.publish(
                    self.event(
                        EventKind::ProviderRecovered,
                        Severity::Medium,
                        "healthy again".into(),
                    )
                    .details(serde_json::json!({ "unhealthy_for_ms": took.map(|d| d.as_millis() as u64) })),
                );
            }
        }
        self.arm_retry(ctx);
        self.mark_dirty(ctx, t != Transition::Unchanged);
    }

    /// (Re)arms the retry timer while unhealthy; cancels it when healthy.
    fn arm_retry(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.retry_timer.take() {
            ctx.cancel_future(h);
        }
        if self.health.is_healthy {
            return;
        }
        let due = self.health.next_retry_at.unwrap_or_else(Utc::now);
        let delay = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        self.retry_timer = Some(ctx.run_later(delay, |act, ctx| {
            act.retry_timer = None;
            // A probe already under way (sweep or forced) re-arms the timer when it ends.
            if !act.health.is_healthy && !act.probing {
                ctx.notify(Probe(ProbeReason::Retry));
            }
        }));
    }

    /// Schedules one coalesced write of the health row.
    fn mark_dirty(&mut self, ctx: &mut Context<Self>, transition: bool) {
        self.dirty = true;
        self.dirty_transition |= transition;
        if !self.save_pending {
            self.save_pending = true;
            ctx.run_later(SAVE_DELAY, |act, ctx| {
                act.save_pending = false;
                ctx.spawn(act.save().into_actor(act).map(|failed, _, ctx| {
                    // The database is unavailable: keep the change and try again later.
                    if let Some(bump) = failed {
                        ctx.run_later(SAVE_RETRY, move |act, ctx| act.mark_dirty(ctx, bump));
                    }
                }));
            });
        }
    }

    /// Writes the health row if anything changed. Resolves to `Some(transition)` when the
    /// write failed, so the caller can mark the change dirty again.
    fn save(&mut self) -> impl Future<Output = Option<bool>> + 'static {
        let pending = self
            .dirty
            .then(|| (self.health.to_row(self.id()), self.dirty_transition));
        self.dirty = false;
        self.dirty_transition = false;
        let store = self.deps.store.clone();
        let name = self.config.name.clone();
        async move {
            let (row, bump) = pending?;
            match store::run(&store, move |db| db.save_validation(&row, bump)).await {
                Ok(()) => None,
                Err(e) => {
                    log::warn!("saving the health of provider {name} failed, will retry: {e}");
                    Some(bump)
                }
            }
        }
    }

    /// Applies the successes the workers added since the last time.
    fn take_successes(&mut self, ctx: &mut Context<Self>) {
        let (count, latency_sum) = self.load.take_successes();
        if count == 0 {
            return;
        }
        self.window.record_many(Instant::now(), count, latency_sum);
        let was = HealthView::from(&self.health);
        let transition = self.health.record_successes(Utc::now(), count);
        if HealthView::from(&self.health) != was {
            self.publish_view();
        }
        self.after_transition(transition, ctx);
    }

    fn apply_probe(&mut self, result: &ProbeResult, reason: ProbeReason, ctx: &mut Context<Self>) {
        self.take_successes(ctx);
        self.deps.metrics.count_health_check(result.ok);
        let now = Utc::now();
        let transition = if result.ok {
            if self.health.is_healthy || self.deps.policy.auto_recovery {
                let t = self.health.record_success(now, result.status);
                // A refusal that still proves the provider works keeps its detail.
                if let Some(detail) = &result.error {
                    self.health.last_error = Some(detail.clone());
                }
                t
            } else {
                // Recovery by probe is off: note the check, stay unhealthy until a reset.
                self.health.last_validated_at = Some(now);
                self.health.next_retry_at = Some(health::later(now, self.deps.policy.retry_after));
                Transition::Unchanged
            }
        } else {
            let failure = Failure {
                error: result
                    .failure
                    .clone()
                    .unwrap_or_else(|| AttemptError::Transport("probe failed".into())),
            };
            self.health.record_failure(now, &failure, &self.deps.policy)
        };
        let severity = if result.ok {
            Severity::Low
        } else {
            Severity::Medium
        };
        self.deps.events.publish(
            self.event(
                EventKind::ProviderHealthCheck,
                severity,
                if result.ok {
                    "probe succeeded".into()
                } else {
                    "probe failed".into()
                },
            )
            .details(serde_json::json!({
                "reason": reason, "ok": result.ok, "status": result.status,
                "latency_ms": result.latency_ms, "error": result.error,
            })),
        );
        self.publish_view();
        self.after_transition(transition, ctx);
        if !self.health.is_healthy && self.retry_timer.is_none() {
            self.arm_retry(ctx);
        }
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.arm_retry(ctx);
    }
}

impl Handler<Outcome> for ProviderActor {
    type Result = ();

    /// Counts one attempt's result.
    fn handle(&mut self, msg: Outcome, ctx: &mut Context<Self>) {
        self.take_successes(ctx);
        let now = Utc::now();
        self.window.record(Instant::now(), msg.latency_ms);
        let was = HealthView::from(&self.health);
        let transition = match &msg.kind {
            OutcomeKind::Success { status } => self.health.record_success(now, Some(*status)),
            OutcomeKind::Failure(f) => {
                self.deps.metrics.count_attempt_failure(f.error.cause());
                self.deps.events.publish(
                    self.event(
                        EventKind::ProviderRequestFailed,
                        Severity::Medium,
                        f.error.to_string(),
                    )
                    .details(serde_json::json!({
                        "status": f.error.status(),
                        "cause": f.error.cause(),
                        "latency_ms": msg.latency_ms,
                    })),
                );
                self.health.record_failure(now, f, &self.deps.policy)
            }
            OutcomeKind::Neutral => return,
        };
        if HealthView::from(&self.health) != was {
            self.publish_view();
        }
        self.after_transition(transition, ctx);
    }
}

impl Handler<DrainSuccesses> for ProviderActor {
    type Result = ();

    fn handle(&mut self, _: DrainSuccesses, ctx: &mut Context<Self>) {
        ctx.run_later(BATCH_WINDOW, |act, ctx| act.take_successes(ctx));
    }
}

impl Handler<Probe> for ProviderActor {
    type Result = ResponseActFuture<Self, ProbeResult>;

    /// Calls the upstream without blocking the actor: other messages are handled meanwhile.
    fn handle(&mut self, msg: Probe, _: &mut Context<Self>) -> Self::Result {
        let config = self.config.clone();
        let settings = self.deps.probe;
        self.probing = true;
        Box::pin(
            async move { probe::probe(&config, settings).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.probing = false;
                    act.apply_probe(&result, msg.0, ctx);
                    result
                }),
        )
    }
}

impl Handler<GetState> for ProviderActor {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, ctx: &mut Context<Self>) -> Self::Result {
        self.take_successes(ctx);
        let (rpm, avg) = self.window.summary(Instant::now());
        MessageResult(ProviderState {
            config: self.config.clone(),
            health: self.health.clone(),
            inflight: self.load.inflight(),
            refuses_stream_options: self.load.refuses_stream_options(),
            requests_per_minute: rpm,
            average_response_time_ms: avg,
        })
    }
}

impl Handler<Reset> for ProviderActor {
    type Result = ();

    fn handle(&mut self, _: Reset, ctx: &mut Context<Self>) {
        self.take_successes(ctx);
        let was_unhealthy = !self.health.is_healthy;
        self.health.reset();
        self.changed_at = Some(Utc::now());
        self.unhealthy_since = None;
        self.publish_view();
        self.arm_retry(ctx);
        self.mark_dirty(ctx, true);
        if was_unhealthy {
            self.deps.events.publish(self.event(
                EventKind::ProviderRecovered,
                Severity::Medium,
                "reset by an operator".into(),
            ));
        }
    }
}

impl Handler<Reconfigure> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        self.config = msg.0;
    }
}

impl Handler<SetPolicy> for ProviderActor {
    type Result = ();

    /// The new threshold applies from the next failure on.
    fn handle(&mut self, msg: SetPolicy, _: &mut Context<Self>) {
        self.deps.policy = msg.0;
    }
}

impl Handler<ApplyStoredHealth> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyStoredHealth, ctx: &mut Context<Self>) {
        let ours_is_newer = self.dirty_transition || self.changed_at.is_some_and(|t| t >= msg.written_at);
        if ours_is_newer {
            return;
        }
        let cooldown = self.health.cooldown_until;
        let was_healthy = self.health.is_healthy;
        self.health = Health {
            cooldown_until: cooldown,
            ..msg.health
        };
        if was_healthy && !self.health.is_healthy {
            self.unhealthy_since = Some(Instant::now());
        } else if self.health.is_healthy {
            self.unhealthy_since = None;
        }
        self.publish_view();
        self.arm_retry(ctx);
    }
}

impl Handler<SaveNow> for ProviderActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: SaveNow, ctx: &mut Context<Self>) -> Self::Result {
        self.take_successes(ctx);
        let save = self.save();
        Box::pin(async move {
            save.await;
        })
    }
}

impl Handler<Stop> for ProviderActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.spawn(self.save().into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

#[cfg(test)]
mod tests {
    //! The actor alone: no Supervisor, only a `Recipient` that collects what it announces,
    //! and a real SQLite store for its writes.

    use super::*;
    use crate::config::ProbeKind;
    use crate::store::{Backend, DbPool};

    /// Collects every health announcement.
    struct Listener(std::sync::Arc<std::sync::Mutex<Vec<HealthChanged>>>);

    impl Actor for Listener {
        type Context = Context<Self>;
    }

    impl Handler<HealthChanged> for Listener {
        type Result = ();
        fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self>) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
        }
    }

    fn failure() -> Outcome {
        Outcome {
            kind: OutcomeKind::Failure(Failure {
                error: AttemptError::Status {
                    status: 503,
                    class: crate::routing::StatusClass::ProviderError,
                    detail: String::new(),
                    cooldown_ms: None,
                },
            }),
            latency_ms: 5,
        }
    }

    #[actix_rt::test]
    async fn announces_its_transition_to_any_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let pool = DbPool::connect(&Backend::from_url(&url).unwrap(), 1).unwrap();
        crate::store::migrations::run(&pool).unwrap();
        let spec: spec::ProviderSpec = serde_json::from_value(serde_json::json!({
            "name": "alone", "base_url": "http://127.0.0.1:9/v1", "models": ["m"]
        }))
        .unwrap();
        let config = spec.validate(1, 1_000, &|_| None).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let listener = Listener(seen.clone()).start();
        let deps = ProviderDeps {
            store: SyncArbiter::start(1, move || Store::new(pool.clone())),
            events: EventBus::default(),
            metrics: Arc::new(Metrics::default()),
            policy: Policy {
                max_error_count: 2,
                ..Policy::default()
            },
            probe: ProbeSettings {
                kind: ProbeKind::Models,
                timeout: Duration::from_millis(100),
                connect_timeout: Duration::from_millis(100),
                default_cooldown_ms: 1_000,
                max_cooldown_ms: 1_000,
            },
        };
        let actor = ProviderActor::new(
            Arc::new(config),
            Health::healthy(),
            Arc::new(LoadCounters::default()),
            listener.recipient(),
            deps,
        )
        .start();
        actor.send(failure()).await.unwrap();
        actor.send(failure()).await.unwrap();
        // The announcement is a message to the listener: give it a moment to arrive.
        let mut unhealthy = false;
        for _ in 0..100 {
            unhealthy = seen
                .lock()
                .unwrap()
                .iter()
                .any(|c| c.id == 1 && !c.view.is_healthy && c.view.next_retry_at.is_some());
            if unhealthy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            unhealthy,
            "the second failure turned it unhealthy, and it said so"
        );
    }
}
