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
//!
//! In a fleet, a provider's *standing* (healthy or not, next retry) is shared and its counters
//! are not (see `standing`): the actor writes its standing only when it changes, with a
//! conditional write, and applies a newer one learned from the fleet (`ApplyStanding`) with the
//! same events and retry timer. On an unhealthy provider only a probe or the success of an
//! attempt that started after the mark (`LoadCounters::started_after_mark`) recovers it.

pub mod health;
pub mod kind;
pub mod limits;
pub mod load;
pub mod not_loaded;
pub mod probe;
pub mod recovery;
pub mod spec;
pub mod standing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use crate::events::{Event, EventBus, EventKind, Severity};
use crate::metrics::Metrics;
use crate::routing::AttemptError;
use crate::store::{self, StandingWrite, Store, StoreError};
use health::{Failure, Health, Policy, Transition};
pub use load::LoadCounters;
use load::Window;
pub use probe::{ProbeResult, ProbeSettings};
pub use spec::{ProviderConfig, from_row, to_new_row};
use standing::{Cause, Standing};

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
    /// The standing this instance holds (see `standing`).
    pub standing: Standing,
}

/// New configuration for the same provider id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure(pub Arc<ProviderConfig>);

/// New failure thresholds.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPolicy(pub Policy);

/// A standing read from the database (written by another instance, or an operator's reset
/// stored by the admin API). Applied when newer than the one held, never written back; an
/// operator's reset also clears the counters.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyStanding(pub Standing);

/// Write pending health now; answers once it is stored (or failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveNow;

/// Stop the actor (provider removed or replaced). Pending health is written first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// What a write of the actor's health did.
struct Saved {
    counters_failed: bool,
    /// The generation the standing write was based on, and its result.
    standing: Option<(i64, Result<StandingWrite, StoreError>)>,
}

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
    /// A write is under way: the next one waits for it, so a standing write is always based
    /// on the generation the previous one stored.
    saving: bool,
    /// Unsaved counters.
    dirty: bool,
    /// The standing held; `standing_dirty` when it changed here and is not stored yet (its
    /// `generation` is still the one the change is based on).
    standing: Standing,
    standing_dirty: bool,
    /// Whether the routing table was last told the provider is healthy.
    published_healthy: bool,
    /// When the provider last turned unhealthy, for the time-to-recovery metric.
    unhealthy_since: Option<Instant>,
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
            standing: Standing {
                is_healthy: health.is_healthy,
                next_retry_at: health.next_retry_at,
                ..Standing::initial()
            },
            standing_dirty: false,
            published_healthy: health.is_healthy,
            saving: false,
            config,
            health,
            load,
            window: Window::default(),
            supervisor,
            deps,
            retry_timer: None,
            save_pending: false,
            dirty: false,
            probing: false,
        }
    }

    fn id(&self) -> i64 {
        self.config.id
    }

    fn event(&self, kind: EventKind, severity: Severity, message: String) -> Event {
        Event::new(kind, severity, message).provider(self.id(), &self.config.name)
    }

    /// Tells the supervisor what routing needs to know. When the provider turns unhealthy,
    /// successes stop counting as fresh first, until the table has turned away from it.
    fn publish_view(&mut self) {
        if self.published_healthy && !self.health.is_healthy {
            self.load.turning_away();
        }
        self.published_healthy = self.health.is_healthy;
        self.supervisor.do_send(HealthChanged {
            id: self.id(),
            view: HealthView::from(&self.health),
        });
    }

    /// Reacts to a health transition: events, metrics, timer, supervisor.
    fn after_transition(&mut self, t: Transition, ctx: &mut Context<Self>) {
        match t {
            Transition::Unchanged => {}
            Transition::BecameUnhealthy => {
                self.standing_changed(Cause::Unhealthy);
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
                self.standing_changed(Cause::Recovered);
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
        self.mark_dirty(ctx);
    }

    /// This instance changed the standing: it is written (coalesced) on top of the generation
    /// held, and spreads from there.
    fn standing_changed(&mut self, cause: Cause) {
        self.standing.is_healthy = self.health.is_healthy;
        self.standing.next_retry_at = if self.health.is_healthy {
            None
        } else {
            self.health.next_retry_at
        };
        self.standing.cause = cause;
        self.standing.changed_at = Utc::now();
        self.standing.changed_by = crate::fleet::instance_id().to_string();
        self.standing_dirty = true;
    }

    /// Applies a standing newer than the one held: the counters stay this instance's own, the
    /// standing, its events and its retry timer become the fleet's.
    fn apply_standing(&mut self, s: Standing, ctx: &mut Context<Self>) {
        if !s.is_newer_than(self.standing.generation) {
            return;
        }
        // Successes already reported belong to the time before this standing.
        self.take_successes(ctx);
        let was_healthy = self.health.is_healthy;
        // Any change of ours not yet stored is older than this one: it is dropped.
        self.standing_dirty = false;
        if s.cause == Cause::Reset {
            self.health.reset();
        }
        self.health.is_healthy = s.is_healthy;
        self.health.next_retry_at = if s.is_healthy {
            None
        } else {
            Some(s.next_retry_at.unwrap_or_else(Utc::now))
        };
        if s.is_healthy && !was_healthy {
            self.health.error_count = 0;
        }
        let details = serde_json::json!({
            "source": "fleet",
            "cause": s.cause,
            "changed_by": s.changed_by,
            "generation": s.generation,
            "next_retry_at": self.health.next_retry_at.map(|t| t.to_rfc3339()),
        });
        self.standing = s;
        match (was_healthy, self.health.is_healthy) {
            (true, false) => {
                self.unhealthy_since = Some(Instant::now());
                log::warn!(
                    "provider {} (id {}) is unhealthy: marked by {}",
                    self.config.name,
                    self.id(),
                    self.standing.changed_by
                );
                self.deps.events.publish(
                    self.event(
                        EventKind::ProviderUnhealthy,
                        Severity::High,
                        format!("marked unhealthy by {}", self.standing.changed_by),
                    )
                    .details(details),
                );
            }
            (false, true) => {
                let took = self.unhealthy_since.take().map(|t| t.elapsed());
                if let Some(d) = took {
                    self.deps.metrics.observe_recovery(d);
                }
                let message = if self.standing.cause == Cause::Reset {
                    "reset by an operator".to_string()
                } else {
                    format!("recovered, as seen by {}", self.standing.changed_by)
                };
                log::info!("provider {} (id {}): {message}", self.config.name, self.id());
                self.deps.events.publish(
                    self.event(EventKind::ProviderRecovered, Severity::Medium, message)
                        .details(details),
                );
            }
            _ => {}
        }
        self.publish_view();
        self.arm_retry(ctx);
        self.mark_dirty(ctx);
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

    /// Schedules one coalesced write of what changed (counters, standing).
    fn mark_dirty(&mut self, ctx: &mut Context<Self>) {
        self.dirty = true;
        if !self.save_pending {
            self.save_pending = true;
            ctx.run_later(SAVE_DELAY, |act, ctx| {
                act.save_pending = false;
                if act.saving {
                    // The previous write is still under way; this one follows it.
                    act.mark_dirty(ctx);
                    return;
                }
                act.saving = true;
                ctx.spawn(act.save().into_actor(act).map(|saved, act, ctx| {
                    act.saving = false;
                    act.saved(saved, ctx);
                }));
            });
        }
    }

    /// Starts writing what changed: the counters, and the standing when it changed here.
    fn save(&mut self) -> impl Future<Output = Saved> + 'static {
        let counters = self.dirty.then(|| self.health.to_row(self.id()));
        let standing = self
            .standing_dirty
            .then(|| (self.standing.to_row(self.id()), self.standing.generation));
        self.dirty = false;
        self.standing_dirty = false;
        let store = self.deps.store.clone();
        let name = self.config.name.clone();
        async move {
            // The standing first: it is what the rest of the fleet waits for.
            let standing = match standing {
                Some((row, based_on)) => {
                    let result = store::run(&store, move |db| db.write_standing(&row, based_on)).await;
                    if let Err(e) = &result {
                        log::warn!("saving the standing of provider {name} failed, will retry: {e}");
                    }
                    Some((based_on, result))
                }
                None => None,
            };
            let mut counters_failed = false;
            if let Some(row) = counters
                && let Err(e) = store::run(&store, move |db| db.save_validation(&row)).await
            {
                log::warn!("saving the health of provider {name} failed, will retry: {e}");
                counters_failed = true;
            }
            Saved {
                counters_failed,
                standing,
            }
        }
    }

    /// Takes in the result of a write: the stored generation, or the newer standing that
    /// refused it; a failed write is retried later.
    fn saved(&mut self, saved: Saved, ctx: &mut Context<Self>) {
        let mut retry_standing = None;
        match saved.standing {
            Some((based_on, Ok(StandingWrite::Written(row)))) => {
                if self.standing.generation == based_on {
                    self.standing.generation = row.generation;
                }
            }
            Some((_, Ok(StandingWrite::Newer(row)))) => self.apply_standing(Standing::from_row(&row), ctx),
            Some((based_on, Err(_))) => retry_standing = Some(based_on),
            Some((_, Ok(StandingWrite::Gone))) | None => {}
        }
        if saved.counters_failed || retry_standing.is_some() {
            ctx.run_later(SAVE_RETRY, move |act, ctx| {
                // Unless a newer standing arrived meanwhile, the change still has to be stored.
                if retry_standing.is_some_and(|g| g == act.standing.generation) {
                    act.standing_dirty = true;
                }
                act.mark_dirty(ctx);
            });
        }
    }

    /// Applies the successes the workers added since the last time.
    fn take_successes(&mut self, ctx: &mut Context<Self>) {
        let (count, latency_sum) = self.load.take_successes();
        if count == 0 {
            return;
        }
        let fresh = self.load.take_fresh_successes();
        self.window.record_many(Instant::now(), count, latency_sum);
        let was = HealthView::from(&self.health);
        let now = Utc::now();
        let transition = if self.health.is_healthy || fresh > 0 {
            self.health.record_successes(now, count)
        } else {
            // Attempts that were under way when it was marked: they do not undo the mark.
            self.health.note_successes(now, count);
            Transition::Unchanged
        };
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
        if transition == Transition::Unchanged && !self.health.is_healthy {
            // A probe moved the next retry: the whole fleet waits for the same one.
            self.standing_changed(Cause::Rescheduled);
        }
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
            OutcomeKind::Success { status } => {
                if self.health.is_healthy || self.load.started_after_mark(msg.latency_ms) {
                    self.health.record_success(now, Some(*status))
                } else {
                    self.health.note_successes(now, 1);
                    Transition::Unchanged
                }
            }
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
            standing: self.standing.clone(),
        })
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

impl Handler<ApplyStanding> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: ApplyStanding, ctx: &mut Context<Self>) {
        self.apply_standing(msg.0, ctx);
    }
}

impl Handler<SaveNow> for ProviderActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: SaveNow, ctx: &mut Context<Self>) -> Self::Result {
        self.take_successes(ctx);
        Box::pin(
            self.save()
                .into_actor(self)
                .map(|saved, act, ctx| act.saved(saved, ctx)),
        )
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
