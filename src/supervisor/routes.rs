//! The routing table: every registered provider with the health view routing needs, and the
//! weighted round-robin state.
//!
//! The `Supervisor` owns it and is its only writer (providers added, changed, removed; health
//! changes from the provider actors). Workers answer their `Pick`s from it directly, under a
//! lock held for a hash lookup and a round-robin step: a pick is on every request, and asking
//! the supervisor's mailbox instead costs two cross-thread wake-ups, about as much CPU as the
//! rest of the router's work on a request. One table (not a copy per worker) keeps the
//! round-robin exact across workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Utc;

use super::balance::{Candidate, Choice, RoundRobin};
use super::strategy::{Dice, Strategies, Strategy};
use super::{PickResult, ProviderEntry, Route};
use crate::provider::kind::{Endpoint, Service};
use crate::provider::spec::ProviderConfig;
use crate::stats::today::DailyCounts;

/// The providers and the round-robin state, behind one lock.
#[derive(Default)]
pub(super) struct Table {
    pub(super) providers: BTreeMap<i64, ProviderEntry>,
    pub(super) round_robin: RoundRobin,
    pub(super) strategies: Strategies,
    /// Requests per provider and model today, for `least_used` (own lock: the `StatsActor`
    /// writes it too).
    pub(super) daily: Arc<DailyCounts>,
    pub(super) dice: Dice,
}

/// A shared handle on the routing table.
#[derive(Clone, Default)]
pub struct Routes(Arc<Mutex<Table>>);

impl Routes {
    /// The table, for the supervisor's changes. A panic while it was held leaves nothing
    /// half-written that routing cannot use (round-robin scores at worst), so poisoning is
    /// ignored rather than turned into failed requests.
    pub(super) fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How the enabled providers of `model` serve `endpoint`: (some natively, some through
    /// translation). Lets a handler translate a body only when a provider needs it.
    pub fn services(&self, model: &str, endpoint: Endpoint) -> (bool, bool) {
        let table = self.lock();
        let mut found = (false, false);
        for e in table.providers.values() {
            if !e.config.enabled || e.config.model(model).is_none() {
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
        self.lock().strategies = strategies;
    }

    /// The strategy `model` is routed by.
    pub fn strategy_for(&self, model: &str) -> Strategy {
        self.lock().strategies.for_model(model)
    }

    /// Today's request counts the `least_used` strategy reads, for the `StatsActor` to keep
    /// in step with the stored daily rows.
    pub fn daily_counts(&self) -> Arc<DailyCounts> {
        self.lock().daily.clone()
    }

    /// Requests in flight over every provider (streams included).
    pub fn inflight(&self) -> i64 {
        self.lock().providers.values().map(|e| e.load.inflight()).sum()
    }

    /// Chooses a provider for `model`, skipping the ids in `exclude`: the model's strategy
    /// among the healthy providers of the best tier (see `balance`). The chosen one's request
    /// is counted for today at once.
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
        let now = Utc::now();
        let today = now.date_naive();
        let mut table = self.lock();
        let Table {
            providers,
            round_robin,
            strategies,
            daily,
            dice,
        } = &mut *table;
        let strategy = strategies.for_model(model);
        let mut serves_model = false;
        let candidates: Vec<Candidate> = providers
            .values()
            .filter(|e| e.config.enabled && e.config.model(model).is_some() && accept(&e.config))
            .inspect(|_| serves_model = true)
            .filter(|e| !exclude.contains(&e.config.id))
            .map(|e| {
                let latency = e.load.latency();
                Candidate {
                    id: e.config.id,
                    weight: e.config.weight,
                    priority: e.config.priority,
                    is_healthy: e.view.is_healthy,
                    next_retry_at: e.view.next_retry_at,
                    cooldown_until: e.view.cooldown_until,
                    // Only what the strategy reads: the daily count takes a second lock.
                    requests_today: if strategy == Strategy::LeastUsed {
                        daily.get(e.config.id, model, today)
                    } else {
                        0
                    },
                    latency_ms: latency.map(|l| l.0),
                    latency_idle: latency.map(|l| l.1).unwrap_or_default(),
                    inflight: u64::try_from(e.load.inflight()).unwrap_or(0),
                }
            })
            .collect();
        if !serves_model {
            return PickResult::UnknownModel;
        }
        match round_robin.choose(model, strategy, &candidates, now, dice.roll()) {
            Choice::Picked(id) => match providers.get(&id) {
                Some(e) => {
                    daily.count_start(id, model, today);
                    PickResult::Route(Route {
                        upstream_model: e
                            .config
                            .model(model)
                            .and_then(|m| m.upstream())
                            .map(str::to_string),
                        provider: e.config.clone(),
                        actor: e.actor.clone(),
                        load: e.load.clone(),
                    })
                }
                None => PickResult::Exhausted,
            },
            Choice::AllCooling(wait) => {
                // Tell the client the soonest any provider of the model is free again, the
                // ones this request already tried included.
                let soonest = providers
                    .values()
                    .filter(|e| e.config.enabled && e.config.model(model).is_some() && accept(&e.config))
                    .filter_map(|e| e.view.cooldown_until)
                    .filter(|t| *t > now)
                    .min()
                    .and_then(|t| (t - now).to_std().ok());
                PickResult::CoolingDown(soonest.map_or(wait, |s| s.min(wait)))
            }
            Choice::NoneLeft => PickResult::Exhausted,
        }
    }
}
